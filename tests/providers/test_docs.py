"""docs/providers.md stays true: every provider has a section, and every example spec in it
passes the same check the action runs before minting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runkeys.providers import PROVIDERS
from runkeys.spec import SpecRules, parse_keys

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
EXAMPLES = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_every_provider_has_a_section() -> None:
    headings = set(re.findall(r"^## (\S+)$", DOC.read_text(), flags=re.MULTILINE))
    assert set(PROVIDERS) <= headings, set(PROVIDERS) - headings


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.split(":")[0] for e in EXAMPLES])
def test_each_example_spec_passes_the_spec_check(example: str) -> None:
    (spec,) = parse_keys(example, SpecRules(connections=None))
    assert spec.provider in PROVIDERS


def test_every_provider_has_an_example() -> None:
    assert {parse_keys(e)[0].provider for e in EXAMPLES} == set(PROVIDERS)
