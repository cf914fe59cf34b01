"""Starting and stopping, the rate limit, and what the sandbox's Python API refuses."""

from __future__ import annotations

import pytest
import requests

from runkeys_sandbox.server.sandbox import Sandbox
from tests.sandbox.conftest import Seeded


def test_start_stop_and_context_manager() -> None:
    sb = Sandbox()
    with pytest.raises(RuntimeError, match="not started"):
        _ = sb.url
    repo = sb.add_repository("octo/early")  # state can be seeded before the server starts
    with sb:
        assert sb.url.startswith("http://127.0.0.1:")
        assert sb.oidc_issuer_url == f"{sb.url}/_services/token"
        token = sb.add_token([repo], {"secrets": "read"})
        answer = requests.get(
            f"{sb.url}/repos/octo/early/actions/secrets",
            headers={"Authorization": f"token {token}"},
            timeout=5,
        )
        assert answer.status_code == 200
        with pytest.raises(RuntimeError, match="started already"):
            sb.start()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sb.url}/rate_limit", timeout=2)


def test_two_sandboxes_are_independent() -> None:
    with Sandbox() as first, Sandbox() as second:
        assert first.url != second.url
        first.add_repository("octo/app")
        second.add_repository("octo/app")  # same name, different worlds
        assert first.secret_names("octo/app") == second.secret_names("octo/app") == []


def test_rate_limit_headers_and_endpoint(seeded: Seeded) -> None:
    token = seeded.token()
    first = seeded.api("GET", "/repos/octo/app/actions/secrets", token)
    second = seeded.api("GET", "/repos/octo/app/actions/secrets", token)
    assert first.headers["X-RateLimit-Limit"] == "5000"
    assert (
        int(first.headers["X-RateLimit-Remaining"]) - int(second.headers["X-RateLimit-Remaining"])
        == 1
    )
    assert first.headers["X-RateLimit-Resource"] == "core"
    status = seeded.api("GET", "/rate_limit", token).json()
    assert status["resources"]["core"]["used"] == 2  # /rate_limit itself is free
    assert status["rate"] == status["resources"]["core"]
    gh = seeded.github(token)
    assert gh.get_rate_limit().resources.core.remaining == 4998
    workflow = seeded.sb.workflow_token(seeded.repo)
    assert seeded.api("GET", "/rate_limit", workflow).json()["rate"]["limit"] == 1000


def test_primary_rate_limit_is_enforced(seeded: Seeded) -> None:
    seeded.sb.rate_limits["installation"] = 2
    token = seeded.token()
    for _ in range(2):
        assert seeded.api("GET", "/repos/octo/app/keys", token).status_code == 200
    refused = seeded.api("GET", "/repos/octo/app/keys", token)
    assert refused.status_code == 403
    assert (
        refused.json()["message"]
        == f"API rate limit exceeded for installation ID {seeded.installation.id}."
    )
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    seeded.sb.advance_clock(3601)
    assert seeded.api("GET", "/repos/octo/app/keys", seeded.token()).status_code == 200


def test_python_api_refusals(seeded: Seeded) -> None:
    sb = seeded.sb
    with pytest.raises(ValueError, match="exists already"):
        sb.add_repository("OCTO/APP")
    with pytest.raises(ValueError, match="owner/name"):
        sb.add_repository("no-slash")
    with pytest.raises(ValueError, match="exists already"):
        sb.add_repository("octo/other", id=seeded.repo.id)
    with pytest.raises(ValueError, match="exists already"):
        sb.add_app(seeded.app.id)
    with pytest.raises(ValueError, match="exactly one account"):
        sb.install(seeded.app, [seeded.repo, sb.add_repository("elsewhere/app")])
    with pytest.raises(ValueError, match="not granted"):
        sb.create_installation_token(seeded.installation, permissions={"contents": "write"})
    with pytest.raises(ValueError, match="not part of the installation"):
        sb.create_installation_token(seeded.installation, [sb.add_repository("octo/outside")])
    with pytest.raises(KeyError):
        sb.secret_value(seeded.repo, "X", environment="missing")
    with pytest.raises(KeyError):
        sb.repository("octo/missing")


def test_installing_on_all_repositories_covers_later_ones(seeded: Seeded) -> None:
    with pytest.raises(ValueError, match="installed on octo already"):
        seeded.sb.install(seeded.app, [seeded.repo])
    installation = seeded.sb.install(seeded.sb.add_app(), account="octo", all_repositories=True)
    later = seeded.sb.add_repository("octo/later")
    token = seeded.sb.create_installation_token(installation)
    assert seeded.api("GET", f"/repos/{later.full_name}/actions/secrets", token).status_code == 200
    granted = seeded.api("GET", f"/app/installations/{installation.id}", seeded.token())
    assert granted.status_code == 401  # an installation token is not the App's JWT


def test_repositories_removed_from_an_installation(seeded: Seeded) -> None:
    lib = seeded.sb.add_repository("octo/lib")
    seeded.sb.update_installation(seeded.installation, repositories=[seeded.repo, lib])
    token = seeded.token()
    assert seeded.api("GET", "/repos/octo/lib/keys", token).status_code == 200
    seeded.sb.update_installation(seeded.installation, repositories=[seeded.repo])
    assert seeded.api("GET", "/repos/octo/lib/keys", token).status_code == 404
