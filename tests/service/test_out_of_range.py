"""Ids and numbers the ledger cannot hold are refused where they come in, on both engines: a
correctly signed delivery (400 `bad_delivery` naming the field), a real token of the issuer
(401 `invalid_token` naming the claim), an operator's argument (exit 2). Nothing is written,
and an id at the very top of the range is taken like any other.

The ledger keeps ids in BIGINT columns (up to 2**63 - 1) and a run's attempt and a pull
request's number in INTEGER ones (up to 2**31 - 1); GitHub's are positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import String, func, select
from werkzeug.test import TestResponse

from handler.ledger import Ledger, tables
from runkeys import oidc
from runkeys.cli import main
from runkeys.leases import Lifetime
from runkeys_sandbox.server import webhooks
from tests.service import kit
from tests.service.conftest import GitHub
from tests.service.kit import assert_documented, body, identity, js, put, states, stored

SECRET = "It's a Secret to Everybody"  # the session App's webhook secret
BIGINT_MAX, INTEGER_MAX = 2**63 - 1, 2**31 - 1
PAST_IDS = [2**63, 2**64, -1, 0]  # one past the column, far past it, and not positive
PAST_NUMBERS = [2**31, 2**63, -1, 0]

# The lease every delivery below is aimed at: a mistake in scoping would queue it.
REPO_ID, RUN_ID, INSTALLATION, ACCOUNT = 1296269, 30433642, 5, 583231


def ledger_of(app: Flask) -> Ledger:
    ledger: Ledger = app.extensions["runkeys"].ledger
    return ledger


def rows(ledger: Ledger) -> dict[str, int]:
    """How many rows each table holds (but the migrations' record)."""
    with ledger.begin() as conn:
        return {
            table.name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
            for table in tables.metadata.sorted_tables
            if table is not tables.schema_migrations
        }


def send(client: FlaskClient, event: str, payload: Any) -> TestResponse:
    data = webhooks.encode(payload)
    headers = webhooks.delivery_headers(
        event, data, secret=SECRET, delivery_id=webhooks.new_delivery_id()
    )
    response = client.post("/webhook", data=data, headers=headers)
    assert_documented("POST", "/webhook", response.status_code, response.json)
    return response


def run_completed() -> dict[str, Any]:
    return kit.workflow_run_completed(REPO_ID, "octo/app", RUN_ID, 1, INSTALLATION)


def pr_closed() -> dict[str, Any]:
    return kit.pull_request_closed(REPO_ID, "octo/app", 8, INSTALLATION)


def uninstalled() -> dict[str, Any]:
    return kit.installation_deleted(INSTALLATION, ACCOUNT, "octo", [(REPO_ID, "octo/app")])


def removed() -> dict[str, Any]:
    return kit.installation_repositories_removed(
        INSTALLATION, ACCOUNT, "octo", [(REPO_ID, "octo/app")]
    )


@dataclass(frozen=True)
class Field:
    """An id or number in a delivery: its event, where it is, the name the answer gives it,
    and the top of its column's range."""

    event: str
    payload: Callable[[], dict[str, Any]]
    path: tuple[str | int, ...]
    name: str
    top: int = BIGINT_MAX

    def payload_with(self, value: Any) -> dict[str, Any]:
        data = self.payload()
        target: Any = data
        for step in self.path[:-1]:
            target = target[step]
        target[self.path[-1]] = value
        return data


FIELDS = [
    Field("workflow_run", run_completed, ("repository", "id"), "repository.id"),
    Field("workflow_run", run_completed, ("workflow_run", "id"), "workflow_run.id"),
    Field(
        "workflow_run",
        run_completed,
        ("workflow_run", "run_attempt"),
        "workflow_run.run_attempt",
        INTEGER_MAX,
    ),
    Field("workflow_run", run_completed, ("installation", "id"), "installation.id"),
    Field("pull_request", pr_closed, ("repository", "id"), "repository.id"),
    Field("pull_request", pr_closed, ("number",), "payload.number", INTEGER_MAX),
    Field("pull_request", pr_closed, ("installation", "id"), "installation.id"),
    Field("installation", uninstalled, ("installation", "id"), "installation.id"),
    Field(
        "installation", uninstalled, ("installation", "account", "id"), "installation.account.id"
    ),
    Field("installation", uninstalled, ("repositories", 0, "id"), "repositories[0].id"),
    Field("installation_repositories", removed, ("installation", "id"), "installation.id"),
    Field(
        "installation_repositories",
        removed,
        ("repositories_removed", 0, "id"),
        "repositories_removed[0].id",
    ),
]
FIELD_IDS = [f"{f.event}-{f.name}" for f in FIELDS]


def _lease_to_aim_at(app: Flask, github: GitHub) -> tuple[str, str]:
    who = identity("octo/app", REPO_ID, RUN_ID, owner_id=ACCOUNT, ref="refs/pull/8/merge")
    run_lease = put(ledger_of(app), who, github.lease(key_name="RUN_KEY"), installation_id=5)
    pr_lease = put(
        ledger_of(app),
        who,
        github.lease(key_name="PR_KEY", lifetime=Lifetime.PR),
        installation_id=INSTALLATION,
    )
    return run_lease[0], pr_lease[0]


@pytest.mark.parametrize("field", FIELDS, ids=FIELD_IDS)
def test_a_signed_delivery_with_an_id_out_of_range_is_refused_and_changes_nothing(
    app: Flask, client: FlaskClient, github: GitHub, field: Field
) -> None:
    aimed = _lease_to_aim_at(app, github)
    before = rows(ledger_of(app))
    past = PAST_NUMBERS if field.top == INTEGER_MAX else PAST_IDS
    for value in [*past, "12", True, None]:  # strings and booleans are not ids either
        response = send(client, field.event, field.payload_with(value))
        assert (response.status_code, js(response)["error"]) == (400, "bad_delivery"), value
        assert field.name in js(response)["message"], js(response)["message"]
        assert rows(ledger_of(app)) == before
        assert states(ledger_of(app), aimed) == dict.fromkeys(aimed, "active")


@pytest.mark.parametrize("field", FIELDS, ids=FIELD_IDS)
def test_the_top_of_the_range_is_an_id_like_any_other(client: FlaskClient, field: Field) -> None:
    response = send(client, field.event, field.payload_with(field.top))
    assert (response.status_code, js(response)["outcome"]) == (200, "queued"), field.name


def test_an_event_runkeys_ignores_is_ignored_whatever_its_ids(
    app: Flask, client: FlaskClient
) -> None:
    before = rows(ledger_of(app))
    requested = run_completed()
    requested["action"] = "requested"
    for value in (2**64, -1):
        requested["workflow_run"]["id"] = value
        requested["installation"]["id"] = value
        response = send(client, "workflow_run", requested)
        assert (response.status_code, js(response)["outcome"]) == (202, "ignored")
    assert rows(ledger_of(app)) == before


# --- tokens ---------------------------------------------------------------------------------

# claim, top of its range, whether the token is a pull request's (the number is in its ref)
CLAIMS = [
    ("repository_id", BIGINT_MAX),
    ("repository_owner_id", BIGINT_MAX),
    ("run_id", BIGINT_MAX),
    ("run_attempt", INTEGER_MAX),
    ("ref", INTEGER_MAX),  # refs/pull/<number>/merge
]


def _claim(name: str, value: int | str) -> dict[str, Any]:
    if name == "ref":
        return {"ref": f"refs/pull/{value}/merge", "event_name": "pull_request"}
    return {name: value}


@pytest.mark.parametrize(("claim", "top"), CLAIMS, ids=[c for c, _ in CLAIMS])
def test_a_token_with_an_id_out_of_range_is_refused_and_changes_nothing(
    app: Flask, client: FlaskClient, github: GitHub, claim: str, top: int
) -> None:
    past = PAST_NUMBERS if top == INTEGER_MAX else PAST_IDS
    before = rows(ledger_of(app))
    values: list[Any] = [*past, *(str(v) for v in past), "²", "١٢", "9" * 21]
    if claim == "ref":  # a number in a pull request's ref: digits, or it is no such ref
        values = [str(v) for v in past if v >= 0] + ["9" * 21]
    for path in ("/v1/leases", "/v1/leases/retire"):
        for value in values:
            headers = github.auth(github.claims(), **_claim(claim, value))
            data = body(github.lease(lifetime=Lifetime.PR if claim == "ref" else Lifetime.RUN))
            if path.endswith("retire"):
                data = {"leases": [{"id": data["leases"][0]["id"], "outcome": "revoked"}]}
            response = client.post(path, json=data, headers=headers)
            assert_documented("POST", path, response.status_code, response.json)
            assert (response.status_code, js(response)["error"]) == (401, "invalid_token"), value
            assert f"'{claim}' claim" in js(response)["message"]
    assert rows(ledger_of(app)) == before  # not even the token's id


@pytest.mark.parametrize(("claim", "top"), CLAIMS, ids=[c for c, _ in CLAIMS])
def test_a_token_at_the_top_of_the_range_registers(
    app: Flask, client: FlaskClient, github: GitHub, claim: str, top: int
) -> None:
    item = github.lease(lifetime=Lifetime.PR if claim == "ref" else Lifetime.RUN)
    headers = github.auth(github.claims(), **_claim(claim, str(top)))
    response = client.post("/v1/leases", json=body(item), headers=headers)
    assert response.status_code == 201, response.json
    lease = stored(ledger_of(app), item.id)
    kept = {
        "repository_id": lease.repository_id,
        "repository_owner_id": lease.owner_id,
        "run_id": lease.run_id,
        "run_attempt": lease.run_attempt,
        "ref": lease.pr_number,
    }
    assert kept[claim] == top


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("jti", "j" * 201),
        ("repository", "octo/" + "r" * 196),
        ("ref", "refs/heads/" + "b" * 246),
        ("sha", "e" * 65),
        ("event_name", "e" * 65),
        ("environment", "e" * 256),
        ("exp", 2**63),
    ],
)
def test_a_token_whose_claims_do_not_fit_the_ledger_is_refused(
    app: Flask, client: FlaskClient, github: GitHub, claim: str, value: Any
) -> None:
    before = rows(ledger_of(app))
    headers = github.auth(github.claims(), **{claim: value})
    response = client.post("/v1/leases", json=body(github.lease()), headers=headers)
    assert (response.status_code, js(response)["error"]) == (401, "invalid_token")
    assert f"'{claim}' claim" in js(response)["message"]
    assert rows(ledger_of(app)) == before


