"""The JSON API under /api/v1: workspaces, SAEs, features, families, search, map points, concept groups, jobs.

Every handler calls `embedsae.Project` (through `state.Served`); none holds logic of its own beyond shaping
the answer. Handlers are plain functions, so FastAPI runs them in its thread pool: reads go on concurrently and
never wait for a running job. Searches and text activations are the exception: they await their query
embedding (one worker batches the texts of concurrent requests), then run in the app's bounded search pool
(`AppState.searches`), so feature pages and other cheap reads never queue behind them."""

from __future__ import annotations

import json
import logging
import math
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from ..errors import InputError
from .schemas import (
    MAX_PAGE,
    MAX_QUERY_CHARS,
    MAX_TOP,
    SAE_NAME,
    ActivationsRequest,
    ConceptsRequest,
    GroupsRequest,
    JobRequest,
    SearchRequest,
)
from .state import AppState, NotFound, Served

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error: a short kind and a message that names the problem."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None
    stage: str | None = None
    """For a 409 that a stage would cure: the stage to run ("train", "interpret", "map", ...)."""


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in (
        (400, "The input is unusable (the message says why)."), (401, "The server's access token is missing."),
        (404, "No such workspace, SAE, feature, document or job."),
        (409, "The workspace is not ready for this (a stage has not run) or a job is running."),
        (422, "A parameter or the body fails validation (the message names the field)."))
}
router = APIRouter(prefix="/api/v1", responses=ERRORS)
EVENT_POLL = 0.2
"""Seconds between two looks at a job for its event stream (no thread waits on a job)."""

WsName = Annotated[str, Path(description="A served workspace's name (see GET /api/v1/workspaces).",
                             max_length=200)]
SaeParam = Annotated[str | None, Query(description="The SAE (default: the workspace's latest trained one).",
                                       pattern=SAE_NAME)]
FeatureId = Annotated[int, Path(ge=0, le=10_000_000, description="A feature id.")]


def app_state(request: Request) -> AppState:
    return request.app.state.embedsae


def served(request: Request, ws: str) -> Served:
    return app_state(request).served(ws)


