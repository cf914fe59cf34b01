"""Every test compiles its patterns afresh: `compile_pattern`'s cache would otherwise hand a
test the regular expression an earlier test built, hiding a change to how globs translate."""

from __future__ import annotations

import pytest

from handler.policy import compile_pattern


@pytest.fixture(autouse=True)
def _fresh_patterns() -> None:
    compile_pattern.cache_clear()
