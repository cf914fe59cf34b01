"""The `http` provider beyond the conformance suite: retries and their backoff, answers it
cannot use, auth modes, redirects and timeouts, against the issuer served for real."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers.http_issuer import BACKOFF_FACTOR
from tests.providers.harness import EXPIRES_AT, assert_clean
from tests.providers.harness_http import HttpHarness
from tests.providers.issuer_server import ACCOUNT


def mint_path(harness: HttpHarness, path: str) -> dict[str, Any]:
    return {**harness.params, "mint": {**harness.params["mint"], "path": path}}


def test_5xx_then_success_retries_at_once_then_after_a_backoff_and_mints_once(
    http: HttpHarness,
) -> None:
    http.issuer.fail_next(503, times=2)
    minted = http.mint()
    http.use(minted)
    assert [m for m, p in http.issuer.requests if p == "/api/v1/tokens"] == ["POST"] * 3
    assert len(http.issuer.live()) == 1
    # urllib3's backoff: none before the first retry, then factor·2ⁿ⁻¹ plus up to factor.
    [second] = http.waits
    assert 2 * BACKOFF_FACTOR <= second <= 3 * BACKOFF_FACTOR


def test_5xx_until_retries_run_out_is_retryable_and_says_so(http: HttpHarness) -> None:
    http.issuer.fail_next(502, times=10)
    with pytest.raises(ProviderError) as caught:
        http.mint()
    assert caught.value.retryable
    assert "502 after 3 attempts" in str(caught.value)
    assert len(http.issuer.requests) == 3  # retries: 2
    assert_clean(caught.value, http.secrets())


def test_429_waits_as_long_as_retry_after_says(http: HttpHarness) -> None:
    http.issuer.fail_next(429, retry_after="3")
    http.revoke(http.mint())
    assert http.waits == [3.0]


def test_a_4xx_is_final_at_once(http: HttpHarness) -> None:
    with pytest.raises(ProviderError) as caught:
        http.mint(mint_path(http, "/v1/nosuch"))
    assert not caught.value.retryable
    assert "404" in str(caught.value)
    assert http.waits == []


def test_revoke_retries_a_5xx_too(http: HttpHarness) -> None:
    minted = http.mint()
    http.issuer.fail_next(500)
    http.revoke(minted)
    assert http.leftovers(minted.reference) == []
    assert [m for m, _ in http.issuer.requests][-2:] == ["DELETE", "DELETE"]


def test_an_answer_without_the_value_fails_and_its_token_is_revoked(http: HttpHarness) -> None:
    # The issuer mints and answers as ever, but not where the spec says the value is.
    response = {**http.params["response"], "value": "data.nope"}
    with pytest.raises(ProviderError, match=r"no string at `data\.nope`") as caught:
        http.mint({**http.params, "response": response})
    assert not caught.value.retryable
    assert http.issuer.live() == []
    assert [m for m, _ in http.issuer.requests] == ["POST", "DELETE"]


def test_an_answer_that_is_not_json_is_a_clear_error(http: HttpHarness) -> None:
    with pytest.raises(ProviderError, match="not JSON") as caught:
        http.mint(mint_path(http, "/v1/html"))
    assert not caught.value.retryable


def test_the_issuers_earlier_expiry_wins_a_later_one_does_not(http: HttpHarness) -> None:
    earlier = EXPIRES_AT - timedelta(minutes=10)
    http.params = {**http.params}
    body = {"name": "{label}", "expires_at": earlier.strftime("%Y-%m-%dT%H:%M:%SZ")}
    minted = http.mint({**http.params, "mint": {**http.params["mint"], "body": body}})
    assert minted.expires_at == earlier
    later = http.mint()  # the issuer echoes the requested expiry
    assert later.expires_at == EXPIRES_AT


def test_a_bearer_connection_and_credential_headers(http: HttpHarness) -> None:
    _, secret = ACCOUNT
    base = http.base_url + "/api/"
    bearer = Connection("ISSUER", base.replace("http://", f"http://:{secret}@"))
    http.revoke(http.mint(connection=bearer), connection=bearer)

    plain = Connection("ISSUER", base.replace("http://", f"http://ci:{secret}@"))
    headers = {"Authorization": "Bearer {password}"}
    params = {**http.params, "auth": "none", "mint": {**http.params["mint"], "headers": headers}}
    http.revoke(http.mint(params, connection=plain), connection=plain)
    assert http.issuer.live() == []


def test_redirects_are_not_followed(http: HttpHarness) -> None:
    with pytest.raises(ProviderError, match="307") as caught:
        http.mint(mint_path(http, "/v1/moved"))
    assert not caught.value.retryable


def test_a_slow_issuer_times_out_retryably(http: HttpHarness) -> None:
    http.issuer.delay = 1.5
    with pytest.raises(ProviderError, match="Timeout") as caught:
        http.mint({**http.params, "timeout": 1, "retries": 0})
    assert caught.value.retryable


GOOD: dict[str, Any] = {
    "mint": {"path": "/v1/tokens"},
    "revoke": {"path": "/v1/tokens/{reference}"},
    "response": {"value": "token", "reference": "id"},
}


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


def with_mint(**fields: Any) -> dict[str, Any]:
    return {**GOOD, "mint": {"path": "/v1/tokens", **fields}}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (without("mint"), "mint"),
        (without("revoke"), "revoke"),
        (without("response"), "response"),
        ({**GOOD, "mint": "POST /x"}, "mint"),
        (with_mint(method="TRACE"), "mint.method"),
        (with_mint(verb="GET"), "mint.verb"),
        (with_mint(headers=["a"]), "mint.headers"),
        (with_mint(headers={"A": 1}), "mint.headers.A"),
        (with_mint(body={"a": {1, 2}}), "mint.body"),
        (with_mint(body="x" * 20_000), "mint.body"),
        (with_mint(path="/{Label}"), "mint.path"),
        (with_mint(path="v1/tokens"), "mint.path"),
        ({**GOOD, "response": {"value": "token"}}, "response.reference"),
        ({**GOOD, "response": {**GOOD["response"], "ttl": "x"}}, "response.ttl"),
        ({**GOOD, "auth": "digest"}, "auth"),
        ({**GOOD, "timeout": 0}, "timeout"),
        ({**GOOD, "retries": 11}, "retries"),
    ],
)
def test_bad_templates_name_their_field(params: dict[str, Any], field: str) -> None:
    provider = HttpHarness().provider
    provider.check_params(GOOD)
    with pytest.raises(ParamError) as caught:
        provider.check_params(params)
    assert caught.value.field == field


def test_a_tls_failure_is_final_not_retried(http: HttpHarness) -> None:
    assert http.connection is not None
    tls = Connection("ISSUER", http.connection.url.replace("http://", "https://"))
    with pytest.raises(ProviderError, match="SSLError") as caught:
        http.mint(connection=tls)
    assert not caught.value.retryable
    assert http.waits == []
