"""`random`: a value from the operating system's CSPRNG, in the format a test needs.

Nothing exists outside the secret, so deleting the secret retires it. The `token` format carries
a prefix and a CRC32 checksum a secret scanner can check offline, like GitHub's own tokens."""

from __future__ import annotations

import base64
import math
import re
import secrets
import zlib
from collections.abc import Mapping
from typing import Any

from runkeys.errors import ParamError
from runkeys.providers.base import (
    Minted,
    MintRequest,
    Provider,
    RevokeRequest,
    check_known,
    get_int,
    get_str,
)

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FORMATS = ("hex", "base64url", "alphanumeric", "token")
MIN_BYTES = 16
MAX_BYTES = 1024
DEFAULT_PREFIX = "rk_"
CHECKSUM_LEN = 6  # 62**6 > 2**32: every CRC32 fits
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}_$")
# What a secret scanner looks for: a prefix, then at least MIN_BYTES of base62 and the checksum.
# Candidates are then confirmed offline with `verify_token` (the checksum), as GitHub's are.
_MIN_BODY = math.ceil(MIN_BYTES * 8 / math.log2(62))
TOKEN_PATTERN = re.compile(
    r"(?<![0-9A-Za-z_])[a-z][a-z0-9]{1,9}_"
    rf"[0-9A-Za-z]{{{_MIN_BODY + CHECKSUM_LEN},}}(?![0-9A-Za-z])"
)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def _random_base62(nbytes: int) -> str:
    length = math.ceil(nbytes * 8 / math.log2(62))
    return "".join(secrets.choice(BASE62) for _ in range(length))


def make_token(body: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}{body}{_base62(zlib.crc32(body.encode()), CHECKSUM_LEN)}"


def verify_token(token: str) -> bool:
    """Whether `token` is a well-formed runkeys token with a valid checksum (offline check)."""
    match = re.fullmatch(r"([a-z][a-z0-9]{1,9}_)([0-9A-Za-z]+)", token)
    if not match or len(match.group(2)) <= CHECKSUM_LEN:
        return False
    body, checksum = match.group(2)[:-CHECKSUM_LEN], match.group(2)[-CHECKSUM_LEN:]
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LEN) == checksum


def find_tokens(text: str) -> list[str]:
    """Every runkeys-style token in `text` whose checksum holds: a scanner's offline check."""
    return [m.group(0) for m in TOKEN_PATTERN.finditer(text) if verify_token(m.group(0))]


class RandomProvider(Provider):
    name = "random"

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, {"format", "bytes", "prefix"})
        fmt = get_str(params, "format", "token")
        if fmt not in FORMATS:
            raise ParamError("format", f"unknown format {fmt!r}", fix=f"use one of {FORMATS}")
        get_int(params, "bytes", 32, low=MIN_BYTES, high=MAX_BYTES)
        prefix = get_str(params, "prefix")
        if prefix is not None:
            if fmt != "token":
                raise ParamError("prefix", "only the token format has a prefix")
            if not _PREFIX.fullmatch(prefix):
                raise ParamError(
                    "prefix",
                    f"{prefix!r} is not a token prefix",
                    fix="2 to 10 lowercase letters or digits, starting with a letter, then '_'",
                )

    def mint(self, request: MintRequest) -> Minted:
        params = request.params
        fmt = params.get("format", "token")
        nbytes = int(params.get("bytes", 32))
        if fmt == "hex":
            value = secrets.token_hex(nbytes)
        elif fmt == "base64url":
            value = base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")
        elif fmt == "alphanumeric":
            value = _random_base62(nbytes)
        else:
            value = make_token(_random_base62(nbytes), str(params.get("prefix", DEFAULT_PREFIX)))
        return Minted(
            value=value, reference=f"random:{request.label}", expires_at=request.expires_at
        )

    def revoke(self, request: RevokeRequest) -> None:
        """Nothing outside the secret holds a random value; deleting the secret retires it."""

    def reference_matches(self, reference: str, *, label: str, params: Mapping[str, Any]) -> bool:
        return reference == f"random:{label}"
