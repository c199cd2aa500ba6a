"""The web screens: server-rendered Jinja2 pages with htmx partial updates and Plotly charts. Each screen calls the
same functions as the JSON API (`api.py`), so everything a screen shows is also reachable through the API."""

from __future__ import annotations

import bisect
import html
import re
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from ..errors import EmbedSAEError, InputError, StageMissingError, WorkspaceError
from ..project import FeatureScores, plain
from ..registry import RETRIEVERS
from ..stages import STAGES
from . import api
from .forms import JobRequest, form_fields, form_values
from .jobs import JobBusy
from .schemas import MAX_EDITS, MAX_TEXT_CHARS, SAE_NAME, SearchRequest, SteerEdit
from .state import NotFound

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
SCREENS = [("search", "Search"), ("features", "Features"), ("families", "Families"), ("map", "Map"),
           ("concepts", "Concept groups"), ("jobs", "Jobs")]


def page(request: Request, template: str, ws: str | None = None, sae: str | None = None, status: int = 200,
         **context: Any) -> HTMLResponse:
    state = api.app_state(request)
    return templates.TemplateResponse(request, template, {
        "ws": ws, "sae": sae, "workspaces": list(state.workspaces), "screens": SCREENS, "token_set": bool(state.token),
        **context}, status_code=status)


def error_status(exc: Exception) -> int:
    return 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, JobBusy | WorkspaceError) else 400


def error_page(request: Request, exc: Exception, ws: str | None = None, sae: str | None = None) -> HTMLResponse:
    """The error page: the message (workspaces named, not paths) escaped like every value a template shows. A
    stage not run yet is no error (200): the screen says so and offers to start it as a job."""
    message = api.app_state(request).public(str(exc))
    if isinstance(exc, StageMissingError) and ws is not None:
        stage = exc.stage if exc.stage in STAGES else None
        on_sae = stage is not None and STAGES[stage].on_sae
        return page(request, "error.html", ws, sae, message=message, stage=stage, on_sae=on_sae, missing=True)
    return page(request, "error.html", ws, sae, status=error_status(exc), message=message)


def error_fragment(request: Request, exc: Exception | str, status: int | None = None) -> HTMLResponse:
    """An htmx fragment with an error message, escaped (the message may echo what the client sent)."""
    text = api.app_state(request).public(str(exc))
    code = status if status is not None else error_status(exc) if isinstance(exc, Exception) else 400
    return HTMLResponse(f"<p class='error'>{html.escape(text, quote=False)}</p>", status_code=code)


def sae_param(request: Request) -> str | None:
    sae = request.query_params.get("sae") or None
    if sae is not None and not re.match(SAE_NAME, sae):
        raise NotFound(f"no SAE named '{sae[:64]}'")
    return sae


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


@router.get("/", response_class=HTMLResponse)
def home(request: Request):
    state = api.app_state(request)
    return page(request, "workspaces.html", summaries=[api.workspace_entry(s, metrics=True)
                                                       for s in state.workspaces.values()])


@router.get("/w/{ws}", response_class=HTMLResponse)
def workspace_root(request: Request, ws: str):
    api.served(request, ws)
    return RedirectResponse(f"/w/{ws}/search", status_code=303)


@router.get("/w/{ws}/saes/{sae}/plots/{name}")
def sae_plot(request: Request, ws: str, sae: str, name: str):
    path = api.served(request, ws).project(sae).plot_file(name)
    if path is None:
        raise NotFound(f"SAE '{sae}' has no plot '{name[:40]}' (yet)")
    return FileResponse(path, media_type="image/png")


# ---------------------------------------------------------------------------- search
def steer_params(request: Request) -> dict[int, float]:
    """Slider values from the query string: f<ID>=<value>."""
    out = {}
    for key, value in request.query_params.multi_items():
        m = re.fullmatch(r"f(\d{1,7})", key)
        if m:
            try:
                v = float(value)
            except ValueError:
                continue
            if np.isfinite(v):
                out[int(m.group(1))] = v
    return out


def search_placeholder(s) -> str:
    """What the search box takes: text, a word (word workspaces) or a document id (vectors with no model)."""
    if (s.workspace.manifest.get("stages") or {}).get("words") is not None:
        return "Search a word…"
    if not s.workspace.can_embed:
        return f"A document id (e.g. {s.default.ids[0]}): the documents like it…"
    return "Search the documents…"


