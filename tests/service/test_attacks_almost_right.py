"""Attacks that are almost right: a sibling repository of the token's own owner (reached by the
same installation, even running a run of the same id), a repository that kept its name but not
its id, and key and secret names GitHub would refuse. Each is refused with exactly its own
error, and leaves the ledger as it was."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from handler.ledger.completions import apply_completions
from handler.ledger.history import history
from handler.ledger.leases import get
from runkeys.leases import Lifetime, SecretTarget
from runkeys_sandbox.server import webhooks
from runkeys_sandbox.server.state import Repository
from tests.service import kit
from tests.service.conftest import GitHub
from tests.service.kit import assert_documented, body, identity, js, put, states
from tests.services import unique

WEBHOOK_SECRET = "It's a Secret to Everybody"  # the session sandbox App's


def post(client: FlaskClient, path: str, data: Any, headers: dict[str, str]) -> TestResponse:
    response = client.post(path, json=data, headers=headers)
    assert_documented("POST", path, response.status_code, response.json)
    return response


def in_ledger(app: Flask, lease_id: str) -> bool:
    with app.extensions["runkeys"].ledger.begin() as conn:
        return get(conn, lease_id) is not None


def actions(app: Flask, lease_id: str) -> list[str]:
    with app.extensions["runkeys"].ledger.begin() as conn:
        return [entry.action for entry in history(conn, lease_id)]


def sibling_in_the_installation(github: GitHub, name: str = "") -> Repository:
    """A second repository of the token's owner that the same App installation reaches."""
    sibling = github.sandbox.add_repository(f"{github.repo.owner}/{name or unique('sibling')}")
    github.sandbox.update_installation(github.installation, repositories=[github.repo, sibling])
    return sibling


# --- a secret in a sibling repository -----------------------------------------------------------


@pytest.mark.parametrize("name", ["other", "app2", "ap", "app-fork"])
def test_a_secret_in_a_sibling_repository_of_the_same_owner_is_refused(
    client: FlaskClient, github: GitHub, app: Flask, name: str
) -> None:
    """Same owner, same installation: the owner matches, the repository does not. Names that
    share a prefix with the token's `app` catch a comparison on a prefix."""
    sibling = sibling_in_the_installation(github, name)
    item = github.lease(repository=sibling.full_name)
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (422, "foreign_repository")
    assert js(response)["message"] == (
        f"lease {item.id} (API_TOKEN): its secret is in {github.repo.owner}/{name}, "
        "not in the token's repository"
    )
    assert not in_ledger(app, item.id)


