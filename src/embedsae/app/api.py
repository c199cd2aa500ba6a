"""The JSON API under /api/v1: workspaces, SAEs, features, families, search, map points, concept groups, jobs.

Every handler calls `embedsae.Project` (through `state.Served`); none holds logic of its own beyond shaping
the answer. Handlers are plain functions, so FastAPI runs them in its thread pool: reads go on concurrently and
never wait for a running job. Searches and text activations are the exception: they await their query
embedding (one worker batches the texts of concurrent requests), then run in the app's bounded search pool
(`AppState.searches`), so feature pages and other cheap reads never queue behind them."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from ..errors import InputError, NotFoundError
from ..project import (
    ActivationsResponse,
    DocumentView,
    FeatureCard,
    FeaturePage,
    JobRecord,
    LabelSearch,
    Project,
    SaeSummary,
    SearchResponse,
    WorkspaceInfo,
    plain,
)
from ..stages import STAGES
from .forms import JobBase, JobRequest
from .schemas import (
    MAX_PAGE,
    MAX_QUERY_CHARS,
    MAX_TOP,
    SAE_NAME,
    ActivationsRequest,
    ConceptsRequest,
    GroupsRequest,
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


# ---------------------------------------------------------------------------- workspaces and SAEs
def workspace_summary(s: Served) -> dict[str, Any]:
    """The workspace's record as a client sees it: named, with no path."""
    info = s.default.info()
    info.name = s.name
    return info.to_dict()


class WorkspaceUnavailable(BaseModel):
    """A served workspace that cannot be read now: its name and why (one line naming the file)."""

    name: str
    error: str


def workspace_entry(s: Served, metrics: bool = False) -> dict[str, Any]:
    """The workspace's summary (with each SAE's stored metrics when `metrics`), or `{"name", "error"}` when it
    cannot be read: one damaged workspace never breaks the list of the others."""
    try:
        info = workspace_summary(s)
        if metrics:
            for row in info["saes"]:
                m = s.project(row["name"]).metrics()
                row["metrics"] = m.to_dict() if m else {}
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
            description="Each workspace's summary, or `{name, error}` for one that cannot be read now.",
            response_model=list[WorkspaceInfo | WorkspaceUnavailable])
def list_workspaces(request: Request) -> list[dict[str, Any]]:
    return [workspace_entry(s) for s in app_state(request).workspaces.values()]


@router.get("/workspaces/{ws}", tags=["workspaces"], summary="One workspace: model, counts, stages, SAEs",
            response_model=WorkspaceInfo)
def get_workspace(request: Request, ws: WsName) -> dict[str, Any]:
    return workspace_summary(served(request, ws))


@router.get("/workspaces/{ws}/saes", tags=["saes"], summary="The workspace's SAEs with their headline metrics",
            response_model=list[SaeSummary])
def list_saes(request: Request, ws: WsName) -> list[dict[str, Any]]:
    return workspace_summary(served(request, ws))["saes"]


@router.get("/workspaces/{ws}/saes/{sae}", tags=["saes"], summary="One SAE: configuration and stored metrics")
def get_sae(request: Request, ws: WsName, sae: Annotated[str, Path(pattern=SAE_NAME)]) -> dict[str, Any]:
    p = served(request, ws).project(sae)
    metrics = p.metrics()
    return plain({"name": p.sae_name, "config": p.sae_config, "metrics": metrics.to_dict() if metrics else None})


# ---------------------------------------------------------------------------- features
@router.get("/workspaces/{ws}/features", tags=["features"], summary="The interpreted features, filtered, sorted, paged",
            response_model=FeaturePage,
            responses={200: {"description": "A page of features (JSON), or the page as CSV with format=csv",
                             "content": {"text/csv": {"schema": {"type": "string"}}}}})
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
    page.limit = limit
    return page.to_dict()


@router.get("/workspaces/{ws}/labels", tags=["features"], summary="Features whose label contains some text",
            response_model=LabelSearch)
def find_labels(request: Request, ws: WsName,
                q: Annotated[str, Query(min_length=1, max_length=200, description="Label text.")],
                sae: SaeParam = None, limit: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10) -> dict[str, Any]:
    """Label search over every labelled feature (interpreted labels, else the structure fallback)."""
    p = served(request, ws).project(sae)
    return LabelSearch(sae=p.sae_name, items=p.find_labels(q, limit=limit)).to_dict()


@router.get("/workspaces/{ws}/features/{feature}", tags=["features"], summary="A feature card",
            response_model=FeatureCard)