def test_claims_as_long_as_the_ledger_holds_register(
    app: Flask, client: FlaskClient, github: GitHub
) -> None:
    item = github.lease()
    longest = {
        "jti": "j" * 200,
        "ref": "refs/heads/" + "b" * 244,
        "sha": "e" * 64,
        "event_name": "e" * 64,
    }
    response = client.post(
        "/v1/leases", json=body(item), headers=github.auth(github.claims(), **longest)
    )
    assert response.status_code == 201, response.json
    assert stored(ledger_of(app), item.id).ref == longest["ref"]


def test_the_limits_on_claims_are_the_ledgers_columns() -> None:
    def longest(column: Any) -> int:
        assert isinstance(column.type, String)
        assert column.type.length is not None
        return column.type.length

    leases = tables.leases.c
    assert (
        longest(tables.token_ids.c.jti),
        longest(leases.repository),
        longest(leases.ref),
    ) == (oidc.JTI_LONGEST, oidc.REPOSITORY_LONGEST, oidc.REF_LONGEST)
    assert (
        longest(leases.job_environment),
        longest(leases.sha),
        longest(leases.event_name),
    ) == (oidc.ENVIRONMENT_LONGEST, oidc.SHA_LONGEST, oidc.EVENT_LONGEST)


# --- the operator's commands ----------------------------------------------------------------