def clean_json(value: Any) -> Any:
    """Plain JSON: numpy scalars and arrays as numbers and lists, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------- workspaces and SAEs
def workspace_summary(s: Served) -> dict[str, Any]:
    from ..pipeline import describe

    info = describe(s.workspace)
    info.pop("path", None)
    return clean_json({"name": s.name, **info})


def workspace_entry(s: Served, metrics: bool = False) -> dict[str, Any]:
    """The workspace's summary (with each SAE's stored metrics when `metrics`), or `{"name", "error"}` when it
    cannot be read: one damaged workspace never breaks the list of the others."""
    try:
        info = workspace_summary(s)
        if metrics:
            for row in info["saes"]:
                row["metrics"] = clean_json(s.project(row["name"]).metrics() or {})
        return info
    except Exception as exc:  # noqa: BLE001 - contained to this workspace's entry
        return {"name": s.name, "error": workspace_error(s, exc)}


def workspace_error(s: Served, exc: Exception) -> str:
    """One line saying why a workspace cannot be shown (the library's message names the file)."""
    from ..errors import EmbedSAEError

    if not isinstance(exc, EmbedSAEError):
        logger.exception(f"workspace '{s.name}' cannot be read")
        exc = f"workspace '{s.name}' cannot be read ({type(exc).__name__}: {exc})"
    return str(exc).replace(str(s.path), f"'{s.name}'").splitlines()[0]


@router.get("/workspaces", tags=["workspaces"], summary="The served workspaces",
            description="Each workspace's summary, or `{name, error}` for one that cannot be read.")
def list_workspaces(request: Request) -> list[dict[str, Any]]:
    return [workspace_entry(s) for s in app_state(request).workspaces.values()]


@router.get("/workspaces/{ws}", tags=["workspaces"], summary="One workspace: model, counts, stages, SAEs")
def get_workspace(request: Request, ws: WsName) -> dict[str, Any]:
    return workspace_summary(served(request, ws))


@router.get("/workspaces/{ws}/saes", tags=["saes"], summary="The workspace's SAEs with their headline metrics")
def list_saes(request: Request, ws: WsName) -> list[dict[str, Any]]:
    return workspace_summary(served(request, ws))["saes"]


@router.get("/workspaces/{ws}/saes/{sae}", tags=["saes"], summary="One SAE: configuration and stored metrics")
def get_sae(request: Request, ws: WsName, sae: Annotated[str, Path(pattern=SAE_NAME)]) -> dict[str, Any]:
    p = served(request, ws).project(sae)
    return clean_json({"name": p.sae_name, "config": p.sae_config, "metrics": p.metrics()})


# ---------------------------------------------------------------------------- features
@router.get("/workspaces/{ws}/features", tags=["features"], summary="The interpreted features, filtered, sorted, paged",
            responses={200: {"description": "A page of features (JSON), or the page as CSV with format=csv",
                             "content": {"application/json": {"schema": {"type": "object"}},
                                         "text/csv": {"schema": {"type": "string"}}}}})
def list_features(
    request: Request, ws: WsName, sae: SaeParam = None,
    search: Annotated[str | None, Query(max_length=200, description="Label text to look for.")] = None,
    sort: Literal["id", "density", "score"] = "id",
    clean: Annotated[bool, Query(description="Only features whose label passed the clean filter.")] = False,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    format: Annotated[Literal["json", "csv"], Query(description="csv exports the page as a table.")] = "json",
) -> Any:
    p = served(request, ws).project(sae)
    page = p.features(search=search or None, sort=sort, clean=clean, offset=offset, limit=limit)
    if format == "csv":
        return Response(page.table.to_csv(index=False), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{ws}-features.csv"'})
    return clean_json({"sae": p.sae_name, "total": page.total, "offset": page.offset, "limit": limit,
                       "items": page.items})


@router.get("/workspaces/{ws}/labels", tags=["features"], summary="Features whose label contains some text")
def find_labels(request: Request, ws: WsName,
                q: Annotated[str, Query(min_length=1, max_length=200, description="Label text.")],
                sae: SaeParam = None, limit: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10) -> dict[str, Any]:
    """Label search over every labelled feature (interpreted labels, else the structure fallback)."""
    p = served(request, ws).project(sae)
    needle = q.strip().lower()
    hits = [{"id": f, "label": label} for f, label in sorted(p.labels.items()) if needle and needle in label.lower()]
    hits.sort(key=lambda h: (h["label"].lower() != needle, not h["label"].lower().startswith(needle), h["id"]))
    return {"sae": p.sae_name, "items": hits[:limit]}


@router.get("/workspaces/{ws}/features/{feature}", tags=["features"], summary="A feature card")
def get_feature(request: Request, ws: WsName, feature: FeatureId, sae: SaeParam = None,
                top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 8,
                bins: Annotated[int, Query(ge=2, le=200)] = 20) -> dict[str, Any]:
    """Label, labeller, scores, density, mean/max activation, histogram and top documents."""
    p = served(request, ws).project(sae)
    check_feature(p, feature)
    return clean_json(p.feature(feature, top=top, bins=bins))


@router.get("/workspaces/{ws}/features/{feature}/neighbours", tags=["features"],
            summary="Most/least similar features by decoder cosine, co-occurring (count, PMI), correlated")
def get_neighbours(request: Request, ws: WsName, feature: FeatureId, sae: SaeParam = None,
                   top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10,
                   min_count: Annotated[int, Query(ge=1, le=1_000_000)] = 3) -> dict[str, Any]:
    p = served(request, ws).project(sae)
    check_feature(p, feature)
    return clean_json(p.neighbours(feature, top=top, min_count=min_count))


@router.post("/workspaces/{ws}/activations", tags=["features"], summary="Feature activations on given texts")
async def text_activations(request: Request, ws: WsName, body: ActivationsRequest) -> dict[str, Any]:
    """Embeds each text with the workspace's model and encodes it with the SAE."""
    s = served(request, ws)
    p = s.project(body.sae)
    vecs = await s.embed_async(p, body.texts)
    results = await app_state(request).run_search_work(s.activations, p, body.texts, body.features, body.top, vecs)
    return {"sae": p.sae_name, "results": results}


def check_feature(p, feature: int) -> None:
    n = int(p.sae_config["n_latents"])
    if feature >= n:
        raise NotFound(f"feature {feature} does not exist (SAE '{p.sae_name}' has {n} features, 0..{n - 1})")


@router.get("/workspaces/{ws}/documents/{row}", tags=["features"], summary="One document with its top features")
def get_document(request: Request, ws: WsName, row: Annotated[int, Path(ge=0, le=100_000_000)],
                 sae: SaeParam = None) -> dict[str, Any]:
    """A document by row (as in map points and hits): id, title, the start of its text, its active features."""
    s = served(request, ws)
    n = s.workspace.n_documents
    if row >= n:
        raise NotFound(f"no document row {row} (workspace '{ws}' has {n} documents, rows 0..{n - 1})")
    p = s.project(sae)
    idx, vals = p.codes.indices[row], p.codes.values[row]
    order = np.argsort(-vals, kind="stable")
    labels = p.labels
    text = str(s.workspace.corpus["text"].iat[row])
    return clean_json({"row": row, "id": p.ids[row], "title": p.titles[row], "text": text[:2000],
                       "features": [{"id": int(idx[i]), "label": labels.get(int(idx[i]), ""),
                                     "activation": round(float(vals[i]), 5)} for i in order if vals[i] > 0]})


# ---------------------------------------------------------------------------- families
@router.get("/workspaces/{ws}/families", tags=["families"], summary="The feature families and their statistics")
def get_families(request: Request, ws: WsName, sae: SaeParam = None) -> dict[str, Any]:
    p = served(request, ws).project(sae)
    fam = p.families()
    if fam is None:
        from ..errors import WorkspaceError

        raise WorkspaceError(f"SAE '{p.sae_name}' has no families yet; start a families job")
    return clean_json(fam)


# ---------------------------------------------------------------------------- search
@router.post("/workspaces/{ws}/search", tags=["search"], summary="Search the documents, optionally steered")
async def search(request: Request, ws: WsName, body: SearchRequest) -> dict[str, Any]:
    """Ranked hits with the concepts that explain each; steering edits change query features before ranking."""
    s = served(request, ws)
    vector = await query_vector(s, body)
    return await app_state(request).run_search_work(run_search, s, body, vector)


async def query_vector(s: Served, body: SearchRequest) -> np.ndarray | None:
    """The query's vector when the search reads it (embedded by the shared worker), else None."""
    if body.mode == "bm25" and not body.explain and not body.query_features:
        return None
    if not s.workspace.can_embed and body.mode == "bm25":
        return None  # the words alone: the query is no document to look up
    return (await s.embed_async(s.project(body.sae), [body.query]))[0]


def run_search(s: Served, body: SearchRequest, vector: np.ndarray | None = None) -> dict[str, Any]:
    p = s.project(body.sae)
    n = int(p.sae_config["n_latents"])
    for e in body.steer:
        if e.feature is not None and e.feature >= n:
            raise InputError(f"steering edit on feature {e.feature}: it does not exist "
                             f"(SAE '{p.sae_name}' has {n} features, 0..{n - 1})")
    result = p.search(body.query, mode=body.mode, top=body.top, steer=[e.spec() for e in body.steer] or None,
                      explain=body.explain, vector=vector)
    out = {"sae": p.sae_name, **result.to_dict()}
    if body.query_features:
        out["query_features"] = s.query_features(p, body.query)
    return clean_json(out)


@router.get("/workspaces/{ws}/search", tags=["search"], summary="Search (GET form, for links; no steering)")
async def search_get(request: Request, ws: WsName,
               q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"^[^\x00]*\S[^\x00]*$",
                                       description="The query text.")],
               mode: Literal["dense", "concept", "hybrid", "bm25"] = "dense",
               top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10, sae: SaeParam = None) -> dict[str, Any]:
    return await search(request, ws, SearchRequest(query=q, mode=mode, top=top, sae=sae))


