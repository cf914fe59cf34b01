"""docs/providers.md stays true: every provider has a section, and every example spec in it
passes the same check the action runs before minting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runkeys.connections import load_connections
from runkeys.errors import SpecError
from runkeys.providers import PROVIDERS
from runkeys.spec import SpecRules, parse_keys

DOC = Path(__file__).resolve().parents[3] / "docs" / "providers.md"
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


def test_the_allow_list_example_does_what_the_text_says() -> None:
    text = DOC.read_text()
    (url,) = re.findall(r"^RUNKEYS_CONNECTION_CI_DB=(\S*runkeys_grants=\S+)$", text, re.MULTILINE)
    connections = load_connections({"RUNKEYS_CONNECTION_CI_DB": url.replace("…", "pw")})
    connection = connections["CI_DB"]
    assert connection.grants == frozenset({"app_ro", "app_rw"})
    assert connection.url == "postgresql://runkeys_admin:pw@db.internal:5432/app?sslmode=require"
    (shown,) = re.findall(r"`(keys\.<NAME>\.grant: [^`]*)`", " ".join(text.split()))
    with pytest.raises(SpecError) as caught:
        parse_keys(
            "DATABASE_URL: {provider: postgres, connection: ci_db, grant: [app_owner]}",
            SpecRules(connections=connections),
        )
    (problem,) = caught.value.problems
    assert str(problem).startswith(shown.replace("<NAME>", "DATABASE_URL"))
