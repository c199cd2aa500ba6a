"""Security and integrity, table-driven per group (issue 26's probe cases): no web page can drive the local server,
and no command loses work. Each case names what it sends and the answer it must get.

1. Markup in every path and form field comes back escaped (or in a JSON / plain-text answer a browser never renders).
2. Without a token only loopback Host names are answered; state-changing requests from another site or origin are
   refused; a train job never replaces an SAE unless it says so.
3. /docs is a page of our own (no third-party script); bodies over the limit get 413 before they are read whole;
   error pages name workspaces, not paths.
4. One lock per SAE: every writer excludes the others; a retrain forgets the replaced SAE's later stages.
5. export refuses workspaces and the current folder; a full disk is one line and leaves nothing.
6. Every damaged workspace file gives one line naming it and the fix (CLI exit 2, HTTP 409), `embedsae check`
   finds it; interpret on a full disk leaves no database behind.
7. import-sae refuses non-finite weights; CLI steering is bounded like the API's; an empty label is refused.

The real-browser cases (a page that navigates to a crafted URL, a cross-site form auto-submitted) are in
test_security_browser.py.
"""

from __future__ import annotations

import contextlib
import html
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from embedsae import layout
from embedsae.cli import main
from embedsae.workspace import Workspace
from tests.faults import tmpfs