# ---------------------------------------------------------------------------- map
@router.get("/workspaces/{ws}/map", tags=["map"], summary="The stored UMAP coordinates of the documents, with colours",
            description="The layout of the map stage (`embedsae run`, `embedsae map WS` or a map job); 409 when "
                        "there is none yet. Colours by a feature's activation or a corpus column.")
def map_points(
    request: Request, ws: WsName, sae: SaeParam = None,
    dims: Annotated[int, Query(ge=2, le=3)] = 2,
    feature: Annotated[int | None, Query(ge=0, le=10_000_000, description="Colour by this feature's activation.")] = None,
    column: Annotated[str | None, Query(max_length=200, description="Colour by this corpus column.")] = None,
    titles: Annotated[bool, Query(description="Include the documents' titles (hover text).")] = True,
) -> dict[str, Any]:
    s = served(request, ws)
    out: dict[str, Any] = {"dims": dims}
    color: list | None = None
    if feature is not None and column is not None:
        raise InputError("colour by a feature or by a column, not both")
    mp = s.map_project()
    coords = mp.map_points(dims)
    if feature is not None:
        p = s.project(sae)
        check_feature(p, feature)
        docs, acts = p.activation_stats.column(feature)
        values = np.zeros(s.workspace.n_documents, np.float32)
        values[docs] = acts
        color = np.round(values, 4).tolist()
        out["color_by"] = {"feature": feature, "label": p.labels.get(feature, "")}
    elif column is not None:
        corpus = s.workspace.corpus
        if column not in corpus.columns or column in ("text",):
            usable = [c for c in corpus.columns if c != "text"]
            raise InputError(f"no column '{column}' to colour by; the corpus has: {', '.join(map(str, usable))}")
        color = [first_value(v) for v in corpus[column]]
        out["color_by"] = {"column": column}
    out["coords"] = np.round(np.asarray(coords, np.float64), 4).T.tolist()
    out["ids"] = mp.ids
    if titles:
        out["titles"] = mp.titles
    if color is not None:
        out["color"] = color
    return clean_json(out)


