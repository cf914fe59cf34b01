"""A one-line scrub (`short`, `scrub_short`) is as long as its limit allows and no longer, says
with `…` that it cut, and never shows the start of a value the cut went through, wherever
redactions before it moved the cut. Expected lines are written out here."""

from __future__ import annotations

import pytest

from runkeys.scrub import READ_AT_MOST, REDACTED, scrub_short, short

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


def test_a_cut_moved_back_to_one_value_is_moved_again_past_the_values_it_now_crosses() -> None:
    """A value that overlaps itself (`abababab`) occurs at every second character: moving the
    cut to the start of one occurrence puts it inside another, and the cut must move again."""
    other = "w7Vt5Ry3"
    text = f" abababab  abababababababab{other}{other}abababab xxxx"
    line = scrub_short(text, [other, "abababab"], 8)
    assert line == f"{REDACTED} {REDACTED}…"


def test_redactions_exactly_as_long_as_the_limit_with_more_after_them_say_the_line_was_cut() -> (
    None
):
    """Cut between values, the redacted line is exactly the limit: more text follows, so the
    line read on and ends in `…`, never a full line that hides that it was cut."""
    text = VALUE[:8] * 4 + "       --" + VALUE[:8] + " " + VALUE[:8] * 3
    assert scrub_short(text, [VALUE[:8]], 6) == "*****…"


def test_a_limit_shorter_than_the_value_still_gives_a_line() -> None:
    assert scrub_short(f" {VALUE[:8] * 2} " + "-" * 6, [VALUE[:8]], 2) == "*…"
    assert scrub_short(VALUE + " tail", [VALUE], 1) == "…"


def test_a_line_stopped_at_the_read_ceiling_is_no_longer_than_the_limit() -> None:
    """Values of 2000 characters, each redacted to 3: the line is still short when the scrub
    stops reading (64 KiB), here 45 redactions, exactly the limit of 180 with their spaces.
    It ends in `…` at the limit, not one character past it nor one short of it."""
    value = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 33)[:2000]
    text = (value + " ") * 100
    assert scrub_short(text, [value], 180) == f"{REDACTED} " * 44 + f"{REDACTED}…"


def test_a_value_that_overlaps_itself_from_the_start_of_the_line_is_never_shown_in_part() -> None:
    """`Zq9Xw7VtZq9` ends with its own start, so in `Zq9Xw7Vt` repeated it occurs every 8
    characters, each occurrence crossing the next. Every cut falls inside one and moves back,
    one occurrence at a time, to the first, at the very start of the line: nothing of the text
    can be shown, and never the value's first 8 characters."""
    value = "Zq9Xw7VtZq9"
    text = "Zq9Xw7Vt" * 10_000 + "Zq9"
    assert scrub_short(text, [value], 20) == "…"


def test_a_value_one_character_before_the_last_cut_is_not_shown_by_its_first_character() -> None:
    """Values of 1500 characters (their longest form, base64, is 2000) under a limit of 300:
    the scrub wants 300 + 1 + 2000 = 2301 characters, then reads on, doubling, while the
    redacted line stays short, and stops at 2301 * 32 = 73632, past 64 KiB. After 81 dashes
    and a space, the 50th value starts at 82 + 49 * 1501 = 73631: one character before that
    cut, which must move back to it, not leave its first character at the end of the line."""
    assert READ_AT_MOST == 64 * 1024  # the arithmetic above
    value = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 25)[:1500]
    text = "-" * 81 + " " + (value + " ") * 54
    assert scrub_short(text, [value], 300) == "-" * 81 + " " + f"{REDACTED} " * 49 + "…"