fastapi = pytest.importorskip("fastapi", reason="the app extra (fastapi) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from embedsae.app import create_app  # noqa: E402
from embedsae.app.guard import ServerSettings  # noqa: E402

LOCAL = "http://127.0.0.1:8000"
SAE = "topk-k8-n256"
API = "/api/v1/workspaces/cranfield"


@pytest.fixture(scope="module")
def client(app_ws):
    with TestClient(create_app([app_ws.path]), base_url=LOCAL) as c:
        yield c


def cli(capsys, *argv) -> tuple[int, list[str], str]:
    """Run the CLI in this process: (exit code, its error lines, its whole stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if ": error: " in line], err


def one_line(capsys, argv, *words) -> str:
    """The CLI exits 2 with one error line holding every word, and no traceback; returns the line."""
    rc, errors, err = cli(capsys, *argv)
    assert rc == 2 and len(errors) == 1, (argv, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


# ---------------------------------------------------------------------------- 1. markup is escaped everywhere
MARK = "<img src=x onerror=alert(1)>"
Q = quote(MARK, safe="")
ESCAPE_CASES = [  # (method, url, form fields)
    ("GET", f"/w/{Q}/search?q=x", None),
    ("GET", f"/w/cranfield/search?q=x&sae={Q}", None),
    ("GET", f"/w/cranfield/search?q={Q}&mode={Q}&top={Q}", None),
    ("GET", f"/w/{Q}/labels?label=x", None),
    ("GET", f"/w/cranfield/labels?label=x&sae={Q}", None),
    ("GET", f"/w/cranfield/labels?label={Q}", None),
    ("GET", f"/w/{Q}/features", None),
    ("GET", f"/w/cranfield/features?search={Q}&sort={Q}", None),
    ("GET", f"/w/{Q}/features/3", None),
    ("GET", f"/w/cranfield/features/3?sae={Q}", None),
    ("GET", f"/w/cranfield/features/{Q}", None),
    ("GET", f"/w/{Q}/families", None),
    ("GET", f"/w/{Q}/map", None),
    ("GET", f"/w/{Q}/concepts", None),
    ("GET", f"/jobs?ws={Q}", None),
    ("GET", f"/w/{Q}", None),
    ("GET", f"/w/cranfield/saes/{Q}/plots/{Q}", None),
    ("GET", f"/{Q}", None),
    ("GET", f"{API}/features?search={Q}", None),
    ("POST", f"/w/{Q}/features/3/try", {"text": MARK}),
    ("POST", f"/w/cranfield/features/3/try?sae={Q}", {"text": MARK}),
    ("POST", "/w/cranfield/features/3/try", {"text": MARK}),
    ("POST", f"/w/cranfield/features/{Q}/try", {"text": "x"}),
    ("POST", "/w/cranfield/concepts", {"groups": MARK}),
    ("POST", "/w/cranfield/concepts", {"groups": f"{MARK}: {MARK}, qzxwv"}),
    ("POST", f"/w/cranfield/concepts?sae={Q}", {"groups": "A: b"}),
    ("POST", f"/w/{Q}/concepts", {"groups": "A: b"}),
    ("POST", f"/w/{Q}/jobs", {"kind": "index"}),
    ("POST", "/w/cranfield/jobs", {"kind": MARK}),
    ("POST", "/w/cranfield/jobs", {"kind": "train", "name": MARK, "k": MARK, "latents": MARK}),
]


@pytest.mark.parametrize("method,url,form", ESCAPE_CASES, ids=[f"{m} {u[:50]} {sorted(f or {})}" for m, u, f in ESCAPE_CASES])
def test_markup_in_paths_and_fields_comes_back_escaped(client, method, url, form):
    r = client.request(method, url, data=form)
    kind = r.headers.get("content-type", "")
    assert r.status_code < 500, r.text[:500]
    assert r.headers.get("x-content-type-options") == "nosniff"
    if kind.startswith("text/html"):
        assert "<img src=x" not in r.text, r.text[:2000]
    else:  # JSON or plain text: a browser shows it as text, never as a page
        assert kind.startswith(("application/json", "text/plain")), kind
    assert client.get("/api/v1/jobs").json() == []  # nothing started


def test_stored_markup_is_escaped_on_every_screen(app_ws, copy_ws):
    """A label holding markup (as an LLM labeller could write) is shown as text on each screen that lists labels."""
    import sqlite3

    ws = copy_ws(app_ws)
    con = sqlite3.connect(ws.sae_file(SAE, layout.FEATURES_DB))
    with con:
        con.execute("UPDATE features SET label = ? WHERE label IS NOT NULL", (MARK,))
    con.close()
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        f = c.get(f"{API}/features", params={"limit": 1}).json()["items"][0]["id"]
        for url in ("/", "/w/cranfield/features", f"/w/cranfield/features/{f}", "/w/cranfield/families",
                    "/w/cranfield/search?q=shock+waves", "/w/cranfield/labels?label=img"):
            r = c.get(url)
            assert r.status_code == 200 and "<img src=x" not in r.text, url
        assert "&lt;img src=x" in c.get(f"/w/cranfield/features/{f}").text


def test_path_traversal_is_refused_everywhere(client):
    for url in ("/w/..%2F..%2Fetc/search", "/w/cranfield/saes/..%2F..%2Fmanifest.json/plots/density.png",
                "/w/cranfield/saes/topk-k8-n256/plots/..%2F..%2F..%2Fmanifest.json", "/static/..%2F..%2Fserver.py",
                f"{API}/saes/..%2Fsaes", "/api/v1/workspaces/..%2F..%2Fetc"):
        assert client.get(url).status_code in (404, 422), url


# ---------------------------------------------------------------------------- 2. Host, cross-site requests, train jobs
SEARCH = ("POST", f"{API}/search", {"query": "shock waves", "mode": "bm25", "top": 3})
JOB = ("POST", f"{API}/jobs", {"kind": "evaluate"})
REQUEST_CASES = [  # (case, (method, url, json), headers, status)
    ("rebinding name reads", ("GET", "/api/v1/workspaces", None), {"host": "attacker.test"}, 403),
    ("rebinding name with a port", ("GET", "/", None), {"host": "attacker.test:8000"}, 403),
    ("rebinding name starts a job", JOB, {"host": "attacker.test"}, 403),
    ("a name resolving to loopback", ("GET", "/api/v1/jobs", None), {"host": "127.0.0.1.nip.io:8000"}, 403),
    ("no Host", ("GET", "/api/v1/jobs", None), {"host": ""}, 403),
    ("localhost", ("GET", "/api/v1/jobs", None), {"host": "localhost:8000"}, 200),
    ("localhost without a port", ("GET", "/api/v1/jobs", None), {"host": "localhost"}, 200),
    ("127.0.0.1", ("GET", "/api/v1/jobs", None), {"host": "127.0.0.1:8000"}, 200),
    ("[::1]", ("GET", "/api/v1/jobs", None), {"host": "[::1]:8000"}, 200),
    ("job from another site's form", ("POST", "/w/cranfield/jobs", "form"), {"origin": "http://evil.example"}, 403),
    ("API job from another origin", JOB, {"origin": "http://evil.example"}, 403),
    ("job from another port of localhost", JOB, {"origin": "http://127.0.0.1:9999"}, 403),
    ("job from an opaque origin", JOB, {"origin": "null"}, 403),
    ("job marked cross-site", JOB, {"sec-fetch-site": "cross-site"}, 403),
    ("job marked same-site", JOB, {"sec-fetch-site": "same-site"}, 403),
    ("cancel from another origin", ("POST", "/api/v1/jobs/j1/cancel", None), {"origin": "http://evil.example"}, 403),
    ("search from its own page", SEARCH, {"origin": LOCAL, "sec-fetch-site": "same-origin"}, 200),
    ("search from a client that is no page", SEARCH, {}, 200),
]


@pytest.mark.parametrize("case,request_,headers,status", REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_only_loopback_hosts_and_same_origin_changes(client, case, request_, headers, status):
    method, url, body = request_
    if body == "form":
        r = client.request(method, url, data={"kind": "evaluate"}, headers=headers)
    else:
        r = client.request(method, url, json=body, headers=headers)
    assert r.status_code == status, (case, r.text[:300])
    if status == 403:
        assert r.json()["error"] in ("forbidden_host", "cross_site"), r.text
    assert client.get("/api/v1/jobs").json() == []


def test_with_a_token_any_host_may_ask(app_ws):
    with TestClient(create_app([app_ws.path], token="s3cret"), base_url="http://my-box.example:8000") as c:
        assert c.get("/api/v1/workspaces", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/v1/workspaces").status_code == 401
        r = c.post(f"{API}/jobs", json={"kind": "evaluate"},
                   headers={"Authorization": "Bearer s3cret", "Origin": "http://evil.example"})
        assert r.status_code == 403  # the token does not let another site's page change anything


def test_a_train_job_never_replaces_an_sae_unasked(app_ws, copy_ws):
    ws = copy_ws(app_ws)
    before = ws.sae_file(SAE, layout.SAE_WEIGHTS).read_bytes()
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        for name in (SAE, None):  # named, and the default name (topk-k8-n256 for k 8, 256 latents)
            r = c.post(f"{API}/jobs", json={"kind": "train", "k": 8, "latents": 256, "epochs": 1,
                                            **({"name": name} if name else {})})
            assert r.status_code == 409 and f"already has an SAE named '{SAE}'" in r.json()["message"], r.text
            assert str(ws.path) not in r.text
        form = c.post("/w/cranfield/jobs", data={"kind": "train", "k": "8", "latents": "256", "name": SAE})
        assert form.status_code == 200 and "already has an SAE named" in form.text
        assert c.get("/api/v1/jobs").json() == []
        assert ws.sae_file(SAE, layout.SAE_WEIGHTS).read_bytes() == before
        r = c.post(f"{API}/jobs", json={"kind": "train", "k": 8, "latents": 256, "epochs": 1, "name": SAE,
                                        "overwrite": True, "evaluate": False})
        assert r.status_code == 202, r.text
        end = time.monotonic() + 300
        while (job := c.get(f"/api/v1/jobs/{r.json()['id']}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < end
            time.sleep(0.3)
        assert job["state"] == "done", job
    assert ws.sae_file(SAE, layout.SAE_WEIGHTS).read_bytes() != before
    stages = Workspace.open(ws.path).manifest["stages"]
    assert f"train:{SAE}" in stages and not [k for k in stages if k.startswith(("interpret:", "families:", "index"))]


# ---------------------------------------------------------------------------- 3. docs, body size, paths
def test_docs_are_our_own_page_with_no_outside_script(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/api/v1/workspaces/{ws}/search" in r.text and "SearchRequest" in r.text
    import re

    sources = [s for s in re.findall(r"""<(?:script|link|img)[^>]+(?:src|href)=["']?([^"' >]+)""", r.text)
               if s != "data:,"]  # the empty favicon
    assert sources and all(s.startswith("/") and not s.startswith("//") for s in sources), sources
    for s in sources:
        assert client.get(s).status_code == 200, s


BODY_CASES = [  # (case, content, headers, limit, status)
    ("declared 3 MB", b"x" * 3_000_000, {"content-type": "application/json"}, None, 413),
    ("over a smaller limit", json.dumps({"query": "q" * 1000, "mode": "bm25"}).encode(), {"content-type": "application/json"}, 1024, 413),
    ("under the limit", json.dumps({"query": "shock", "mode": "bm25"}).encode(), {"content-type": "application/json"}, 1024, 200),
    ("a length that is no number", b"{}", {"content-type": "application/json", "content-length": "ten"}, None, 400),
]


@pytest.mark.parametrize("case,content,headers,limit,status", BODY_CASES, ids=[c[0] for c in BODY_CASES])
def test_bodies_over_the_limit_get_413(app_ws, case, content, headers, limit, status):
    settings = ServerSettings(max_body_bytes=limit) if limit else None
    with TestClient(create_app([app_ws.path], settings=settings), base_url=LOCAL) as c:
        r = c.post(f"{API}/search", content=content, headers=headers)
    assert r.status_code == status, r.text[:300]
    if status == 413:
        assert "larger than" in r.json()["message"]


def test_a_streamed_body_is_refused_as_it_passes_the_limit(app_ws):
    """A body sent in chunks with no Content-Length: the guard stops reading at the limit (2 MiB: 21 chunks of
    100 kB), answers 413, and the route never runs."""
    import asyncio

    app = create_app([app_ws.path])
    pulled, sent = [], []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"y" * 100_000, "more_body": len(pulled) < 30}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": f"{API}/search", "raw_path": f"{API}/search".encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and len(pulled) == 21