@pytest.fixture
def env(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return environ


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["leases", "--run", "99999999999999999999"], "--run"),
        (["leases", "--run", str(2**63)], "--run"),
        (["leases", "--run", "0"], "--run"),
        (["leases", "--run", "-1"], "--run"),
        (["leases", "--run", "²"], "--run"),
        (["leases", "--pr", str(2**31)], "--pr"),
        (["leases", "--repository", "99999999999999999999"], "--repository"),
        (["leases", "--limit", "-1"], "--limit"),
        (["leases", "--limit", str(2**63)], "--limit"),
        (["revoke", "--run", "99999999999999999999"], "--run"),
        (["revoke", "--pr", str(2**31), "--repository", "octo/app"], "--pr"),
        (["revoke", "--all", "--repository", str(2**63)], "--repository"),
    ],
)
def test_an_operators_id_out_of_range_is_an_argument_error(
    env: dict[str, str],
    ledger: Ledger,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    flag: str,
) -> None:
    before = rows(ledger)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}" in err
    assert "from 1 to" in err
    assert "Traceback" not in err
    assert rows(ledger) == before


def test_an_operators_id_at_the_top_of_the_range_is_looked_up(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    (mine,) = put(ledger, identity("octo/app", BIGINT_MAX, BIGINT_MAX), github.lease())
    assert main(["leases", "--run", str(BIGINT_MAX), "--json", "--limit", str(INTEGER_MAX)]) == 0
    assert mine in capsys.readouterr().out
    assert main(["leases", "--repository", str(BIGINT_MAX), "--pr", str(INTEGER_MAX)]) == 0
    assert mine not in capsys.readouterr().out  # a run lease has no pull request
