"""A one-line scrub (`short`, `scrub_short`) is as long as its limit allows and no longer, says
with `…` that it cut, and never shows the start of a value the cut went through, wherever
redactions before it moved the cut. Expected lines are written out here."""

from __future__ import annotations

import pytest

from runkeys.scrub import REDACTED, scrub_short, short

VALUE = "Zq9Xw7Vt5Ry3Kp1M"  # its characters appear nowhere else in these texts


def test_a_line_exactly_at_the_limit_is_not_cut() -> None:
    assert short("a" * 300, 300) == "a" * 300
    assert scrub_short("a" * 300, [VALUE], 300) == "a" * 300


def test_a_line_one_past_the_limit_is_cut_with_an_ellipsis() -> None:
    assert short("a" * 301, 300) == "a" * 299 + "…"
    assert scrub_short("a" * 301, [VALUE], 300) == "a" * 299 + "…"


def test_a_word_ending_at_the_limit_with_more_after_it_is_cut() -> None:
    """The text goes on past the limit: the line must say so, even where its last word ends
    right at the limit."""
    assert short("a" * 300 + " b", 300) == "a" * 299 + "…"
    assert short("a" * 298 + " b", 300) == "a" * 298 + " b"
    assert scrub_short("a" * 300 + " b", [], 300) == "a" * 299 + "…"


def test_whitespace_is_one_space_and_nothing_at_either_end() -> None:
    assert short("  two\t\twords \n\n here  ", 300) == "two words here"


def test_a_redacted_value_shortens_the_line_and_the_line_reads_on() -> None:
    text = f"{VALUE} " * 40 + "end"
    assert scrub_short(text, [VALUE], 300) == f"{REDACTED} " * 40 + "end"


@pytest.mark.parametrize("redactions", range(12))
@pytest.mark.parametrize("filler", range(270, 320))
def test_no_start_of_a_value_is_shown_wherever_the_cut_falls(redactions: int, filler: int) -> None:
    text = (VALUE + " ") * redactions + "x" * filler + " " + VALUE + " tail" * 20
    line = scrub_short(text, [VALUE], 300)
    assert len(line) <= 300
    for length in range(1, len(VALUE) + 1):
        assert VALUE[:length] not in line, (redactions, filler, line)