def test_error_pages_name_workspaces_not_paths(app_ws, copy_ws):
    ws = copy_ws(app_ws)
    ws.sae_file(SAE, layout.FEATURES_DB).write_bytes(b"not a database" * 100)
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        for url in ("/w/cranfield/features", f"{API}/features", "/w/cranfield/features/3"):
            r = c.get(url)
            text = html.unescape(r.text)
            assert "features.db is damaged" in text and "'cranfield'/saes/" in text, (url, text[:500])
            assert str(ws.path) not in r.text and str(Path(ws.path).parent) not in r.text, url


# ---------------------------------------------------------------------------- 4. one lock per SAE, retrain
HOLD = ("import sys, time\nfrom embedsae.workspace import Workspace\n"
        "lock = Workspace.open(sys.argv[1]).sae_lock(sys.argv[2], sys.argv[3])\nlock.__enter__()\n"
        "print('held', flush=True)\ntime.sleep(600)\n")


@contextlib.contextmanager
def held(ws: Path, sae: str, doing: str):
    """Another process holding the SAE's lock, as a running stage does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ws), sae, doing], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


WRITER_CASES = [  # (case, argv after the workspace is put in)
    ("train the same name", ["train", "{ws}", "--name", SAE, "--k", "8", "--latents", "256", "--epochs", "1", "--quiet"]),
    ("import over it", ["import-sae", "{export}", "--into", "{ws}", "--name", SAE, "--overwrite"]),
    ("interpret", ["interpret", "{ws}", "--sae", SAE, "--features", "4", "--quiet"]),
    ("families", ["families", "{ws}", "--sae", SAE, "--rebuild", "--quiet"]),
    ("index", ["index", "{ws}", "--sae", SAE, "--quiet"]),
    ("evaluate", ["evaluate", "{ws}", "--sae", SAE, "--recompute"]),
    ("export", ["export", "{ws}", "--sae", SAE, "--format", "embedsae", "-o", "{out}"]),
]


@pytest.fixture(scope="module")
def lock_ws(app_ws, tmp_path_factory):
    root = tmp_path_factory.mktemp("locks")
    shutil.copytree(app_ws.path, root / "cranfield")
    from embedsae.interop import export_sae

    export_sae(root / "cranfield", root / "exported", "embedsae", sae_name=SAE)
    return root


@pytest.mark.parametrize("case,argv", WRITER_CASES, ids=[c[0] for c in WRITER_CASES])
def test_every_writer_of_an_sae_excludes_the_others(lock_ws, capsys, case, argv):
    ws = lock_ws / "cranfield"
    files = {p.name: p.stat().st_mtime_ns for p in ws.joinpath(layout.SAES, SAE).iterdir()}
    with held(ws, SAE, "interpret") as holder:
        args = [a.format(ws=ws, export=lock_ws / "exported", out=lock_ws / "out") for a in argv]
        one_line(capsys, args, f"SAE '{SAE}'", "is busy", f"process {holder.pid} is running interpret")
    assert {p.name: p.stat().st_mtime_ns for p in ws.joinpath(layout.SAES, SAE).iterdir()} == files
    assert not (lock_ws / "out").exists()


def test_interpret_running_keeps_its_labels_from_a_retrain(app_ws, copy_ws, capsys):
    """The probe's lost work: `interpret` running while `train --name <same>` replaced the SAE (both exit 0)."""
    ws = copy_ws(app_ws)
    folder = ws.sae_dir(SAE)
    for f in (layout.FEATURES_DB, layout.FAMILIES_JSON):
        (folder / f).unlink()
    weights = (folder / layout.SAE_WEIGHTS).read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "embedsae", "interpret", str(ws.path), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = ws.path / f"{layout.STAGE_LOCK_PREFIX}sae-{SAE}"
    try:
        deadline = time.time() + 300
        while not (lock.is_file() and "running interpret" in lock.read_text()):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        one_line(capsys, ["train", ws.path, "--name", SAE, "--k", "8", "--latents", "256", "--epochs", "1", "--quiet"],
                 "is busy", "running interpret")
        assert proc.wait(timeout=900) == 0, proc.stderr.read()[-2000:]
    finally:
        proc.kill()
    assert (folder / layout.SAE_WEIGHTS).read_bytes() == weights
    import embedsae

    assert len(embedsae.open(ws.path).features().items) > 0  # the labels are there


