"""SAEs and embeddings shared with other tools: the paper's saerch SAEs, SAELens, sparsify and
sentence-transformers folders (see formats.py, transfer.py, st_encoder.py)."""

from .formats import FORMATS, ImportedSAE, detect_format, read_sae
from .transfer import EXPORT_FORMATS, download_from_hub, export_sae, import_sae

__all__ = ["FORMATS", "EXPORT_FORMATS", "ImportedSAE", "detect_format", "read_sae", "import_sae", "export_sae",
           "download_from_hub"]
