"""The `serve` command: the HTTP API and the web app on the given workspaces."""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import signal
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

    import uvicorn

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
    state = app.state.embedsae
    server = _server(uvicorn.Config(app, log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=GRACEFUL_SECONDS), state)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        state.close()  # the running jobs were interrupted at the signal; wait for them (a few seconds at most)
    print("stopped", file=sys.stderr, flush=True)
    code = 130 if signal.SIGINT in server.signals else 0
    _exit_now_if_threads_remain(code)
    return code


GRACEFUL_SECONDS = 2
"""Seconds open responses get to finish once the server is asked to stop (then they are cancelled)."""


def _server(config, state):
    """uvicorn's server, stopping promptly: the first SIGINT or SIGTERM ends the event streams and interrupts the
    running jobs (as Ctrl-C interrupts the CLI) while uvicorn closes the connections; the signal is not raised
    again after the shutdown (uvicorn would), so `serve` ends with its own exit code (0, or 130 after SIGINT)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:
            self.signals.append(sig)
            state.begin_stop()
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    server = Server(config)
    server.signals = []
    return server


def _exit_now_if_threads_remain(code: int) -> None:
    """End the process now when a request's thread still runs (a long read answered to no one): nothing a request
    does writes, and the jobs' processes are gone, so there is nothing left to finish."""
    import os
    import threading
    import time

    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        if not [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]:
            return
        time.sleep(0.05)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
