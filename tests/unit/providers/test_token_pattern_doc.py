"""docs/leaks.md's custom secret scanning pattern is the random provider's token shape: the
fields it tells you to type, put together as GitHub puts them, are the code's `TOKEN_PATTERN`;
they find every token the provider makes, and none of the near misses."""

from __future__ import annotations

import random
import re
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runkeys.providers.base import MintRequest
from runkeys.providers.random_value import TOKEN_PATTERN, RandomProvider, verify_token

DOC = Path(__file__).resolve().parents[3] / "docs" / "leaks.md"
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def field(name: str) -> str:
    """A field's value as the doc's table gives it (`\\|` in a table cell is a `|`)."""
    cells: list[str] = re.findall(rf"^\| {name} \| `(.+)` \|$", DOC.read_text(), re.MULTILINE)
    (cell,) = cells
    return cell.replace("\\|", "|")


FORMAT, BEFORE, AFTER = field("Secret format"), field("Before secret"), field("After secret")


def github_regex() -> re.Pattern[str]:
    """The three fields as one expression, the way secret scanning applies them: before,
    the secret, after. PCRE's `\\z` (the very end) is Python's `\\Z`."""
    after = AFTER.replace("\\z", "\\Z")
    return re.compile(f"(?:{BEFORE})(?P<secret>{FORMAT})(?={after})")


def test_the_documented_fields_are_the_codes_pattern() -> None:
    """Before and after are the code's lookbehind and lookahead, each `\\A|[^…]` / `\\z|[^…]`."""
    before = re.fullmatch(r"\\A\|\[\^(.+)\]", BEFORE)
    after = re.fullmatch(r"\\z\|\[\^(.+)\]", AFTER)
    assert before is not None
    assert after is not None
    assert TOKEN_PATTERN.pattern == f"(?<![{before[1]}]){FORMAT}(?![{after[1]}])"


def tokens(count: int) -> list[str]:
    """Tokens from the provider itself: every length it allows at the edges, default and
    custom prefixes."""
    rng = random.Random(18)
    provider = RandomProvider()
    expires = datetime.now(UTC) + timedelta(hours=1)
    made = []
    for i in range(count):
        params: dict[str, object] = {"bytes": rng.choice([16, 17, 32, 64, 1024])}
        if i % 3 == 0:
            params["prefix"] = rng.choice(["rk_", "ab_", "ci2_", "abcdefghij_"])
        made.append(provider.mint(MintRequest("K", params, expires, "rk_x")).value)
    return made


CONTEXTS = ("{}", "KEY={}\n", '"{}"', "({})", "x {} y", "token: '{}'", "{}\n{}")


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_token_the_provider_makes_is_found_whole(context: str) -> None:
    pattern = github_regex()
    for token in tokens(300):
        assert verify_token(token)
        found = [m["secret"] for m in pattern.finditer(context.format(token, token))]
        assert found
        assert set(found) == {token}


def _near_misses() -> dict[str, str]:
    body = "".join(random.Random(7).choice(BASE62) for _ in range(43))
    token = f"rk_{body}"
    return {
        "upper-case prefix": f"RK_{body}",
        "prefix of one character": f"r_{body}",
        "prefix starting with a digit": f"1k_{body}",
        "dash for underscore": f"rk-{body}",
        "no underscore": f"rk{body}",
        "prefix of eleven characters": f"abcdefghijk_{body}",
        "body one short": f"rk_{body[:27]}",
        "a dash inside the body": f"rk_{body[:20]}-{body[21:]}",
        "a slash inside the body": f"rk_{body[:20]}/{body[21:]}",
        "a plus inside the body": f"rk_{body[:20]}+{body[21:]}",
        "a non-ASCII letter inside the body": f"rk_{body[:20]}é{body[21:]}",
        "after an underscore": f"_{token}",
        "after a letter": f"A{token}",
        "after a digit": f"9{token}",
    }


@pytest.mark.parametrize(("why", "text"), list(_near_misses().items()))
def test_near_misses_are_not_found(why: str, text: str) -> None:
    assert github_regex().search(text) is None, why
    assert TOKEN_PATTERN.search(text) is None, why


def test_a_letter_before_or_after_makes_another_string_not_the_token() -> None:
    """`x` before `rk_…` reads as the prefix `xrk_` (the checksum covers the body only), a
    letter after lengthens the body, whose checksum then fails: neither finds the token."""
    (token,) = tokens(1)
    (before,) = [m["secret"] for m in github_regex().finditer(f"x{token}")]
    assert before == f"x{token}"
    (after,) = [m["secret"] for m in github_regex().finditer(f"{token}a")]
    assert after == f"{token}a"
    assert not verify_token(after)