def first_value(value: Any) -> str:
    """A corpus cell as one category: the first of a list, "other" for a missing value."""
    if isinstance(value, list | tuple | np.ndarray):
        return str(value[0]) if len(value) else "other"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "other"
    return str(value)


# ---------------------------------------------------------------------------- concept groups
@router.post("/workspaces/{ws}/concepts", tags=["concepts"], summary="Score features against concept groups")
def concepts(request: Request, ws: WsName, body: ConceptsRequest) -> dict[str, Any]:
    """Per group: the monosemantic features, selectivity, P/R/F1, next to the raw-dimension / PCA / ICA baselines."""
    p = served(request, ws).project(body.sae)
    report = p.concepts(request_groups(p, body), baselines=tuple(body.baselines))
    return clean_json(report.to_json())


def request_groups(p, body: GroupsRequest):
    """The ConceptGroups a request gives: its `Group: words` text or mapping, or a corpus column's values."""
    return p.column_groups(body.column) if body.column is not None else parse_groups(body.groups)


@router.post("/workspaces/{ws}/map/groups", tags=["map"], summary="Each document's concept group (map colours)")
def map_groups(request: Request, ws: WsName, body: GroupsRequest) -> dict[str, Any]:
    """Per document (in map order) the first concept group it belongs to, else "other"; with the groups' words
    not found among the documents."""
    s = served(request, ws)
    p = s.map_project()
    labels, match = p.group_labels(request_groups(p, body))
    return {"color": labels, "color_by": {"groups": match.names}, "missing": match.missing_words()[:200]}