def test_a_retrain_forgets_the_stages_of_the_sae_it_replaces(app_ws, copy_ws, capsys):
    ws = copy_ws(app_ws)
    assert {f"interpret:{SAE}", f"families:{SAE}", "index"} <= set(ws.manifest["stages"])
    rc, _, err = cli(capsys, "train", ws.path, "--name", SAE, "--k", "8", "--latents", "256", "--epochs", "1", "--quiet")
    assert rc == 0, err
    capsys.readouterr()
    assert main(["info", str(ws.path), "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    assert f"train:{SAE}" in stages and "embed" in stages
    assert not [k for k in stages if k.startswith(("interpret:", "families:", "index"))], stages
    assert not ws.sae_file(SAE, layout.FEATURES_DB).exists()


# ---------------------------------------------------------------------------- 5. export
EXPORT_CASES = [  # (case, output folder, overwrite)
    ("the workspace", "{ws}", True),
    ("its SAEs folder", "{ws}/saes", True),
    ("inside an SAE", "{ws}/saes/" + SAE + "/out", False),
    ("inside the workspace", "{ws}/exports", False),
    ("the folder holding the workspace", "{root}", True),
    ("another workspace", "{other}", True),
    ("the current folder", ".", True),
    ("the folder holding the current one", "..", True),
]


@pytest.fixture(scope="module")
def export_root(app_ws, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    shutil.copytree(app_ws.path, root / "cranfield")
    shutil.copytree(app_ws.path, root / "other", ignore=shutil.ignore_patterns(layout.SAES))
    (root / "here" / "below").mkdir(parents=True)
    return root


@pytest.mark.parametrize("case,out,overwrite", EXPORT_CASES, ids=[c[0] for c in EXPORT_CASES])
def test_export_refuses_workspaces_and_the_current_folder(export_root, capsys, monkeypatch, case, out, overwrite):
    monkeypatch.chdir(export_root / "here" / "below")
    ws = export_root / "cranfield"
    before = sorted(str(p) for p in export_root.rglob("*"))
    target = out.format(ws=ws, root=export_root, other=export_root / "other")
    one_line(capsys, ["export", ws, "--format", "embedsae", "-o", target, *(["--overwrite"] if overwrite else [])],
             "export to")
    assert sorted(str(p) for p in export_root.rglob("*")) == before
    assert Workspace.open(ws).sae_names() == [SAE] and Workspace.open(export_root / "other")


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(app_ws, tmp_path, capsys):
    with tmpfs(tmp_path / "small", "128k") as small:
        one_line(capsys, ["export", app_ws.path, "--format", "saelens", "-o", small / "out"],
                 "no space left on device", "nothing was written")
        assert list(small.iterdir()) == []


# ---------------------------------------------------------------------------- 6. damaged files
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(64, path.stat().st_size // 3)])


def _random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 4000, len(data) - 3990):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _text(text: str):
    return lambda path: path.write_text(text)


def _cfg_latents(path: Path) -> None:
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps({**cfg, "n_latents": "abc"}))


SAE_DIR = f"{layout.SAES}/{SAE}"
DAMAGES = {  # kind: (file in the workspace, how it is damaged, what the fix says)
    "features.db truncated": (f"{SAE_DIR}/features.db", _truncate, "interpret the SAE again"),
    "features.db random": (f"{SAE_DIR}/features.db", _random, "interpret the SAE again"),
    "codes.npz truncated": (f"{SAE_DIR}/codes.npz", _truncate, "computed again"),
    "concept_index.npz truncated": (f"{SAE_DIR}/concept_index.npz", _truncate, "build the index again"),
    "cfg.json {bad": (f"{SAE_DIR}/cfg.json", _text("{bad"), "train (or import) the SAE again"),
    "cfg.json n_latents abc": (f"{SAE_DIR}/cfg.json", _cfg_latents, "train (or import) the SAE again"),
    "families.json {bad": (f"{SAE_DIR}/families.json", _text("{bad"), "find the families again"),
    "families.json not families": (f"{SAE_DIR}/families.json", _text('{"families": 3}'), "find the families again"),
    "metrics.json []": (f"{SAE_DIR}/metrics.json", _text("[]"), "evaluate the SAE again"),
    "corpus.parquet truncated": ("corpus.parquet", _truncate, "embed the corpus again"),
    "shard flipped": (f"{layout.SHARDS}/{layout.shard_file(0)}", _flip, "embed the corpus again"),
}
SEARCHES = [["search", "{ws}", "shock waves", "--mode", m] for m in ("dense", "concept", "hybrid", "bm25")]
DAMAGE_CASES = [  # (damage, CLI argv) — every command that reads the damaged file
    *[("features.db truncated", a) for a in (["features", "{ws}"], ["feature", "{ws}", "3"], ["neighbours", "{ws}", "3"], *SEARCHES)],
    *[("features.db random", a) for a in (["features", "{ws}"], ["feature", "{ws}", "3"], ["neighbours", "{ws}", "3"], *SEARCHES)],
    *[("codes.npz truncated", a) for a in (["feature", "{ws}", "3"], ["neighbours", "{ws}", "3"])],
    *[("concept_index.npz truncated", a) for a in SEARCHES],
    *[("cfg.json {bad", a) for a in (["info", "{ws}"], ["feature", "{ws}", "3"], SEARCHES[1])],
    *[("cfg.json n_latents abc", a) for a in (["info", "{ws}"], ["feature", "{ws}", "3"])],
    ("families.json {bad", ["families", "{ws}"]), ("families.json not families", ["families", "{ws}"]),
    *[("metrics.json []", a) for a in (["evaluate", "{ws}"], ["info", "{ws}"])],
    *[("corpus.parquet truncated", a) for a in (["feature", "{ws}", "3"], SEARCHES[3])],
    *[("shard flipped", a) for a in (SEARCHES[0], ["train", "{ws}", "--name", "new", "--k", "4", "--latents", "32"])],
]
API_CASES = [  # (damage, method, url, json body)
    *[(d, "GET", u, None) for d in ("features.db truncated", "features.db random")
      for u in (f"{API}/features", f"{API}/features/3", f"{API}/features/3/neighbours", "/w/cranfield/features")],
    *[(d, "POST", f"{API}/search", {"query": "shock waves", "mode": m}) for d in ("features.db random",)
      for m in ("dense", "concept", "hybrid", "bm25")],
    ("codes.npz truncated", "GET", f"{API}/features/3", None),
    ("concept_index.npz truncated", "POST", f"{API}/search", {"query": "shock waves", "mode": "concept"}),
    *[(d, "GET", u, None) for d in ("cfg.json {bad", "cfg.json n_latents abc")
      for u in (f"{API}", f"{API}/features/3", f"{API}/saes/{SAE}")],
    *[(d, "GET", f"{API}/families", None) for d in ("families.json {bad", "families.json not families")],
    ("metrics.json []", "GET", f"{API}/saes/{SAE}", None),
    ("corpus.parquet truncated", "GET", f"{API}/features/3", None),
    ("shard flipped", "POST", f"{API}/search", {"query": "shock waves", "mode": "dense"}),
]


@pytest.fixture(scope="module")
def damaged_ws(app_ws, tmp_path_factory):
    """A copy of the app workspace per kind of damage (made once)."""
    root = tmp_path_factory.mktemp("damaged")
    made: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in made:
            dst = root / kind.replace(" ", "_").replace("{", "").replace("[]", "list") / "cranfield"
            shutil.copytree(app_ws.path, dst)
            rel, damage, _ = DAMAGES[kind]
            damage(dst / rel)
            made[kind] = dst
        return made[kind]

    return make


@pytest.mark.parametrize("kind,argv", DAMAGE_CASES, ids=[f"{k}: {' '.join(a[:1] + a[3:])}" for k, a in DAMAGE_CASES])
def test_a_damaged_file_is_one_line_naming_it_and_the_fix(damaged_ws, capsys, kind, argv):
    ws = damaged_ws(kind)
    rel, _, fix = DAMAGES[kind]
    before = sorted(str(p) for p in ws.rglob("*"))
    args = [a.format(ws=ws) for a in argv]
    line = one_line(capsys, args, rel.split("/")[-1], "is damaged", fix)
    assert str(ws / rel) in line or str(ws / rel.split("/")[0]) in line
    after = sorted(str(p) for p in ws.rglob("*"))
    assert [p for p in after if p not in before and layout.STAGE_LOCK_PREFIX not in p] == []  # nothing written


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_check_names_each_damaged_file(damaged_ws, capsys, kind):
    ws = damaged_ws(kind)
    rel, _, fix = DAMAGES[kind]
    rc, _, _ = cli(capsys, "check", ws)
    assert rc == 2
    rc = main(["check", str(ws), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    bad = [r for r in rows if not r["ok"]]
    assert rc == 2 and bad, rows
    assert any(rel.split("/")[-1] in r["message"] and fix in r["message"] for r in bad), bad


def test_check_passes_an_intact_workspace(app_ws, capsys):
    rc, _, err = cli(capsys, "check", app_ws.path)
    assert rc == 0, err
    rc = main(["check", str(app_ws.path), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and all(r["ok"] for r in rows)
    names = {r["path"] for r in rows}
    assert {"manifest.json", "corpus.parquet", f"{SAE_DIR}/features.db", f"{SAE_DIR}/concept_index.npz",
            f"{SAE_DIR}/codes.npz", "index/bm25"} <= names, names


@pytest.mark.parametrize("kind,method,url,body", API_CASES, ids=[f"{k}: {m} {u}" for k, m, u, _ in API_CASES])
def test_a_damaged_file_is_answered_409_naming_it(damaged_ws, kind, method, url, body):
    ws = damaged_ws(kind)
    rel, _, fix = DAMAGES[kind]
    with TestClient(create_app([ws]), base_url=LOCAL) as c:
        r = c.request(method, url, json=body)
    assert r.status_code == 409, (r.status_code, r.text[:500])
    text = r.json()["message"] if url.startswith("/api/") else r.text
    assert rel.split("/")[-1] in text and "is damaged" in text and fix in text, text
    assert str(ws) not in r.text


def test_interpret_on_a_full_disk_leaves_no_database(app_ws, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(app_ws.path, src)
    for f in (layout.FEATURES_DB, layout.FAMILIES_JSON, layout.FAMILIES_HTML, layout.FAMILIES_PNG, layout.CONCEPT_INDEX):
        (src / SAE_DIR / f).unlink(missing_ok=True)
    shutil.rmtree(src / layout.INDEX)
    used = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    with tmpfs(tmp_path / "small", f"{used // 1024 + 160}k") as small:
        ws = small / "cranfield"
        shutil.copytree(src, ws)
        rc, errors, err = cli(capsys, "interpret", ws, "--quiet")
        assert rc == 2 and len(errors) == 1 and "no space left on device" in errors[0], err[-2000:]
        left = [p.name for p in (ws / SAE_DIR).iterdir()]
        assert not [n for n in left if n.startswith(layout.FEATURES_DB) or n.endswith(".tmp")], left


# ---------------------------------------------------------------------------- 7. imported weights, steering values
def test_import_refuses_non_finite_weights(app_ws, copy_ws, tmp_path, capsys):
    import torch

    ws = copy_ws(app_ws)
    n, d = 64, 384
    state = {"encoder.weight": torch.randn(n, d), "decoder.weight": torch.randn(d, n), "latent_bias": torch.zeros(n),
             "pre_bias": torch.zeros(d)}
    state["encoder.weight"][3, 5] = float("nan")
    torch.save(state, tmp_path / "x_8_64_16.pth")
    one_line(capsys, ["import-sae", tmp_path / "x_8_64_16.pth", "--into", ws.path, "--trained-on", ws.model_id],
             "non-finite weights", "W_enc")
    assert Workspace.open(ws.path).sae_names() == [SAE] and Workspace.open(ws.path).resolve_sae() == SAE


STEER_CASES = [  # (case, --steer value, words)
    ("huge value", "5=1e308", ["between -100 and 100"]),
    ("huge raise", "5=+1e9", ["between -100 and 100"]),
    ("huge lowering", "5=-101", ["between -100 and 100"]),
    ("empty label", '""=1', ["the label is empty"]),
    ("blank label", "' '=1", ["the label is empty"]),
]


@pytest.mark.parametrize("case,spec,words", STEER_CASES, ids=[c[0] for c in STEER_CASES])
def test_cli_steering_is_bounded_like_the_api(app_ws, capsys, client, case, spec, words):
    one_line(capsys, ["search", app_ws.path, "shock waves", "--mode", "dense", "--steer", spec], *words)


def test_api_steering_bounds(client):
    for edit in ({"feature": 5, "value": 1e308}, {"feature": 5, "value": 101, "op": "add"}, {"label": "", "value": 1}):
        r = client.post(f"{API}/search", json={"query": "shock waves", "steer": [edit]})
        assert r.status_code == 422, (edit, r.text)
    assert client.post(f"{API}/search", json={"query": "shock waves", "steer": [{"feature": 5, "value": 100}]}).status_code == 200