def test_a_secret_in_the_tokens_own_repository_is_registered(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """The other side of the line above: the same request for the token's own repository
    (spelled in another case: GitHub's names are case-insensitive) is taken."""
    sibling_in_the_installation(github)
    item = github.lease(repository=github.repo.full_name.upper())
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert response.status_code == 201
    assert actions(app, item.id) == ["registered"]


# --- the post step's report from a sibling, or from a repository that kept only its name -----


def retire_report(lease_id: str) -> dict[str, Any]:
    return {"leases": [{"id": lease_id, "outcome": "revoked"}]}


def test_a_sibling_running_a_run_of_the_same_id_cannot_retire_a_lease(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    claims = github.claims()
    item = github.lease()
    assert post(client, "/v1/leases", body(item), github.auth(claims)).status_code == 201
    sibling = sibling_in_the_installation(github)
    theirs = github.claims(claims.run_id, repo=sibling)
    assert (theirs.run_id, theirs.run_attempt) == (claims.run_id, claims.run_attempt)
    assert theirs.repository_owner_id == claims.repository_owner_id
    response = post(client, "/v1/leases/retire", retire_report(item.id), github.auth(theirs))
    assert (response.status_code, js(response)["error"]) == (404, "lease_not_found")
    assert js(response)["not_found"] == [item.id]
    assert states(app.extensions["runkeys"].ledger, [item.id]) == {item.id: "active"}
    assert actions(app, item.id) == ["registered"]
    # the token's own run may
    mine = post(client, "/v1/leases/retire", retire_report(item.id), github.auth(claims))
    assert js(mine)["leases"] == [{"id": item.id, "state": "revoked"}]


def test_a_repository_of_the_same_name_but_another_id_cannot_retire_a_lease(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """The repository was deleted and made again under its name (or transferred away and
    another took the name): its runs are not the old repository's runs."""
    claims = github.claims()
    item = github.lease()
    assert post(client, "/v1/leases", body(item), github.auth(claims)).status_code == 201
    reborn = github.claims(claims.run_id, repository_id=github.repo.id + 1_000_000)
    assert (reborn.repository, reborn.run_id) == (claims.repository, claims.run_id)
    response = post(client, "/v1/leases/retire", retire_report(item.id), github.auth(reborn))
    assert (response.status_code, js(response)["not_found"]) == (404, [item.id])
    assert actions(app, item.id) == ["registered"]


# --- webhooks about a sibling, or about a repository that kept only its name ------------------

OWN_ID, SIBLING_ID, RUN, INSTALLATION = 1296269, 1296270, 30433642, 5


def deliver(client: FlaskClient, event: str, payload: dict[str, Any]) -> TestResponse:
    data = webhooks.encode(payload)
    headers = webhooks.delivery_headers(
        event, data, secret=WEBHOOK_SECRET, delivery_id=webhooks.new_delivery_id()
    )
    response = client.post("/webhook", data=data, headers=headers)
    assert_documented("POST", "/webhook", response.status_code, response.json)
    return response


def apply_recorded(app: Flask) -> None:
    with app.extensions["runkeys"].ledger.begin() as conn:
        apply_completions(conn)


def leases_of_octo_app(app: Flask) -> dict[str, list[str]]:
    """A run lease and a PR lease of octo/app (id 1296269) in installation 5."""
    ledger = app.extensions["runkeys"].ledger
    return {
        "run": put(ledger, identity(), kit.lease(lifetime=Lifetime.RUN)),
        "pr": put(ledger, identity(ref="refs/pull/12/merge"), kit.lease(lifetime=Lifetime.PR)),
    }


@pytest.mark.parametrize(
    ("repository_id", "full_name"),
    [(SIBLING_ID, "octo/other"), (OWN_ID + 1_000_000, "octo/app")],
    ids=["sibling", "same-name-another-id"],
)
def test_a_webhook_about_another_repository_of_the_owner_retires_nothing(
    app: Flask, client: FlaskClient, repository_id: int, full_name: str
) -> None:
    """The same installation, run id, attempt and PR number: only the repository differs."""
    ids = [i for group in leases_of_octo_app(app).values() for i in group]
    run = kit.workflow_run_completed(repository_id, full_name, RUN, 1, INSTALLATION)
    assert deliver(client, "workflow_run", run).status_code == 200
    closed = kit.pull_request_closed(repository_id, full_name, 12, INSTALLATION)
    assert deliver(client, "pull_request", closed).status_code == 200
    removed = kit.installation_repositories_removed(
        INSTALLATION, 583231, "octo", [(repository_id, full_name)]
    )
    assert deliver(client, "installation_repositories", removed).status_code == 200
    apply_recorded(app)
    assert states(app.extensions["runkeys"].ledger, ids) == dict.fromkeys(ids, "active")
    # the same deliveries about octo/app itself do retire them
    deliver(client, "workflow_run", kit.workflow_run_completed(OWN_ID, "octo/app", RUN, 1, 5))
    deliver(client, "pull_request", kit.pull_request_closed(OWN_ID, "octo/app", 12, 5))
    apply_recorded(app)
    assert states(app.extensions["runkeys"].ledger, ids) == dict.fromkeys(ids, "revoking")


# --- names GitHub would refuse ------------------------------------------------------------------

# key name → the whole 400 message: the field, then why (GitHub's secret-name rules)
BAD_KEY_NAMES = [
    (
        "GITHUB_X",
        "leases[0].key_name: names starting with GITHUB_ are reserved by GitHub Actions or runkeys",
    ),
    (
        "github_x",
        "leases[0].key_name: names starting with GITHUB_ are reserved by GitHub Actions or runkeys",
    ),
    ("A-B", "leases[0].key_name: a secret name may contain only letters, digits and underscores"),
    ("1ABC", "leases[0].key_name: a secret name cannot start with a digit"),
    ("KÉY", "leases[0].key_name: a secret name may contain only letters, digits and underscores"),
    (
        "A" * 256,
        "The body is malformed: Expected `str` of length <= 255 - at `$.leases[0].key_name`",
    ),
    ("", "The body is malformed: Expected `str` of length >= 1 - at `$.leases[0].key_name`"),
]


@pytest.mark.parametrize("with_secret", [False, True], ids=["no-secret", "secret"])
@pytest.mark.parametrize(
    ("key_name", "message"),
    BAD_KEY_NAMES,
    ids=["GITHUB_", "github_", "dash", "digit", "non-ascii", "256", "empty"],
)
def test_a_bad_key_name_is_refused_at_registration(
    client: FlaskClient, github: GitHub, key_name: str, message: str, with_secret: bool
) -> None:
    """The key name is the secret's name and the job's variable: without a secret, only the
    service's own check stands between it and the ledger."""
    item = github.lease(key_name=key_name, secret=with_secret)
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        400,
        {"error": "invalid_lease", "message": message},
    )
    assert not in_ledger(client.application, item.id)


@pytest.mark.parametrize("secret_name", ["A-B", "1ABC", "KÉY", "API TOKEN"])
def test_a_secret_name_github_would_refuse_is_named_as_such(
    client: FlaskClient, github: GitHub, app: Flask, secret_name: str
) -> None:
    """A good key name, a secret named otherwise and not a name at all: the refusal says
    what is wrong with the secret's name, not only that it differs from the key's."""
    good = github.lease(key_name="API_TOKEN")
    item = msgspec.structs.replace(
        good, secret=SecretTarget(repository=github.repo.full_name, name=secret_name)
    )
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        422,
        {
            "error": "invalid_lease",
            "message": f"lease {item.id} (API_TOKEN): {secret_name!r} is not a secret name",
        },
    )
    assert not in_ledger(app, item.id)
