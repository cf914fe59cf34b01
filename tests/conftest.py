"""Fixtures shared by every test package."""

from collections.abc import Iterator

import pytest

from runkeys_sandbox.server.sandbox import Sandbox

# Every sandbox exchange in the suite is checked against GitHub's REST description.
pytest_plugins = ("tests.openapi.plugin",)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A started GitHub stand-in, stopped after the test."""
    with Sandbox() as sb:
        yield sb
