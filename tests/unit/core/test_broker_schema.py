"""Broker mode's wire schema and sealing (`runkeys.broker`)."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey

from runkeys.broker import KeysRequest, Unsealed, new_key_pair, seal, unseal

GOOD: dict[str, object] = {
    "request_id": "0123456789abcdef",
    "keys": "API_TOKEN: {provider: random}\n",
    "destination": {"kind": "environment", "environment": "ci-pr-{pr}"},
    "public_key": base64.b64encode(bytes(32)).decode(),
}


def decode(body: dict[str, object]) -> KeysRequest:
    return msgspec.json.decode(json.dumps(body).encode(), type=KeysRequest)


def test_a_sealed_key_opens_with_its_private_key_only() -> None:
    private, public = new_key_pair()
    sealed = seal(public, Unsealed("s3cret value", {"PASSWORD": "pw"}))
    assert "s3cret" not in sealed
    assert "s3cret" not in base64.b64decode(sealed).decode("latin-1")
    assert unseal(private, sealed) == Unsealed("s3cret value", {"PASSWORD": "pw"})
    with pytest.raises(CryptoError):
        unseal(PrivateKey.generate(), sealed)


def test_a_well_formed_request_decodes() -> None:
    request = decode(GOOD)
    assert request.destination.environment == "ci-pr-{pr}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", "0123456789abcde"),  # 15 characters: one short
        ("request_id", "0123456789abcdef/"),
        ("public_key", base64.b64encode(bytes(31)).decode()),
        ("public_key", base64.b64encode(bytes(33)).decode()),
        ("keys", ""),
        ("destination", {"kind": "org"}),
        ("destination", {"kind": "job", "repository": "other/repo"}),
    ],
)
def test_a_malformed_request_is_refused_naming_its_field(field: str, value: object) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        decode({**GOOD, field: value})


@pytest.mark.parametrize("claim", ["repository", "run_id", "ref", "pull_request"])
def test_a_body_cannot_carry_what_the_token_says(claim: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decode({**GOOD, claim: "x"})
