"""Schema fuzzing: schemathesis generates requests for every operation of the OpenAPI schema and sends them to the
app serving a real Cranfield workspace. No answer may be a server error (5xx), and every answer must match the
schema (status code, content type, body)."""

from __future__ import annotations

import shutil
import time
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (test extra) is not installed")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from embedsae.app import create_app  # noqa: E402

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_app(app_ws, tmp_path_factory):
    """The app on a private copy of the workspace (jobs the fuzzer starts write there); on teardown every job is
    cancelled and awaited, so no training outlives the test."""
    dst = tmp_path_factory.mktemp("fuzz") / "cranfield"
    shutil.copytree(app_ws.path, dst)
    app = create_app([dst])
    yield app
    runner = app.state.embedsae.jobs
    for job in runner.list():
        runner.cancel(job.id)
    end = time.monotonic() + 600
    while any(not j.finished_state for j in runner.list()) and time.monotonic() < end:
        time.sleep(0.5)


def on_loopback(app):
    """The app as a browser on this machine reaches it: schemathesis' ASGI client names the host 'testserver', and
    the server (with no token) answers loopback names only."""

    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"host"]
            scope = {**scope, "headers": [*headers, (b"host", b"127.0.0.1:8000")]}
        await app(scope, receive, send)

    return asgi


def describe(exc: BaseException) -> str:
    """An exception with the ones it groups (hypothesis reports flaky failures as a group)."""
    text = f"{type(exc).__name__}: {exc}"
    for sub in getattr(exc, "exceptions", ()) or ():
        text += "\n  " + describe(sub).replace("\n", "\n  ")
    return text


def fuzz(app, max_examples: int = 40) -> tuple[int, list[str], dict[str, Counter]]:
    """Fuzz every operation of the app's schema; returns (operations, failures, status counts per operation)."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", on_loopback(app))
    failures: list[str] = []
    statuses: dict[str, Counter] = {}
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def run(case):
            if case.path == "/api/v1/jobs/{job_id}/events":
                case.query = {**(case.query or {}), "timeout": 1}  # a stream on a running job lasts until it ends
            response = case.call_and_validate(checks=CHECKS, timeout=600)
            statuses.setdefault(case.operation.label, Counter())[response.status_code] += 1

        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - gather every operation's failure (an exception group), then report
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{op.label}: {describe(exc)[:3000]}")
    return operations, failures, statuses


def test_no_server_error_and_responses_match_the_schema(fuzzed_app):
    operations, failures, statuses = fuzz(fuzzed_app)
    assert operations >= 18
    for label, counts in sorted(statuses.items()):
        print(f"{label:<60} {dict(sorted(counts.items()))}")
    assert not failures, "\n\n".join(failures)
    calls = sum(sum(c.values()) for c in statuses.values())
    ok = sum(n for c in statuses.values() for status, n in c.items() if status < 300)
    assert calls >= 10 * operations and ok >= 2 * operations, (calls, ok)  # the fuzzer reached the handlers
