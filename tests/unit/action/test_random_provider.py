"""The `random` provider: CSPRNG values in four formats, at least 16 bytes, and a `token` format
a secret scanner can recognise and verify offline."""

from __future__ import annotations

import base64
import math
import re
import zlib
from datetime import UTC, datetime

import pytest

from runkeys.errors import ParamError
from runkeys.providers import MintRequest, RevokeRequest
from runkeys.providers.random_value import (
    BASE62,
    RandomProvider,
    find_tokens,
    make_token,
    verify_token,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def mint(**params: object) -> str:
    provider = RandomProvider()
    provider.check_params(params)
    return provider.mint(MintRequest("KEY", params, NOW, "rk_label")).value


def test_the_default_is_a_checksummed_token_of_32_bytes() -> None:
    value = mint()
    assert value.startswith("rk_")
    body = value[3:]
    assert len(body) == math.ceil(256 / math.log2(62)) + 6
    assert set(body) <= set(BASE62)
    assert verify_token(value)


@pytest.mark.parametrize(
    ("params", "pattern", "raw_bytes"),
    [
        ({"format": "hex"}, r"[0-9a-f]{64}", 32),
        ({"format": "hex", "bytes": 16}, r"[0-9a-f]{32}", 16),
        ({"format": "base64url", "bytes": 48}, r"[A-Za-z0-9_-]{64}", 48),
        ({"format": "alphanumeric", "bytes": 16}, r"[0-9A-Za-z]{22}", None),
        ({"format": "token", "bytes": 64, "prefix": "ci_"}, r"ci_[0-9A-Za-z]{92}", None),
    ],
)
def test_formats_and_sizes(params: dict[str, object], pattern: str, raw_bytes: int | None) -> None:
    value = mint(**params)
    assert re.fullmatch(pattern, value), value
    if params.get("format") == "base64url":
        assert len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))) == raw_bytes
    if params.get("format") == "hex":
        assert len(bytes.fromhex(value)) == raw_bytes


def test_values_do_not_repeat() -> None:
    assert len({mint(format="alphanumeric", bytes=16) for _ in range(200)}) == 200


def test_alphanumeric_carries_at_least_the_requested_entropy() -> None:
    for nbytes in (16, 17, 31, 100):
        assert len(mint(format="alphanumeric", bytes=nbytes)) * math.log2(62) >= nbytes * 8


def test_the_checksum_is_crc32_of_the_body_in_six_base62_digits() -> None:
    token = make_token("abcDEF123")
    checksum = token[-6:]
    number = 0
    for char in checksum:
        number = number * 62 + BASE62.index(char)
    assert number == zlib.crc32(b"abcDEF123")


def test_a_changed_character_fails_the_offline_check() -> None:
    token = mint()
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    assert not verify_token(flipped)
    assert not verify_token(token[:-1])
    assert not verify_token("rk_")
    assert not verify_token("RK_" + token[3:])


def test_a_scanner_finds_tokens_in_text_and_only_valid_ones() -> None:
    good, other = mint(), mint(prefix="stage_")
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    text = f"log: Authorization: Bearer {good}\nx={other}, y={bad}, rk_short"
    assert find_tokens(text) == [good, other]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bytes": 15}, "bytes"),
        ({"bytes": 1025}, "bytes"),
        ({"bytes": "32"}, "bytes"),
        ({"bytes": True}, "bytes"),
        ({"format": "base32"}, "format"),
        ({"format": 3}, "format"),
        ({"prefix": "rk"}, "prefix"),
        ({"prefix": "Rk_"}, "prefix"),
        ({"prefix": "averyverylongprefix_"}, "prefix"),
        ({"format": "hex", "prefix": "rk_"}, "prefix"),
        ({"size": 32}, "size"),
    ],
)
def test_bad_parameters_name_their_field(params: dict[str, object], field: str) -> None:
    with pytest.raises(ParamError) as caught:
        RandomProvider().check_params(params)
    assert caught.value.field == field


def test_revoke_has_nothing_to_do_and_can_be_repeated() -> None:
    provider = RandomProvider()
    minted = provider.mint(MintRequest("KEY", {}, NOW, "rk_label"))
    assert minted.reference == "random:rk_label"
    assert minted.expires_at == NOW
    for _ in range(2):
        provider.revoke(RevokeRequest(reference=minted.reference, params={}))
