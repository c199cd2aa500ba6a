"""The `serve` command: the HTTP API and the web app on the given workspaces."""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import sys

from ..app.guard import ServerSettings
from ..errors import InputError
from .options import add_settings_args, settings_kwargs

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the web app and JSON API (/api/v1, docs at /docs) on one or more workspaces")
    p.add_argument("workspaces", nargs="+", metavar="WS", help="workspace directories to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs --token)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--token", help="access token every request must carry (required off loopback); "
                                   "'auto' makes a random one")
    add_settings_args(p, ServerSettings)
    p.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import socket

    from ..errors import require

    require("fastapi", "embedsae serve", "app")
    uvicorn = require("uvicorn", "embedsae serve", "app")
    token = secrets.token_urlsafe(16) if args.token == "auto" else args.token
    if not is_loopback(args.host) and not token:
        raise InputError(f"refusing to serve on {args.host} without an access token: anyone who can reach that "
                         "address could read the workspaces and start jobs; add --token SECRET (or --token auto), "
                         "or keep the default --host 127.0.0.1")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {args.port}")
    from ..app import create_app

    app = create_app(args.workspaces, token=token, settings=ServerSettings(**settings_kwargs(ServerSettings, args)))
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: no 40 ms delayed-ACK stalls
    try:
        sock.bind((args.host, args.port))
        sock.listen(2048)  # connections made as soon as the URL is printed wait in the backlog
    except OSError as exc:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port") from exc
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    names = ", ".join(app.state.embedsae.workspaces)
    print(f"embedsae serving {names} at {url}", flush=True)
    print(f"  API: http://{shown}:{port}/api/v1   docs: http://{shown}:{port}/docs   (Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    print("stopped", file=sys.stderr)
    return 0