def get_feature(request: Request, ws: WsName, feature: FeatureId, sae: SaeParam = None,
                top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 8,
                bins: Annotated[int, Query(ge=2, le=200)] = 20) -> dict[str, Any]:
    """Label, labeller, scores, density, mean/max activation, histogram and top documents."""
    p = served(request, ws).project(sae)
    p.check_feature(feature)
    return p.feature(feature, top=top, bins=bins).to_dict()


@router.get("/workspaces/{ws}/features/{feature}/neighbours", tags=["features"],
            summary="Most/least similar features by decoder cosine, co-occurring (count, PMI), correlated")
def get_neighbours(request: Request, ws: WsName, feature: FeatureId, sae: SaeParam = None,
                   top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10,
                   min_count: Annotated[int, Query(ge=1, le=1_000_000)] = 3) -> dict[str, Any]:
    p = served(request, ws).project(sae)
    p.check_feature(feature)
    return plain(p.neighbours(feature, top=top, min_count=min_count))


@router.post("/workspaces/{ws}/activations", tags=["features"], summary="Feature activations on given texts",
             response_model=ActivationsResponse)
async def text_activations(request: Request, ws: WsName, body: ActivationsRequest) -> dict[str, Any]:
    """Embeds each text with the workspace's model and encodes it with the SAE."""
    s = served(request, ws)
    p = s.project(body.sae)
    for f in body.features:
        p.check_feature(f)
    vecs = await s.embed_async(p, body.texts)
    results = await app_state(request).run_search_work(
        lambda: p.activations(body.texts, body.features, top=body.top, vectors=vecs))
    return ActivationsResponse(sae=p.sae_name, results=results).to_dict()


@router.get("/workspaces/{ws}/documents/{row}", tags=["features"], summary="One document with its top features",
            response_model=DocumentView)
def get_document(request: Request, ws: WsName, row: Annotated[int, Path(ge=0, le=100_000_000)],
                 sae: SaeParam = None) -> dict[str, Any]:
    """A document by row (as in map points and hits): id, title, the start of its text, its active features."""
    return served(request, ws).project(sae).document(row).to_dict()


# ---------------------------------------------------------------------------- families
@router.get("/workspaces/{ws}/families", tags=["families"], summary="The feature families and their statistics")
def get_families(request: Request, ws: WsName, sae: SaeParam = None) -> dict[str, Any]:
    p = served(request, ws).project(sae)
    fam = p.families()
    if fam is None:
        from ..errors import WorkspaceError

        raise WorkspaceError(f"SAE '{p.sae_name}' has no families yet; start a families job")
    return plain(fam)


# ---------------------------------------------------------------------------- search
@router.post("/workspaces/{ws}/search", tags=["search"], summary="Search the documents, optionally steered",
             response_model=SearchResponse)
async def search(request: Request, ws: WsName, body: SearchRequest) -> dict[str, Any]:
    """Ranked hits with the concepts that explain each; steering edits change query features before ranking."""
    s = served(request, ws)
    vector = await query_vector(s, body)
    return await app_state(request).run_search_work(run_search, s, body, vector)


async def query_vector(s: Served, body: SearchRequest) -> np.ndarray | None:
    """The query's vector when the search reads it (embedded by the shared worker), else None."""
    if body.mode == "bm25" and (not s.workspace.can_embed or not (body.explain or body.query_features)):
        return None  # the words alone (a workspace with no model: the query is no document to look up)
    p = s.project(body.sae) if body.sae or s.sae_names() else s.default
    return (await s.embed_async(p, [body.query]))[0]


def run_search(s: Served, body: SearchRequest, vector: np.ndarray | None = None) -> dict[str, Any]:
    p = s.project(body.sae) if body.sae or s.sae_names() else s.default
    for e in body.steer:
        if e.feature is not None:
            try:
                p.check_feature(e.feature)
            except NotFoundError as exc:  # a bad edit in the body: the request is wrong, not a path
                raise InputError(f"steering edit on feature {e.feature}: {exc}") from None
    result = p.search(body.query, mode=body.mode, top=body.top, steer=[e.spec() for e in body.steer] or None,
                      explain=body.explain, vector=vector, query_features=body.query_features)
    return result.to_dict()


@router.get("/workspaces/{ws}/search", tags=["search"], summary="Search (GET form, for links; no steering)",
            response_model=SearchResponse)
async def search_get(request: Request, ws: WsName,
               q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"^[^\x00]*\S[^\x00]*$",
                                       description="The query text.")],
               mode: Annotated[str, Query(max_length=40, description="A registered search mode.")] = "dense",
               top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10, sae: SaeParam = None) -> dict[str, Any]:
    return await search(request, ws, SearchRequest(query=q, mode=mode, top=top, sae=sae))


