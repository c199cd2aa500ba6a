"""A hostile page against a real `embedsae serve`, in Debian's Chromium driven by Playwright: the page lives on another
local origin (a real HTTP server on localhost, another port), and tries what the probe of issue 26 did — navigate to
a URL that echoes markup, auto-submit a form that replaces the trained SAE, post JSON — and none of it may run a
script or change anything. Plus the requests a page cannot make but a rebinding attacker's can (raw Host headers),
sent over a real socket."""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import threading
import time
from urllib.parse import quote, urlparse

import pytest

from embedsae import layout
from tests.browser import chromium, serving

SAE = "topk-k8-n256"
PAYLOAD = "<img src=x onerror=\"document.title='pwned'\">"
"""Markup that runs a script wherever a page puts it back raw (no '/': a path segment keeps it whole)."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(app_ws, tmp_path_factory):
    """`embedsae serve` on a copy of the app workspace, on a free loopback port: (port, workspace folder)."""
    pytest.importorskip("fastapi", reason="the app extra is not installed")
    ws = tmp_path_factory.mktemp("attacked") / "cranfield"
    shutil.copytree(app_ws.path, ws)
    with serving([ws]) as url:
        yield urlparse(url).port, ws


def attacker_pages(port: int) -> dict[str, str]:
    target = f"http://127.0.0.1:{port}"
    form = "".join(f'<input name="{k}" value="{v}">' for k, v in
                   {"kind": "train", "name": SAE, "k": "8", "latents": "256", "epochs": "1", "overwrite": "true"}.items())
    return {
        "/navigate.html": f"<script>location = {json.dumps(target + '/w/' + quote(PAYLOAD, safe='') + '/labels?label=x')};</script>",
        "/labels-sae.html": f"<script>location = {json.dumps(target + '/w/cranfield/labels?label=x&sae=' + quote(PAYLOAD, safe=''))};</script>",
        "/search.html": f"<script>location = {json.dumps(target + '/w/cranfield/search?q=' + quote(PAYLOAD, safe='') + '&sae=' + quote(PAYLOAD, safe=''))};</script>",
        "/form.html": f'<form id="f" method="post" action="{target}/w/cranfield/jobs">{form}</form>'
                      '<script>document.getElementById("f").submit();</script>',
        "/api-form.html": f'<form id="f" method="post" enctype="text/plain" action="{target}/api/v1/workspaces/cranfield/jobs">'
                          '<input name=\'{"kind": "evaluate", "x": "\' value=\'"}\'></form>'
                          '<script>document.getElementById("f").submit();</script>',
        "/fetch.html": f"<script>fetch({json.dumps(target + '/api/v1/workspaces/cranfield/jobs')}, {{method: 'POST', "
                       "mode: 'no-cors', headers: {'content-type': 'text/plain'}, body: JSON.stringify({kind: 'evaluate'})})"
                       ".then(() => document.title = 'sent', () => document.title = 'failed');</script>",
    }


@pytest.fixture(scope="module")
def attacker(served):
    """A real HTTP server on localhost (another origin and site than 127.0.0.1:PORT) serving the hostile pages."""
    pages = attacker_pages(served[0])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(attacker):
    with chromium() as b:
        yield b


def api(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    con.request(method, path, body=json.dumps(body) if body is not None else None,
                headers={"content-type": "application/json", **(headers or {})})
    r = con.getresponse()
    data = r.read().decode()
    con.close()
    return r.status, data


def visit(browser, url: str, wait: float = 3.0) -> tuple[str, list[str], str]:
    """Open a page in a fresh context; (final title, dialogs and page errors seen, final URL)."""
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(f"dialog {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: seen.append(f"error {e}"))
    page.goto(url)
    time.sleep(wait)
    page.wait_for_load_state()
    title, final = page.title(), page.url
    context.close()
    return title, seen, final


@pytest.mark.parametrize("name", ["/navigate.html", "/labels-sae.html", "/search.html"])
def test_a_crafted_url_runs_no_script(served, attacker, browser, name):
    port, _ = served
    title, seen, final = visit(browser, attacker + name)
    assert final.startswith(f"http://127.0.0.1:{port}/")  # the navigation did reach the app
    assert title != "pwned" and not seen, (title, seen)
    assert json.loads(api(port, "GET", "/api/v1/jobs")[1]) == []


@pytest.mark.parametrize("name", ["/form.html", "/api-form.html", "/fetch.html"])
def test_another_sites_page_changes_nothing(served, attacker, browser, name):
    port, ws = served
    weights = (ws / layout.SAES / SAE / layout.SAE_WEIGHTS).read_bytes()
    visit(browser, attacker + name)
    assert json.loads(api(port, "GET", "/api/v1/jobs")[1]) == []
    assert (ws / layout.SAES / SAE / layout.SAE_WEIGHTS).read_bytes() == weights
    assert (ws / layout.SAES / SAE / layout.FEATURES_DB).is_file()


def test_the_apps_own_forms_still_work(served, browser):
    """The same-origin form (the jobs screen) is accepted: the guard refuses other sites, not the app."""
    port, _ = served
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/jobs")
    page.locator("form:has(input[value=index]) button").first.click()
    page.wait_for_selector("#jobs tr.job", timeout=60_000)
    context.close()
    jobs = json.loads(api(port, "GET", "/api/v1/jobs")[1])
    assert len(jobs) == 1 and jobs[0]["kind"] == "index"
    end = time.monotonic() + 300
    while json.loads(api(port, "GET", f"/api/v1/jobs/{jobs[0]['id']}")[1])["state"] in ("queued", "running"):
        assert time.monotonic() < end
        time.sleep(0.5)
    api(port, "GET", "/api/v1/jobs")


REAL_REQUESTS = [  # (case, method, path, headers, status) over a real socket to the real server
    ("rebinding name", "GET", "/api/v1/workspaces", {"Host": "attacker.test"}, 403),
    ("rebinding name posting", "POST", "/api/v1/workspaces/cranfield/search", {"Host": "attacker.test:80"}, 403),
    ("loopback name", "GET", "/api/v1/workspaces", {"Host": "localhost"}, 200),
    ("another origin's POST", "POST", "/api/v1/workspaces/cranfield/search", {"Origin": "http://evil.example"}, 403),
    ("a declared 3 MB body", "POST", "/api/v1/workspaces/cranfield/search", {"Content-Length": "3000000"}, 413),
]


@pytest.mark.parametrize("case,method,path,headers,status", REAL_REQUESTS, ids=[c[0] for c in REAL_REQUESTS])
def test_real_requests_the_guard_refuses(served, case, method, path, headers, status):
    port, _ = served
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = None if "Content-Length" in headers else (json.dumps({"query": "shock", "mode": "bm25"}) if method == "POST" else None)
    con.putrequest(method, path, skip_host="Host" in headers)
    for k, v in {"content-type": "application/json", **headers}.items():
        con.putheader(k, v)
    if body is not None and "Content-Length" not in headers:
        con.putheader("Content-Length", str(len(body)))
    con.endheaders(body.encode() if body else None)
    r = con.getresponse()
    assert r.status == status, (case, r.read()[:300])
    assert r.getheader("x-frame-options") == "DENY" and r.getheader("x-content-type-options") == "nosniff"
    con.close()
