"""The FastAPI application: the JSON API, the web screens and the packaged assets on one port, JSON errors with
the right 4xx status, and the optional access token."""

from __future__ import annotations

import hmac
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import EmbedSAEError, InputError, MissingDependencyError, StageMissingError, WorkspaceError
from .guard import RequestGuard, ServerSettings
from .jobs import JobBusy
from .state import AppState, NotFound

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
TOKEN_COOKIE = "embedsae_token"


def plotly_js_path() -> Path:
    """plotly.min.js from the installed plotly package's package_data (served, never fetched from a CDN)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def create_app(workspaces: list[str | os.PathLike], *, token: str | None = None,
               settings: ServerSettings | None = None) -> FastAPI:
    """The app serving `workspaces` (folders); with `token`, every request must carry it. What it trusts and
    refuses (Host, cross-site requests, body size) is `guard.RequestGuard`, in front of every route."""
    settings = settings or ServerSettings()
    state = AppState(workspaces, token=token)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.close()  # interrupt the running jobs (the serve command has done it already when it stops)

    app = FastAPI(title="embedsae", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  openapi_url="/openapi.json",
                  description="Sparse, named, steerable concepts for dense embeddings: the workspaces given to "
                              "`embedsae serve`, their SAEs, features, families, search, maps, concept groups and jobs.")
    app.state.embedsae = state

    _add_error_handlers(app)
    if token:
        _add_token_check(app, token)
    app.add_middleware(RequestGuard, check_host=not token, max_body_bytes=settings.max_body_bytes)  # outermost

    from . import api, views

    app.include_router(api.router)
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _list_workspaces_in_schema(app, list(state.workspaces))

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        """The API's reference, a page of our own built from the OpenAPI schema (no third-party script)."""
        return views.templates.TemplateResponse(request, "docs.html", {
            "schema": app.openapi(), "ws": None, "sae": None, "workspaces": list(state.workspaces),
            "screens": views.SCREENS})

    @app.get("/static-plotly/plotly.min.js", include_in_schema=False)
    def plotly_js():
        from fastapi.responses import FileResponse

        return FileResponse(plotly_js_path(), media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    return app


def _list_workspaces_in_schema(app: FastAPI, names: list[str]) -> None:
    """The schema names the served workspaces (the `ws` path parameter is an enum of them) and the registered
    choices of every field whose values come from a registry (search modes, architectures, labellers), as they
    are registered when the schema is first asked for."""
    from ..registry import RETRIEVERS
    from .forms import registry_choices

    build = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = build()
            for item in schema.get("paths", {}).values():
                for op in item.values():
                    for param in op.get("parameters", []) if isinstance(op, dict) else []:
                        if param.get("name") == "ws" and param.get("in") == "path":
                            param["schema"] = {**param.get("schema", {}), "enum": names}
                        if param.get("name") == "mode" and param.get("in") == "query":
                            param["schema"] = {**param.get("schema", {}), "enum": list(RETRIEVERS.names())}
            components = schema.get("components", {}).get("schemas", {})
            for model, fields in {"SearchRequest": {"mode": list(RETRIEVERS.names())}, **registry_choices()}.items():
                props = components.get(model, {}).get("properties", {})
                for name, choices in fields.items():
                    if name in props:
                        props[name]["enum"] = choices
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"error": "invalid_request", "message": "; ".join(parts) or "invalid request",
                             "details": [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                                         for e in exc.errors()]}, status_code=422)

    @app.exception_handler(ValidationError)
    async def invalid_model(request: Request, exc: ValidationError):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ())) or 'request'}: {e.get('msg', 'invalid')}"
                 for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request", "invalid_request")

    state: AppState = app.state.embedsae

    def answer(status: int, kind: str):
        async def handler(request: Request, exc: Exception):
            response = _error(status, state.public(str(exc)), kind)
            if isinstance(exc, StageMissingError):  # the stage to run (the map screen offers to start it)
                response = JSONResponse({"error": kind, "message": state.public(str(exc)), "stage": exc.stage},
                                        status_code=status)
            return response

        return handler

    # The most specific class of an exception picks its handler (Starlette walks the MRO).
    for exc_type, status, kind in ((NotFound, 404, "not_found"), (JobBusy, 409, "busy"),
                                   (InputError, 400, "invalid_input"), (MissingDependencyError, 409, "missing_dependency"),
                                   (WorkspaceError, 409, "not_ready"), (EmbedSAEError, 400, "error")):
        app.add_exception_handler(exc_type, answer(status, kind))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith("/api/"):
            return _error(exc.status_code, str(exc.detail), "http_error")
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)


def _add_token_check(app: FastAPI, token: str) -> None:
    """Every request carries the token: `Authorization: Bearer T`, the cookie the app sets, or `?token=T` once (which
    sets the cookie and redirects to the same page without it)."""
    expected = token.encode()

    def ok(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected)

    @app.middleware("http")
    async def check(request: Request, call_next):
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        if ok(bearer) or ok(request.cookies.get(TOKEN_COOKIE)):
            return await call_next(request)
        if ok(request.query_params.get("token")) and request.method == "GET":
            from urllib.parse import urlencode

            query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            target = request.url.path + (f"?{query}" if query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        return _error(401, "this server needs its access token: send 'Authorization: Bearer <token>', "
                           "or open the URL that `embedsae serve` printed", "unauthorized")
