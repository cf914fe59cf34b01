"""Every form of a value a log could show is masked, and scrubbed out of messages."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from runkeys.connections import Connection
from runkeys.errors import ProviderError
from runkeys.masking import encodings, named_encodings, secret_parts
from runkeys.scrub import REDACTED, described, scrub, short
from tests.encoded_forms import encoded_forms, inside_a_longer_blob

# A space, `+`, `/`, `%` and a newline: each is written differently by some encoding, and its
# base64 has a `+` and a `/` that base64url writes as `-` and `_`.
ODD = "rk+Q/7 ~~~???50%\nsecond line:9Xz"
VALUES = [
    "rk_3vQb7Xs9LmT2pW8yZk1Nc4Rf6Hj0Ga5Ed",
    'p@ss w/rd+?&=%"\\é',
    ODD,
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5v\nbmUAAAAEbm9uZQAAAAAAAAAB\n"
    "-----END OPENSSH PRIVATE KEY-----\n",
]


def test_the_forms_of_a_value_with_a_space_plus_slash_percent_and_newline() -> None:
    """Written out by hand: the tests' own list of forms must hold them, and so must the
    product's."""
    expected = {
        "rk+Q/7 ~~~???50%\nsecond line:9Xz",
        "rk+Q/7 ~~~???50%",
        "second line:9Xz",
        "cmsrUS83IH5+fj8/PzUwJQpzZWNvbmQgbGluZTo5WHo=",
        "cmsrUS83IH5+fj8/PzUwJQpzZWNvbmQgbGluZTo5WHo",
        "cmsrUS83IH5-fj8_PzUwJQpzZWNvbmQgbGluZTo5WHo=",
        "cmsrUS83IH5-fj8_PzUwJQpzZWNvbmQgbGluZTo5WHo",
        "rk%2BQ%2F7%20~~~%3F%3F%3F50%25%0Asecond%20line%3A9Xz",
        "rk%2BQ%2F7+~~~%3F%3F%3F50%25%0Asecond+line%3A9Xz",
        "rk+Q/7 ~~~???50%\\nsecond line:9Xz",
    }
    assert expected <= encoded_forms(ODD)
    assert expected <= set(encodings(ODD))


def test_each_form_is_named_by_the_encoding_that_makes_it() -> None:
    """The names are what the scan's findings print (`the value of X (base64url)`); ODD's forms
    all differ, so each is named by its own encoding."""
    raw = ODD.encode()
    padded = base64.b64encode(raw).decode()
    url_padded = base64.urlsafe_b64encode(raw).decode()
    assert padded.endswith("=")
    assert url_padded != padded
    expected = {
        ODD: "raw",
        "rk+Q/7 ~~~???50%": "a line of it",
        "second line:9Xz": "a line of it",
        padded: "base64",
        padded.rstrip("="): "base64 without padding",
        url_padded: "base64url",
        url_padded.rstrip("="): "base64url without padding",
        urllib.parse.quote(ODD, safe=""): "URL-encoded",
        urllib.parse.quote_plus(ODD, safe=""): "URL-encoded (form)",
        json.dumps(ODD)[1:-1]: "JSON-escaped",
    }
    inside = inside_a_longer_blob(raw, base64.b64encode)
    # Pieces with no `+` or `/` read the same in base64url: named by base64, the first.
    url_inside = inside_a_longer_blob(raw, base64.urlsafe_b64encode) - inside
    assert url_inside
    expected |= dict.fromkeys(inside, "base64 inside a longer blob")
    expected |= dict.fromkeys(url_inside, "base64url inside a longer blob")
    assert named_encodings(ODD) == expected


def test_an_empty_form_is_never_a_mask() -> None:
    # A blank line strips to "", which is in every text: masked or scanned for, it would
    # match everywhere.
    value = "first line\n\n   \nlast line"
    assert "" not in named_encodings(value)
    assert "" not in encodings(value)
    assert encodings("") == []


def test_secret_parts_are_all_but_where_a_key_logs_in_in_any_case() -> None:
    parts = {
        "USER": "rk_u",
        "host": "db.internal",
        "PASSWORD": "pw-123456789",
        "Port": "5432",
        "DATABASE": "app",
        "sslkey": "key-material",
        "HOST": "db2.internal",
    }
    assert secret_parts(parts) == ["rk_u", "pw-123456789", "key-material"]