# ---------------------------------------------------------------------------- map
@router.get("/workspaces/{ws}/map", tags=["map"], summary="The stored UMAP coordinates of the documents, with colours",
            description="The layout of the map stage (`embedsae run`, `embedsae map WS` or a map job); 409 naming "
                        "the stage when there is none yet. Colours by a feature's activation or a corpus column.")
def map_points(
    request: Request, ws: WsName, sae: SaeParam = None,
    dims: Annotated[int, Query(ge=2, le=3)] = 2,
    feature: Annotated[int | None, Query(ge=0, le=10_000_000, description="Colour by this feature's activation.")] = None,
    column: Annotated[str | None, Query(max_length=200, description="Colour by this corpus column.")] = None,
    titles: Annotated[bool, Query(description="Include the documents' titles (hover text).")] = True,
) -> dict[str, Any]:
    s = served(request, ws)
    if feature is not None and column is not None:
        raise InputError("colour by a feature or by a column, not both")
    p = s.project(sae) if sae or s.sae_names() else s.default
    out: dict[str, Any] = {"dims": dims}
    if feature is not None:
        out["color"] = np.round(p.feature_values(feature), 4).tolist()
        out["color_by"] = {"feature": feature, "label": p.labels.get(feature, "")}
    elif column is not None:
        out["color"] = p.column_values(column)
        out["color_by"] = {"column": column}
    out["coords"] = np.round(np.asarray(p.map_points(dims), np.float64), 4).T.tolist()
    out["ids"] = list(p.ids)
    if titles:
        out["titles"] = list(p.titles)
    return plain(out)


# ---------------------------------------------------------------------------- concept groups
@router.post("/workspaces/{ws}/concepts", tags=["concepts"], summary="Score features against concept groups")
def concepts(request: Request, ws: WsName, body: ConceptsRequest) -> dict[str, Any]:
    """Per group: the monosemantic features, selectivity, P/R/F1, next to the raw-dimension / PCA / ICA baselines."""
    p = served(request, ws).project(body.sae)
    report, _ = p.concepts(request_groups(p, body), baselines=tuple(body.baselines))
    return plain(report.to_json())


def request_groups(p: Project, body: GroupsRequest):
    """The concept groups a request gives: `Group: words` text or a mapping, or a corpus column's values."""
    return p.column_groups(body.column) if body.column is not None else p.concept_groups(body.groups)


@router.post("/workspaces/{ws}/map/groups", tags=["map"], summary="Each document's concept group (map colours)")
def map_groups(request: Request, ws: WsName, body: GroupsRequest) -> dict[str, Any]:
    """Per document (in map order) the first concept group it belongs to, else "other"; with the groups' words
    not found among the documents."""
    p = served(request, ws).default
    labels, match = p.group_labels(request_groups(p, body))
    return {"color": labels, "color_by": {"groups": match.names}, "missing": match.missing_words()[:200]}


# ---------------------------------------------------------------------------- jobs
def start_job(state: AppState, s: Served, body: JobBase) -> dict[str, Any]:
    """Start a stage as a job on a served workspace (one at a time per workspace); the job's result is the stage's
    summary record."""
    kind, values = body.kind, body.values()
    if values.get("sae") is not None:
        s.project(values["sae"])  # 404 now rather than a failed job later
    if STAGES[kind].on_sae and not s.sae_names():
        from ..errors import WorkspaceError

        raise WorkspaceError(f"workspace '{s.name}' has no trained SAE yet; start a train job first")
    try:
        Project(s.workspace).check_stage(kind, **values)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    spec = {"workspace": str(s.workspace.path), "kind": kind, "values": values}  # run by embedsae.app.worker
    return state.jobs.submit(s.name, kind, body.model_dump(), spec).to_dict()


@router.post("/workspaces/{ws}/jobs", tags=["jobs"], status_code=202, summary="Start a job (one at a time per workspace)",
             response_model=JobRecord)
def create_job(request: Request, ws: WsName, body: Annotated[JobRequest, Body()]) -> dict[str, Any]:
    state = app_state(request)
    return start_job(state, state.served(ws), body)


@router.get("/jobs", tags=["jobs"], summary="The jobs, newest first", response_model=list[JobRecord])
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


@router.get("/jobs/{job_id}", tags=["jobs"], summary="One job with its progress", response_model=JobRecord)
def get_job(request: Request, job_id: JobId) -> dict[str, Any]:
    return get_job_or_404(app_state(request), job_id).to_dict()


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a job (interrupted as by Ctrl-C)",
             response_model=JobRecord)
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
                yield f"data: {json.dumps(job.to_dict())}\n\n"
            if job.finished_state or time.monotonic() >= end or state.stopping:
                return
            await asyncio.sleep(EVENT_POLL)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
