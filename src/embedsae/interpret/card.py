"""Feature cards: everything known about one feature, as a record."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import check_feature
from ..records import DocumentRef, FeatureCard, FeatureSummary, HistogramRecord
from . import feature_labels
from .store import FeatureStore, feature_records


def feature_card(ws, sae: str, store: FeatureStore | None, feature: int, *, top: int = 8, bins: int = 20) -> FeatureCard:
    """A feature's label, scores, density, activation histogram and top documents with activations.

    For many cards keep an `embedsae.Project`, which computes the codes and tables once."""
    from ..sae.codes import workspace_codes
    from ..structure.cooccurrence import ActivationStats

    codes = workspace_codes(ws, sae)
    check_feature(feature, codes.n_latents, sae)
    table = store.table() if store is not None else None
    record = feature_record(table, feature)
    if not record.label:
        labels = feature_labels(ws, sae, codes=codes)
        record.label, record.label_source = labels.get(feature), labels.source
    docs, acts = ActivationStats(codes).column(feature)
    return build_card(record, docs, acts, ws.titles(), ws.ids, ws.n_documents, sae, top=top, bins=bins)


def feature_record(table, feature: int) -> FeatureSummary:
    """The stored record of one feature (label, stats, scores), or an empty one when it has none."""
    row = table[table["id"] == feature] if table is not None else None
    if row is None or not len(row):
        return FeatureSummary(id=feature)
    return feature_records(row)[0]


def build_card(record: FeatureSummary, docs: np.ndarray, acts: np.ndarray, titles: list[str], ids: list[str],
               n_docs: int, sae: str, *, top: int = 8, bins: int = 20) -> FeatureCard:
    """A card from a feature's record and the documents (rows) it fires on with their activations."""
    order = np.argsort(-acts, kind="stable")[:top]
    counts, edges = np.histogram(acts, bins=bins) if len(acts) else (np.zeros(bins, int), np.zeros(bins + 1))
    summary = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    return FeatureCard(
        **{**summary, "n_active": int(len(docs)), "density": float(len(docs) / max(n_docs, 1))}, sae=sae,
        histogram=HistogramRecord(counts=[int(c) for c in counts], edges=[float(e) for e in edges]),
        top_documents=[DocumentRef(row=int(docs[i]), id=ids[docs[i]], title=titles[docs[i]],
                                   activation=float(acts[i])) for i in order],
    )
