"""Scrubbing ends on hostile text (linear, not quadratic), and a one-line scrub reads only the
start it shows without ever showing part of a value cut short, or a URL password cut before its
`@`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from runkeys.scrub import REDACTED, described, scrub, scrub_short, short

SECRET = "s3cr3tValue9QxZ7"  # no character of it is the filler used below (`-`)


def _fragments(value: str, size: int = 4) -> list[str]:
    return [value[i : i + size] for i in range(len(value) - size + 1)]


def _shows_part_of(text: str, value: str) -> bool:
    return any(part in text for part in _fragments(value))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://admin:hunter2@db:5432/app", "postgresql://admin:***@db:5432/app"),
        ("see .abc://u:pw@host", "see .abc://u:***@host"),
        ("1.2abc://u:pw@host", "1.2abc://u:***@host"),
        ("x-y+z.w://u:pw@host", "x-y+z.w://u:***@host"),
        ("git+ssh://u:pw@host", "git+ssh://u:***@host"),
        ("redis://:pw@host", "redis://:***@host"),
        ("a://u:@h", "a://u:***@h"),
        ("a://u:p@h b://v:q@i", "a://u:***@h b://v:***@i"),
        ("http://host:8080/path", "http://host:8080/path"),  # a port is not a password
        ("a://u:p/x@h", "a://u:p/x@h"),  # the `/` ends the authority before any `@`
        ("9://u:p@h", "9://u:p@h"),  # a scheme starts with a letter
        ("https://user@host", "https://user@host"),
    ],
)
def test_url_passwords_are_hidden_as_before(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert scrub_short(text) == expected


@pytest.mark.parametrize("before", range(270, 330))
def test_a_value_cut_by_the_limit_is_never_shown_in_part(before: int) -> None:
    text = "-" * before + SECRET + " and more text after it"
    line = scrub_short(text, [SECRET], limit=300)
    assert len(line) <= 300
    assert not _shows_part_of(line, SECRET), line
    assert line.startswith("-" * min(before, 299))


@pytest.mark.parametrize("repeats", [1, 20, 200, 2000])
def test_redactions_before_the_cut_do_not_pull_a_cut_value_into_the_line(repeats: int) -> None:
    # Each redaction shortens the line: what lay past the limit moves into it.
    text = " ".join([SECRET] * repeats) + " " + "-" * 290 + SECRET + "-" * 50
    line = scrub_short(text, [SECRET], limit=300)
    assert not _shows_part_of(line, SECRET), line
    assert REDACTED in line


def test_whitespace_collapsed_into_the_line_does_not_unmask_a_value() -> None:
    value = "two  words\tand\nlines-of-it"
    text = "x" + " " * 5000 + "error: " + value + " " * 3000 + "end"
    line = scrub_short(text, [value], limit=60)
    assert line == f"x error: {REDACTED} end"


@pytest.mark.parametrize("limit", [40, 300])
def test_a_url_password_cut_before_its_at_sign_is_hidden(limit: int) -> None:
    password = "P" * 2000
    line = scrub_short(f"connect to postgresql://admin:{password}@db/app failed", limit=limit)
    assert "PPPP" not in line
    assert line.startswith("connect to postgresql://admin:***")
    line = described(ValueError(f"at redis://u:{password}@h"), limit=limit)
    assert "PPPP" not in line


def test_the_line_is_as_long_as_the_limit_allows_when_redactions_shorten_it() -> None:
    text = " ".join([SECRET] * 500) + " tail"
    line = scrub_short(text, [SECRET], limit=100)
    assert line == " ".join([REDACTED] * 25) + "…"


def test_short_reads_long_words_in_pieces_and_keeps_them_whole() -> None:
    word = "w" * 5000
    assert short(word, 50) == "w" * 49 + "…"
    assert short(f"a  {word[:1500]}\n\nb", 2000) == f"a {word[:1500]} b"
    assert scrub_short(f"a  {word[:1500]}\n\nb", limit=2000) == f"a {word[:1500]} b"


# What the child process runs: each hostile shape of 1 MiB through `scrub` (all of it) and
# `described` (one line), reporting what came out. Before linear scrubbing the URL pattern
# restarted at every character of a run, and 20 KB of one letter took 0.4 s: 1 MiB, about
# 20 minutes. How fast it is now is measured by `make bench`, not here.
_HOSTILE = textwrap.dedent(
    """
    import json
    from runkeys.scrub import described, scrub

    N = 1 << 20
    SHAPES = {
        "one letter": "a" * N,
        "scheme characters": "ab+.-" * (N // 5),
        "scheme, no userinfo end": "a://" + "u" * N,
        "userinfo, no at sign": "a://u:" + "p" * N,
        "colons": "x:" * (N // 2),
        "schemes": "a://" * (N // 4),
        "scheme then colons": "a://" + "b:" * (N // 2),
        "passwords": "a://u:p@" * (N // 8),
    }
    print(json.dumps({
        name: {
            "scrubbed": scrub(text, ["s3cr3tValue9QxZ7"]),
            "described": described(ValueError(text), ["s3cr3tValue9QxZ7"]),
        }
        for name, text in SHAPES.items()
    }))
    """
)


def test_scrubbing_a_hostile_megabyte_ends() -> None:
    # A child process, so that a quadratic scrub (minutes per shape) fails the test at the
    # deadline instead of holding the suite for hours: a deadline, not a speed.
    done = subprocess.run(
        [sys.executable, "-c", _HOSTILE], capture_output=True, text=True, timeout=90, check=True
    )
    out = json.loads(done.stdout)
    assert len(out) == 8
    assert out["one letter"]["scrubbed"] == "a" * (1 << 20)  # nothing in it to scrub
    assert ":p@" not in out["passwords"]["scrubbed"]  # every URL password is gone
    assert out["passwords"]["scrubbed"].count(REDACTED) == (1 << 20) // 8
    for name, got in out.items():
        assert len(got["described"]) <= 300, name
        assert got["described"].startswith("ValueError: "), name