@router.get("/w/{ws}/search", response_class=HTMLResponse)
def search_page(request: Request, ws: str):
    sae = None
    try:
        s = api.served(request, ws)
        sae = sae_param(request)
        q = (request.query_params.get("q") or "").strip()
        mode = request.query_params.get("mode") or "hybrid"
        top = request.query_params.get("top") or "10"
        ctx: dict[str, Any] = {"q": q, "mode": mode, "top": top, "modes": RETRIEVERS.names(),
                               "placeholder": search_placeholder(s)}
        if q:
            p = s.project(sae)
            looked_up = s.workspace.can_embed or mode != "bm25"  # bm25 on a workspace with no model: the words alone
            try:
                vector = p.embed_queries([q[:1000]])[0] if looked_up else None
            except InputError as exc:  # a word or document id the workspace does not hold: said on the screen
                ctx["error"] = api.app_state(request).public(str(exc))
                return page(request, "_results.html" if is_htmx(request) else "search.html", ws, sae, **ctx)
            qf = [] if vector is None else [f.to_dict() for f in p.query_features(q[:1000], vector=vector)]
            sliders = steer_params(request)
            original = {f["id"]: f["activation"] for f in qf}
            edits = [SteerEdit(feature=f, value=max(v, 0.0)) for f, v in sliders.items()
                     if abs(v - original.get(f, 0.0)) > 1e-6][:MAX_EDITS]
            body = SearchRequest(query=q, mode=mode, top=int(top) if top.isdigit() else 10, steer=edits, sae=sae)
            result = api.run_search(s, body, vector)
            labels = p.labels
            scale = max([f["activation"] for f in qf] + [1e-3]) * 2
            shown = [{**f, "value": sliders.get(f["id"], f["activation"])} for f in qf[:24]]
            shown += [{"id": f, "label": labels.get(f, f"feature {f}"), "activation": 0.0, "value": v}
                      for f, v in sliders.items() if f not in original]
            ctx.update(result=result, sliders=shown, scale=round(scale, 4), sae_name=p.sae_name)
        if is_htmx(request) and q:
            return page(request, "_results.html", ws, sae, **ctx)
        return page(request, "search.html", ws, sae, **ctx)
    except (EmbedSAEError, NotFound, ValidationError, ValueError) as exc:
        return error_page(request, exc, ws, sae)


@router.get("/w/{ws}/labels", response_class=HTMLResponse)
def label_hits(request: Request, ws: str, label: str = ""):
    try:
        sae = sae_param(request)
        hits = api.find_labels(request, ws, sae=sae, q=label[:200], limit=10)["items"] if label.strip() else []
    except (EmbedSAEError, NotFound) as exc:
        return error_fragment(request, exc, 200)
    return page(request, "_labels.html", ws, sae, hits=hits)


