"""The HTTP API and web app behind `embedsae serve`: FastAPI, Jinja2, htmx and Plotly, every asset served from
the installed package (no CDN, font or analytics request). Build the app with `create_app(["ws1", "ws2"])`."""

from __future__ import annotations

from typing import Any


def create_app(workspaces, *, token: str | None = None, settings: Any = None) -> Any:
    """The ASGI app (FastAPI) serving the given workspace folders (see `embedsae.app.server.create_app`);
    `settings` are its limits (`embedsae.app.guard.ServerSettings`)."""
    from .server import create_app as _create

    return _create(workspaces, token=token, settings=settings)


__all__ = ["create_app"]
