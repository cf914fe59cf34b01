"""Provider harnesses as fixtures: `harness` is every provider's in turn; each is cleaned up
even when its setup or the test failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.providers.harness import Harness
from tests.providers.harness_github import DeployKeyHarness, GitHubTokenHarness
from tests.providers.harness_http import HttpHarness
from tests.providers.harness_mysql import MysqlHarness
from tests.providers.harness_postgres import PostgresHarness
from tests.providers.harness_redis import RedisHarness

HARNESSES: dict[str, Callable[[], Harness]] = {
    "postgres": PostgresHarness,
    "mysql": MysqlHarness,
    "redis": RedisHarness,
    "http": HttpHarness,
    "deploy-key": DeployKeyHarness,
    "github-token": GitHubTokenHarness,
}
H = TypeVar("H", bound=Harness)


def made(make: Callable[[], H]) -> Iterator[H]:
    harness = make()
    try:
        harness.setup()
        yield harness
    finally:
        harness.cleanup()


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield from made(HARNESSES[request.param])


@pytest.fixture(params=sorted(HARNESSES))
def spec_only(request: pytest.FixtureRequest) -> Harness:
    """A harness not set up: for tests of `check_params`, which must not touch the backend."""
    return HARNESSES[request.param]()


@pytest.fixture
def postgres() -> Iterator[PostgresHarness]:
    yield from made(PostgresHarness)


@pytest.fixture
def mysql() -> Iterator[MysqlHarness]:
    yield from made(MysqlHarness)


@pytest.fixture
def redis_acl() -> Iterator[RedisHarness]:
    yield from made(RedisHarness)


@pytest.fixture
def http() -> Iterator[HttpHarness]:
    yield from made(HttpHarness)


@pytest.fixture
def deploy_key() -> Iterator[DeployKeyHarness]:
    yield from made(DeployKeyHarness)


@pytest.fixture
def github_token() -> Iterator[GitHubTokenHarness]:
    yield from made(GitHubTokenHarness)