# ---------------------------------------------------------------------------- features
@router.get("/w/{ws}/features", response_class=HTMLResponse)
def features_page(request: Request, ws: str, search: str = "", sort: str = "score", clean: bool = False,
                  page_no: int = 1):
    sae = None
    try:
        sae = sae_param(request)
        p = api.served(request, ws).project(sae)
        size = 50
        page_no = max(1, page_no)
        fp = p.features(search=search[:200] or None, sort=sort, clean=clean, offset=(page_no - 1) * size, limit=size)
        pages = max(1, -(-fp.total // size))
        return page(request, "features.html", ws, sae, fp=fp.items, total=fp.total, search=search, sort=sort,
                    clean=clean, page_no=page_no, pages=pages, sae_name=p.sae_name,
                    score_columns=FeatureScores.columns(FeatureScores.LISTED),
                    score_help={n: h for n, _, h in FeatureScores.columns()})
    except (EmbedSAEError, NotFound) as exc:
        return error_page(request, exc, ws, sae)


@router.get("/w/{ws}/features/{feature}", response_class=HTMLResponse)
def feature_page(request: Request, ws: str, feature: int):
    sae = None
    try:
        sae = sae_param(request)
        p = api.served(request, ws).project(sae)
        if feature < 0:
            raise NotFound("feature ids are 0 or more")
        p.check_feature(feature)
        card = p.feature(feature, top=10, bins=30)
        neighbours = plain(p.neighbours(feature, top=8))
        alive = p.alive_features()
        before, after = bisect.bisect_left(alive, feature), bisect.bisect_right(alive, feature)
        prev_f = alive[before - 1] if before > 0 else None
        nxt = alive[after] if after < len(alive) else None
        words = p.workspace.manifest.get("stages", {}).get("words") is not None
        return page(request, "feature.html", ws, sae, card=card, nb=neighbours, labels=p.labels,
                    quantiles=p.quantile_documents(feature), families=p.families_of(feature),
                    bands=p.activation_bands(feature, 12 if words else 5), words=words,
                    prev_f=prev_f, next_f=nxt, max_chars=MAX_TEXT_CHARS, sae_name=p.sae_name,
                    score_rows=FeatureScores.columns())
    except (EmbedSAEError, NotFound) as exc:
        return error_page(request, exc, ws, sae)


@router.post("/w/{ws}/features/{feature}/try", response_class=HTMLResponse)
def try_text(request: Request, ws: str, feature: int,
             text: Annotated[str, Form(max_length=MAX_TEXT_CHARS)] = ""):
    try:
        sae = sae_param(request)
        s = api.served(request, ws)
        p = s.project(sae)
        if not text.strip():
            return error_fragment(request, "Type some text first.", 200)
        p.check_feature(max(feature, 0))
        res = p.activations([text], [max(feature, 0)], top=10)[0].to_dict()
    except (EmbedSAEError, NotFound) as exc:
        return error_fragment(request, exc, 400)
    return page(request, "_tryit.html", ws, sae, res=res, feature=feature)


# ---------------------------------------------------------------------------- families, map, concepts
@router.get("/w/{ws}/families", response_class=HTMLResponse)
def families_page(request: Request, ws: str):
    sae = None
    try:
        sae = sae_param(request)
        p = api.served(request, ws).project(sae)
        fam = plain(p.families())
        labels = p.labels
        sunburst = None
        if fam:
            members = {m for f in fam["families"] for m in (f["parent"], *f["children"])}
            sunburst = {"families": [{k: f[k] for k in ("parent", "children", "tree_parent")} for f in fam["families"]],
                        "labels": {str(m): labels.get(m, f"feature {m}") for m in members},
                        "base": f"/w/{ws}/features/", "query": f"?sae={sae}" if sae else ""}
        return page(request, "families.html", ws, sae, fam=fam, labels=labels, sunburst=sunburst,
                    sae_name=p.sae_name)
    except (EmbedSAEError, NotFound) as exc:
        return error_page(request, exc, ws, sae)


@router.get("/w/{ws}/map", response_class=HTMLResponse)
def map_page(request: Request, ws: str):
    try:
        sae = sae_param(request)
        s = api.served(request, ws)
        columns = group_columns(s)
        dims = s.default.map_dims()
    except (EmbedSAEError, NotFound) as exc:
        return error_page(request, exc, ws)
    return page(request, "map.html", ws, sae, columns=columns, map_dims=dims)


def group_columns(s) -> list[str]:
    """Corpus columns that can colour or group the documents (categories, years, ...): not the title."""
    return [c for c in s.default.columns() if c not in ("title", "abstract")]


@router.get("/w/{ws}/concepts", response_class=HTMLResponse)
def concepts_page(request: Request, ws: str):
    try:
        sae = sae_param(request)
        columns = group_columns(api.served(request, ws))
    except (EmbedSAEError, NotFound) as exc:
        return error_page(request, exc, ws)
    return page(request, "concepts.html", ws, sae, columns=columns)


@router.post("/w/{ws}/concepts", response_class=HTMLResponse)
def concepts_run(request: Request, ws: str, groups: Annotated[str, Form(max_length=20000)] = "",
                 column: Annotated[str, Form(max_length=200)] = "",
                 baselines: Annotated[list[str] | None, Form()] = None):
    try:
        sae = sae_param(request)
        source = {"column": column} if column.strip() else {"groups": groups}
        body = api.ConceptsRequest(**source, baselines=[b for b in baselines or [] if b in ("raw", "pca", "ica")],
                                   sae=sae)
        report = api.concepts(request, ws, body)
    except (EmbedSAEError, NotFound, ValidationError) as exc:
        return error_fragment(request, exc, 400)
    return page(request, "_concepts.html", ws, None, report=report)


# ---------------------------------------------------------------------------- jobs
@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, ws: str | None = None):
    state = api.app_state(request)
    ws = ws if ws in state.workspaces else next(iter(state.workspaces))
    return page(request, "jobs.html", ws, None, jobs=[j.to_dict() for j in state.jobs.list()],
                forms=[(kind, STAGES[kind].help, form_fields(kind)) for kind in STAGES])


@router.get("/jobs/list", response_class=HTMLResponse)
def jobs_list(request: Request):
    return page(request, "_jobs.html", jobs=[j.to_dict() for j in api.app_state(request).jobs.list()])


@router.post("/w/{ws}/jobs", response_class=HTMLResponse)
async def jobs_start(request: Request, ws: str):
    from pydantic import TypeAdapter
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    kind = str(form.get("kind", ""))
    try:
        if kind not in STAGES:
            raise NotFound(f"no job kind '{kind[:40]}'; use one of {', '.join(STAGES)}")
        fields = form_values(kind, {k: str(v) for k, v in form.items()})
        body = TypeAdapter(JobRequest).validate_python(fields)
        state = api.app_state(request)
        await run_in_threadpool(api.start_job, state, state.served(ws), body)
        message = ""
    except (EmbedSAEError, NotFound, JobBusy, ValidationError, HTTPException) as exc:
        message = api.app_state(request).public(str(exc.detail if isinstance(exc, HTTPException) else exc))
    return page(request, "_jobs.html", ws, None, jobs=[j.to_dict() for j in api.app_state(request).jobs.list()],
                message=message)