def parse_groups(groups: str | dict[str, list[str]]):
    """ConceptGroups from `Group: w1, w2` lines or a mapping."""
    from ..words.groups import ConceptGroups

    if isinstance(groups, str):
        parsed: dict[str, list[str]] = {}
        for lineno, line in enumerate(groups.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            if not sep or not name.strip():
                raise InputError(f"groups, line {lineno}: expected 'Group: word1, word2, ...', got '{line[:60]}'")
            parsed.setdefault(name.strip(), []).extend(w.strip() for w in rest.split(",") if w.strip())
        groups = parsed
    groups = {g.strip(): list(dict.fromkeys(w.strip() for w in ws if w.strip())) for g, ws in groups.items()}
    groups = {g: ws for g, ws in groups.items() if g and ws}
    if not groups:
        raise InputError("no concept groups with words given; write one group a line as 'Group: word1, word2, ...'")
    return ConceptGroups(groups, source="request")


# ---------------------------------------------------------------------------- jobs
def start_job(state: AppState, s: Served, body) -> dict[str, Any]:
    """Start the job `body` asks for on workspace `s` (in a worker process; see `embedsae.app.worker`)."""
    kind, kwargs = body.kind, body.kwargs()
    sae = getattr(body, "sae", None)
    if sae is not None:
        s.project(sae)  # 404 now rather than a failed job later
    if kind not in ("train", "map") and not s.sae_names():
        from ..errors import WorkspaceError

        raise WorkspaceError(f"workspace '{s.name}' has no trained SAE yet; start a train job first")
    if kind == "train":
        from ..pipeline import check_new_sae

        check_new_sae(s.workspace, body.sae_name(), body.overwrite)  # 409 now; the stage checks again under its lock
    spec = {"workspace": str(s.workspace.path), "kind": kind, "sae": sae, "kwargs": kwargs}
    return state.jobs.submit(s.name, kind, body.model_dump(), spec).to_dict()


@router.post("/workspaces/{ws}/jobs", tags=["jobs"], status_code=202, summary="Start a job (one at a time per workspace)")
def create_job(request: Request, ws: WsName, body: Annotated[JobRequest, Body()]) -> dict[str, Any]:
    state = app_state(request)
    return start_job(state, state.served(ws), body)


@router.get("/jobs", tags=["jobs"], summary="The jobs, newest first")
def list_jobs(request: Request,
              workspace: Annotated[str | None, Query(max_length=200)] = None) -> list[dict[str, Any]]:
    state = app_state(request)
    if workspace is not None:
        state.served(workspace)
    return [j.to_dict() for j in state.jobs.list(workspace)]


JobId = Annotated[str, Path(max_length=40)]


def get_job_or_404(state: AppState, job_id: str):
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job '{job_id}' (jobs are kept while the server runs)")
    return job


@router.get("/jobs/{job_id}", tags=["jobs"], summary="One job with its progress")
def get_job(request: Request, job_id: JobId) -> dict[str, Any]:
    return get_job_or_404(app_state(request), job_id).to_dict()


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a job (it stops at its next progress report)")
def cancel_job(request: Request, job_id: JobId) -> dict[str, Any]:
    state = app_state(request)
    get_job_or_404(state, job_id)
    return state.jobs.cancel(job_id).to_dict()


@router.get("/jobs/{job_id}/events", tags=["jobs"], summary="Server-sent events: the job after each change",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "`data: <job JSON>` lines"}})
async def job_events(request: Request, job_id: JobId,
                     timeout: Annotated[float, Query(gt=0, le=3600, description="Stop streaming after this many seconds.")] = 600):
    """One `data:` line of job JSON per change, until the job finishes, `timeout` passes or the server stops."""
    import asyncio
    import time

    state = app_state(request)
    job = get_job_or_404(state, job_id)

    async def stream():
        seen, end = -1, time.monotonic() + timeout
        while True:
            if job.events != seen:
                seen = job.events
                yield f"data: {json.dumps(clean_json(job.to_dict()))}\n\n"
            if job.finished_state or time.monotonic() >= end or state.stopping:
                return
            await asyncio.sleep(EVENT_POLL)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
