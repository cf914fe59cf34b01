"""The paths runkeys' GitHub client sends for environment and secret names, read from the
stand-in's request log as they arrived (percent-encoding kept). A name that is a dot segment
sends nothing at all: `DELETE /repos/octo/app/environments/..` reached GitHub as
`DELETE /repos/octo/app/`, a request on the repository itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runkeys.github.paths import UnsafePathSegment
from runkeys.github.secrets import SecretStore
from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.leases import SecretTarget
from tests.sandbox.conftest import Seeded


def session(seeded: Seeded) -> GitHubSession:
    config = GitHubConfig(
        api_url=seeded.sb.url,
        app=AppCredentials(str(seeded.app.id), seeded.app.private_key_pem),
        retries=0,
    )
    return GitHubSession(config)


def sent(seeded: Seeded) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in seeded.sb.requests]


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("deploy/prod/service", "deploy%2Fprod%2Fservice"),
        ("staging deploy", "staging%20deploy"),
        ("préprod", "pr%C3%A9prod"),
        ("100%", "100%25"),
    ],
)
def test_an_environments_life_sends_exactly_these_paths(
    seeded: Seeded, name: str, segment: str
) -> None:
    store = SecretStore(session(seeded), "octo/app")
    target = SecretTarget("octo/app", "API_KEY", name)
    seeded.sb.clear_requests()

    assert store.environment_exists(name) is False
    store.create_environment(name)
    assert store.environment_exists(name) is True
    assert store.put(target, "the value") is True
    assert seeded.sb.secret_value(seeded.repo, "API_KEY", environment=name) == "the value"
    assert store.names(name) == {"API_KEY"}
    assert store.delete(target) is True
    assert store.delete(target) is False
    assert store.delete_environment(name) is True
    assert store.delete_environment(name) is False

    env = f"/repos/octo/app/environments/{segment}"
    assert sent(seeded) == [
        ("GET", "/repos/octo/app/installation", 200),
        ("POST", f"/app/installations/{seeded.installation.id}/access_tokens", 201),
        ("GET", env, 404),
        ("PUT", env, 200),
        ("GET", env, 200),
        ("GET", f"{env}/secrets/public-key", 200),
        ("PUT", f"{env}/secrets/API_KEY", 201),
        ("GET", f"{env}/secrets", 200),
        ("DELETE", f"{env}/secrets/API_KEY", 204),
        ("DELETE", f"{env}/secrets/API_KEY", 404),
        ("DELETE", env, 204),
        ("DELETE", env, 404),
    ]
    assert seeded.sb.environment_names(seeded.repo) == []


def test_repository_secrets_send_exactly_these_paths(seeded: Seeded) -> None:
    store = SecretStore(session(seeded), "octo/app")
    target = SecretTarget("octo/app", "API_KEY")
    seeded.sb.clear_requests()
    assert store.put(target, "v") is True
    assert store.delete(target) is True
    assert sent(seeded)[2:] == [
        ("GET", "/repos/octo/app/actions/secrets/public-key", 200),
        ("PUT", "/repos/octo/app/actions/secrets/API_KEY", 201),
        ("DELETE", "/repos/octo/app/actions/secrets/API_KEY", 204),
    ]


HOSTILE = [".", "..", "../..", "a/../b", "%2e%2e", ".%2E", "..%2F", "%252e%252e", ""]

CALLS: dict[str, Callable[[SecretStore, str], object]] = {
    "environment_exists": lambda store, name: store.environment_exists(name),
    "create_environment": lambda store, name: store.create_environment(name),
    "delete_environment": lambda store, name: store.delete_environment(name),
    "public_key": lambda store, name: store.public_key(name),
    "names": lambda store, name: store.names(name),
    "put": lambda store, name: store.put(SecretTarget("octo/app", "API_KEY", name), "v"),
    "delete": lambda store, name: store.delete(SecretTarget("octo/app", "API_KEY", name)),
    "put a secret named so": lambda store, name: store.put(SecretTarget("octo/app", name), "v"),
    "delete a secret named so": lambda store, name: store.delete(SecretTarget("octo/app", name)),
}


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_dot_segment_sends_no_request_at_all(seeded: Seeded, call: str, name: str) -> None:
    seeded.sb.clear_requests()
    store = SecretStore(session(seeded), "octo/app")
    with pytest.raises(UnsafePathSegment) as refused:
        CALLS[call](store, name)
    assert repr(name) in refused.value.cause
    assert seeded.sb.requests == []


@pytest.mark.parametrize("repository", ["octo/..", "octo/.", "../app", "octo/%2e%2e"])
def test_a_repository_of_dot_segments_sends_no_request(seeded: Seeded, repository: str) -> None:
    seeded.sb.clear_requests()
    github = session(seeded)
    with pytest.raises(UnsafePathSegment):
        github.installation_id(repository)
    with pytest.raises(UnsafePathSegment):
        SecretStore(github, repository).delete(SecretTarget(repository, "API_KEY"))
    assert seeded.sb.requests == []
