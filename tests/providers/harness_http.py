"""The generic HTTP issuer for the conformance suite, against `issuer_server.Issuer` served on a
free loopback port. A minted token is used for real: the issuer's own API accepts it for what a
test token may do and refuses it for the rest, and refuses it for everything once revoked."""

from __future__ import annotations

from typing import Any

import requests

from runkeys.connections import Connection
from runkeys.providers.base import Minted, ProviderDeps
from runkeys.providers.http_issuer import HttpIssuerProvider
from tests.providers.harness import Harness
from tests.providers.issuer_server import ACCOUNT, Issuer


class HttpHarness(Harness):
    same_label = "same"
    bound = "revoke"  # the test issuer compares Runkeys-Label with the mint's Idempotency-Key

    def __init__(self) -> None:
        super().__init__()
        self.issuer = Issuer()
        self.waits: list[float] = []
        self.provider = HttpIssuerProvider(ProviderDeps(sleep=self.waits.append))
        self.connection = None
        self.params = {
            "mint": {
                "path": "/v1/tokens",
                "headers": {"X-Requested-By": "runkeys {key_name}"},
                "body": {"name": "{label}", "expires_at": "{expires_at}"},
            },
            "response": {
                "value": "data.token",
                "reference": "data.id",
                "expires_at": "data.expires_at",
            },
            "revoke": {"method": "DELETE", "path": "/v1/tokens/{reference}"},
            "timeout": 5,
            "retries": 2,
        }

    def setup(self) -> None:
        self.base_url = self.issuer.start()
        user, password = ACCOUNT
        self.connection = Connection(
            "ISSUER", self.base_url.replace("http://", f"http://{user}:{password}@") + "/api/"
        )

    def _call(self, path: str, token: str) -> int:
        answer = requests.get(
            f"{self.base_url}/api/v1/{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        return answer.status_code

    def use(self, minted: Minted) -> None:
        assert self._call("whoami", minted.value) == 200
        assert self._call("admin", minted.value) == 403
        assert self._call("whoami", minted.value + "x") == 401

    def refused(self, minted: Minted) -> None:
        assert self._call("whoami", minted.value) == 401

    def leftovers(self, reference: str) -> list[str]:
        return [f"token {t.id}" for t in self.issuer.live() if t.id == reference]

    def minted_for(self, label: str) -> list[str]:
        return [f"token {t.id}" for t in self.issuer.live(label)]

    def injections(self) -> list[dict[str, Any]]:
        mint, revoke = self.params["mint"], self.params["revoke"]
        return [
            {**self.params, "mint": {**mint, "path": "https://elsewhere.example/steal"}},
            {**self.params, "mint": {**mint, "path": "//elsewhere.example/steal"}},
            {**self.params, "mint": {**mint, "path": "/v1/../../admin"}},
            {**self.params, "mint": {**mint, "path": "/v1/%2e%2e/%2E%2E/admin"}},
            {**self.params, "revoke": {**revoke, "path": "/v1/a%2F..%2F{reference}"}},
            {**self.params, "revoke": {**revoke, "headers": {"runkeys-label": "rk_other"}}},
            {**self.params, "mint": {**mint, "headers": {"Idempotency-Key": "rk_other"}}},
            {**self.params, "mint": {**mint, "headers": {"Host": "admin.internal"}}},
            {**self.params, "mint": {**mint, "path": "/v1/tokens HTTP/1.1\r\nX: y"}},
            {**self.params, "mint": {**mint, "headers": {"X-A": "a\r\nX-Injected: 1"}}},
            {**self.params, "mint": {**mint, "headers": {"Bad Name": "x"}}},
            {**self.params, "mint": {**mint, "body": {"leak": "{password}"}}},
            {**self.params, "mint": {**mint, "path": "/v1/{password}"}},
            {**self.params, "mint": {**mint, "body": {"x": "{label.__class__}"}}},
            {**self.params, "mint": {**mint, "body": {"x": "{0}"}}},
            {**self.params, "revoke": {**revoke, "path": "/v1/tokens/{label}"}},
            {**self.params, "revoke": {**revoke, "path": "/v1/tokens"}},
            {**self.params, "response": {"value": "data.token; rm", "reference": "data.id"}},
            {**self.params, "url": "https://elsewhere.example/"},
        ]

    def backend_refusal(self) -> dict[str, Any]:
        return {**self.params, "mint": {**self.params["mint"], "path": "/v1/nosuch"}}

    def cleanup(self) -> None:
        self.issuer.stop()
