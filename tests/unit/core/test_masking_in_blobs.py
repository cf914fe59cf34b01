"""A value is masked wherever a log shows it: inside a longer base64 blob at any byte offset
(as in a Basic auth header) every character that encodes only the value's bits is hidden, and
none of the neighbours'; a value over several lines, or of the shortest length masked, is
hidden whole. Which characters encode the value is worked out here from base64's 6-bit groups,
not taken from `runkeys.masking`."""

from __future__ import annotations

import base64

import pytest

from runkeys.scrub import REDACTED, described, scrub, scrub_short, short


def value_only_characters(prefix: int, length: int) -> tuple[int, int]:
    """The first and one past the last character of a base64 text whose 6 bits all come from
    bytes `prefix` to `prefix + length` of what it encodes."""
    first_bit, end_bit = 8 * prefix, 8 * (prefix + length)
    first = -(-first_bit // 6)  # the first 6-bit group starting at or after the value
    end = end_bit // 6  # groups ending at or before the value's end
    return first, end


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("prefix", [b"", b"u", b"us", b"user:"])
@pytest.mark.parametrize("length", [9, 10, 11, 12, 13])
@pytest.mark.parametrize("suffix", [b"", b"!", b"!?", b"!?#"])
def test_a_value_inside_base64_is_hidden_to_its_last_own_character(
    encode: object, prefix: bytes, length: int, suffix: bytes
) -> None:
    value = "Zq9Xw7Vt5Ry3K"[:length]
    blob = encode(prefix + value.encode() + suffix).decode()  # type: ignore[operator]
    first, end = value_only_characters(len(prefix), length)
    shown = scrub(f"Authorization: Basic {blob}", [value]).removeprefix("Authorization: Basic ")
    assert shown.count(REDACTED) == 1, shown
    before, after = shown.split(REDACTED)
    assert blob.startswith(before)
    assert blob.endswith(after)
    assert len(before) <= first, (blob, shown)  # nothing of the value before the mask
    assert len(blob) - len(after) >= end, (blob, shown)  # nor after it


def test_a_value_over_several_lines_is_hidden_whole() -> None:
    value = "line-one-secret\nline-two-secret"
    assert scrub(f"got {value} back", [value]) == f"got {REDACTED} back"
    assert scrub_short(f"got {value} back", [value]) == f"got {REDACTED} back"


def test_a_value_of_four_characters_is_masked_and_of_three_is_not() -> None:
    assert scrub("the key abcd here", ["abcd"]) == f"the key {REDACTED} here"
    assert scrub("the key abc here", ["abc"]) == "the key abc here"


def test_a_url_password_longer_than_a_one_line_scrub_reads_ends_the_line_hidden() -> None:
    text = "connect postgresql://user:" + "p" * 200_000 + "@db/app failed"
    assert scrub_short(text, [], 100) == f"connect postgresql://user:{REDACTED}…"
    text = "connect postgresql://user:" + "p" * 400 + "@db/app failed"
    assert scrub_short(text, [], 100) == f"connect postgresql://user:{REDACTED}@db/app failed"


def test_the_one_line_forms_are_300_characters_unless_told() -> None:
    assert scrub_short("a" * 400) == "a" * 299 + "…"
    assert described(ValueError("a" * 400)) == "ValueError: " + "a" * 287 + "…"


def test_a_value_whose_lines_join_into_four_characters_is_hidden_on_one_line() -> None:
    assert scrub_short("got a\nbc back", ["a\nbc"]) == f"got {REDACTED} back"


def test_a_description_keeps_to_the_limit_it_is_given() -> None:
    assert described(ValueError("a" * 400), limit=50) == "ValueError: " + "a" * 37 + "…"
    assert short("a" * 400) == "a" * 299 + "…"
