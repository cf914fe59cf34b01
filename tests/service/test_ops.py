"""Health, readiness, metrics and logs."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from handler.app import create_app
from handler.logs import JsonFormatter, configure
from runkeys import __version__
from tests.service.conftest import GitHub, postgres_database
from tests.service.kit import Clock, assert_documented, body, identity, js, put


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok", "version": __version__})
    assert_documented("GET", "/healthz", 200, response.json)


def test_readyz(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert (response.status_code, response.json) == (200, {"status": "ready"})
    assert_documented("GET", "/readyz", 200, response.json)


def test_readyz_fails_when_the_ledger_is_gone(environ: dict[str, str], clock: Clock) -> None:
    with postgres_database() as url:
        app = create_app({**environ, "RUNKEYS_DATABASE_URL": url}, clock=clock)
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        app.extensions["runkeys"].close()
    response = client.get("/readyz")  # the database was dropped
    assert (response.status_code, js(response)["error"]) == (503, "not_ready")
    assert_documented("GET", "/readyz", 503, response.json)
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_metrics_count_leases_by_state_and_the_backlog(
    app: Flask, client: FlaskClient, github: GitHub
) -> None:
    ledger = app.extensions["runkeys"].ledger
    ids = put(ledger, identity(), github.lease(), github.lease(), github.lease())
    from handler.ledger.queue import LeasesById, queue

    with ledger.begin() as conn:
        queue(
            conn,
            LeasesById(tuple(ids[:2])),
            actor="t",
            reason="t",
            now=app.extensions["runkeys"].clock(),
        )
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    leases = {s.labels["state"]: s.value for s in families["runkeys_leases"].samples}
    assert leases == {"active": 1.0, "revoking": 2.0, "revoked": 0.0, "failed": 0.0}
    assert families["runkeys_worker_backlog"].samples[0].value == 2.0
    assert families["runkeys_run_completions_pending"].samples[0].value == 0.0
    for name in (
        "runkeys_webhook_deliveries",
        "runkeys_webhook_signature_failures",
        "runkeys_revocations",
        "runkeys_revocation_latency_seconds",
        "runkeys_oidc_token_failures",
    ):
        assert name in families


def test_log_lines_are_json_with_fields_and_no_secrets(
    client: FlaskClient, github: GitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    claims = github.claims()
    headers = github.auth(claims)
    client.post("/v1/leases", json=body(github.lease()), headers=headers)
    client.post("/v1/leases", json=body(github.lease()), headers=headers)
    lines = [JsonFormatter().format(record) for record in caplog.records]
    parsed = [json.loads(line) for line in lines]
    assert any(p["message"] == "leases registered" and p["run_id"] == claims.run_id for p in parsed)
    assert any(p["message"] == "token refused" for p in parsed)
    token = headers["Authorization"].split()[1]
    for line in lines:
        assert token not in line
        assert token.split(".")[2] not in line  # not even the signature


def test_configure_writes_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = root.handlers[:], root.level
    try:
        configure("INFO")
        logging.getLogger("runkeys.service.test").info("hello", extra={"fields": {"lease": "x"}})
        try:
            raise ValueError("postgresql://admin:hunter2@db/x")
        except ValueError:
            logging.getLogger("runkeys.service.test").exception("failed")
    finally:
        root.handlers[:], _ = before
        root.setLevel(before[1])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "hello"
    assert lines[0]["lease"] == "x"
    assert "hunter2" not in lines[1]["traceback"]


def test_metrics_served_apart_are_not_on_the_app(environ: dict[str, str], clock: Clock) -> None:
    """With RUNKEYS_METRICS_BIND, `runkeys serve`'s master answers `/metrics` there (see
    test_gunicorn.py); the app answers it as it answers any page it does not have."""
    app = create_app({**environ, "RUNKEYS_METRICS_BIND": "127.0.0.1:9090"}, clock=clock)
    try:
        client = app.test_client()
        response = client.get("/metrics")
        missing = client.get("/no-such-page")
        assert (response.status_code, response.json) == (404, missing.json)
        assert js(response)["error"] == "not_found"
        assert_documented("GET", "/metrics", 404, response.json)
        assert client.get("/healthz").status_code == 200
    finally:
        app.extensions["runkeys"].close()