@pytest.mark.parametrize("value", VALUES)
def test_every_form_the_tests_list_is_masked(value: str) -> None:
    assert encoded_forms(value) <= set(encodings(value))


@pytest.mark.parametrize("value", VALUES)
def test_forms_cover_the_encodings_named_in_the_issue(value: str) -> None:
    forms = set(encodings(value))
    raw = value.encode()
    assert value in forms
    assert base64.b64encode(raw).decode() in forms
    assert base64.urlsafe_b64encode(raw).decode().rstrip("=") in forms
    assert urllib.parse.quote(value, safe="") in forms
    assert json.dumps(value)[1:-1] in forms
    for line in value.splitlines():
        if line.strip():
            assert line.strip() in forms


@pytest.mark.parametrize("prefix", ["", "a", "ab", "user:"])
def test_a_value_inside_a_longer_base64_blob_is_still_found(prefix: str) -> None:
    value = VALUES[0]
    blob = base64.b64encode(f"{prefix}{value}!".encode()).decode()
    assert any(form in blob for form in encodings(value) if len(form) >= 8)


@pytest.mark.parametrize(
    ("value", "blob", "scrubbed", "inside"),
    [
        # One byte before it, its last byte `W` ends the blob's base64 in an `X`, which no
        # stripping of padding may take.
        ("abcdefgW", "eGFiY2RlZmdX", "eG***", "FiY2RlZmdX"),
        # One byte before it, the characters that carry its bits alone are exactly 8, the
        # shortest piece masked.
        ("abcdefg", "eGFiY2RlZmc=", "eG***c=", "FiY2RlZm"),
    ],
)
def test_a_value_inside_a_blob_is_found_at_the_edges_of_its_forms(
    value: str, blob: str, scrubbed: str, inside: str
) -> None:
    assert base64.b64encode(b"x" + value.encode()).decode() == blob
    assert inside in encodings(value)
    assert scrub(f"Basic {blob}", [value]) == f"Basic {scrubbed}"


@pytest.mark.parametrize("value", VALUES)
def test_scrub_leaves_no_form_of_the_value(value: str) -> None:
    raw = value.encode()
    text = (
        f"driver said: {value} / {base64.b64encode(raw).decode()} / "
        f"{urllib.parse.quote(value, safe='')} / {urllib.parse.quote_plus(value, safe='')} / "
        f"{json.dumps(value)}"
    )
    cleaned = scrub(text, [value])
    assert REDACTED in cleaned
    for form in encoded_forms(value):
        if len(form) >= 8:
            assert form not in cleaned


def test_scrub_hides_url_passwords_even_when_not_known() -> None:
    text = "could not connect to postgresql://admin:hunter2secret@db:5432/app"
    assert scrub(text) == "could not connect to postgresql://admin:***@db:5432/app"


def test_connections_never_print_their_password() -> None:
    conn = Connection("CI_DB", "postgresql://admin:s%40cret@db.internal:5432/app")
    assert "s@cret" not in repr(conn)
    assert "s%40cret" not in repr(conn)
    assert conn.redacted() == "postgresql://admin:***@db.internal:5432/app"
    assert conn.password == "s@cret"


def test_short_is_one_bounded_line() -> None:
    assert short("a\nb\tc") == "a b c"
    assert len(short("x" * 1000, 50)) == 50


def test_an_error_is_described_in_one_scrubbed_line() -> None:
    secret = "s3cr3t-value-XYZ"
    driver = ValueError(f"login failed for\nuser with {secret} at postgresql://u:pw@db/x")
    assert described(driver, [secret, None]) == (
        f"ValueError: login failed for user with {REDACTED} at postgresql://u:{REDACTED}@db/x"
    )
    ours = ProviderError("postgres", f"revoke failed: {secret}", retryable=False, fix="look")
    text = described(ours, [secret], limit=60)
    assert text.startswith(f"postgres: revoke failed: {REDACTED} How to fix: look")
    assert len(text) <= 60
    assert "\n" not in text
