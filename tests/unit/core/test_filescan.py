"""The scan's pure core: which forms it looks for, how it finds them in a file given as chunks
(line numbers and offsets written out here by hand), and the manifest it reads."""

from __future__ import annotations

import base64
import hashlib

import pytest

from runkeys.filescan import (
    MANIFEST_VERSION,
    Manifest,
    Matcher,
    Watched,
    is_binary,
    needles,
    parse_size,
    watch,
)
from tests.encoded_forms import MIN_INSIDE, encoded_forms

TOKEN = "rk_3vQb7Xs9LmT2pW8yZk1Nc4Rf6Hj0Ga5Ed"
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5v\nbmUAAAAEbm9uZQAAAAAAAAAB\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_every_form_the_tests_know_is_looked_for_but_armour_and_short_pieces() -> None:
    for value in (TOKEN, PEM, 'p@ss w/rd+?&=%"\\'):
        looked_for = {n.form.decode() for n in needles({"V": value})}
        expected = {f for f in encoded_forms(value) if len(f) >= MIN_INSIDE}
        expected -= {"-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY-----"}
        assert looked_for == expected


def test_a_form_split_over_chunks_of_every_size_is_found_once_at_its_line() -> None:
    data = b"first\nsecond\n  " + TOKEN.encode() + b"\nlast " + TOKEN.encode() + b"\n"
    matcher = Matcher(needles({"API_TOKEN": TOKEN}))
    for size in range(1, len(data) + 1):
        hits = list(matcher.scan(_chunks(data, size)))
        assert [(h.line, h.offset) for h in hits] == [(3, 15), (4, 57)], size
        assert {h.needle.encoding for h in hits} == {"raw"}


def test_the_whole_value_wins_over_its_lines_and_each_line_alone_is_found() -> None:
    matcher = Matcher(needles({"SSH_KEY": PEM}))
    (whole,) = matcher.scan([b"key:\n" + PEM.encode()])
    assert (whole.line, whole.needle.encoding) == (2, "raw")
    (line,) = matcher.scan([b"x\ny\nbmUAAAAEbm9uZQAAAAAAAAAB\n"])
    assert (line.line, line.needle.encoding) == (3, "a line of it")
    # PEM armour alone is in every key file: not a finding.
    assert list(matcher.scan([b"-----BEGIN OPENSSH PRIVATE KEY-----\n"])) == []


def test_a_value_inside_a_basic_auth_header_is_found() -> None:
    header = b"Authorization: Basic " + base64.b64encode(
        b"ci-user:" + TOKEN.encode()
    )  # not on a 3-byte boundary
    (hit,) = Matcher(needles({"API_TOKEN": TOKEN})).scan([header])
    assert hit.needle.encoding == "base64 inside a longer blob"


def test_a_value_one_character_off_is_not_found() -> None:
    matcher = Matcher(needles({"API_TOKEN": TOKEN}))
    near = TOKEN[:-1] + "e"
    assert list(matcher.scan([near.encode(), base64.b64encode(near.encode())])) == []
    assert list(Matcher([]).scan([TOKEN.encode()])) == []


def test_watch_skips_where_a_key_logs_in_and_fingerprints_the_rest() -> None:
    values = {
        "DB": "postgresql://rk_u:pw-123456789@h:5432/app",
        "DB_USER": "rk_u",
        "DB_PASSWORD": "pw-123456789",
        "DB_HOST": "h",
        "DB_PORT": "5432",
        "DB_DATABASE": "app",
    }
    watched = watch("DB", list(values), values)
    assert [w.variable for w in watched] == ["DB", "DB_USER", "DB_PASSWORD"]
    assert watched[2] == Watched("DB", "DB_PASSWORD", hashlib.sha256(b"pw-123456789").hexdigest())


def test_a_manifest_round_trips_and_another_version_is_refused() -> None:
    manifest = Manifest(MANIFEST_VERSION, (Watched("A", "A", "0" * 64),))
    assert Manifest.from_text(manifest.to_text()) == manifest
    with pytest.raises(ValueError, match="version 2"):
        Manifest.from_text(manifest.to_text().replace('"version":1', '"version":2'))
    with pytest.raises(ValueError, match="malformed"):
        Manifest.from_text(b"not json")


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("512", 512), ("1K", 1024), ("1kb", 1024), ("100M", 100 << 20), ("2G", 2 << 30)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1T", "-1M", "1.5G", "M", "1 M B"])
def test_not_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_binary_is_a_nul_in_the_first_8000_bytes() -> None:
    assert is_binary(b"abc\0")
    assert not is_binary(b"a" * 8000 + b"\0")
    assert not is_binary("é\n".encode())


def _openssh_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )


def test_another_openssh_key_is_not_a_finding_but_any_line_of_this_one_is() -> None:
    # Every unencrypted ed25519 key begins with the same base64 line (its fixed header): a file
    # holding some other key (a test fixture, a known_hosts helper) must not fail the scan.
    mine, other = _openssh_key(), _openssh_key()
    matcher = Matcher(needles({"DEPLOY_KEY": mine}))
    assert list(matcher.scan([other.encode()])) == []
    for number, line in enumerate(mine.splitlines()[2:-1], start=1):
        (hit,) = matcher.scan([b"log:\n" + line.encode() + b"\n"])
        assert (hit.line, hit.needle.encoding) == (2, "a line of it"), number
