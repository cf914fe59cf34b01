"""The `http` provider against a hostile spec or ledger row: a reference that would walk out of
its path segment, a template that walks out of the connection's base path, a header that forges
the label runkeys sends. Each against the test issuer served for real, asserting the exact
request targets it received; the issuer's admin endpoint (`/admin/users/<n>/delete`, outside
the connection's `/api`) must never be reached."""

from __future__ import annotations

from typing import Any

import pytest

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers import RevokeRequest
from runkeys.providers.http_issuer import HttpIssuerProvider
from runkeys.providers.http_templates import Call
from tests.providers.harness import assert_clean
from tests.providers.harness_http import HttpHarness
from tests.providers.issuer_server import ACCOUNT

# The audit's template: a reference of `..` filled twice climbs from /api to the issuer's root.
CLIMB = {"method": "POST", "path": "/{reference}/{reference}/admin/users/1/delete"}
TOKENS = {"method": "DELETE", "path": "/v1/tokens/{reference}"}
USERS = {1: "alice", 2: "bob"}

HOSTILE_REFERENCES = [
    "..",
    "../..",
    "%2e%2e",
    "%2E%2e",
    "..%2f",
    "a/../../admin",
    "a%2F..%2Fadmin",
    "%252e%252e",  # `..` once a server decodes twice
    ".",
    ".%2e",
    "",
    "a\\..\\admin",  # a backslash some servers take for a slash
    "a%5c..%5cadmin",
    "v1\r\nX-Injected: 1",
]


def revoke_with(template: dict[str, Any], harness: HttpHarness) -> dict[str, Any]:
    return {**harness.params, "revoke": template}


def revoke_request(harness: HttpHarness, reference: str, params: Any, label: str) -> RevokeRequest:
    return RevokeRequest(reference, params, harness.connection, label=label)


@pytest.mark.parametrize("template", [CLIMB, TOKENS], ids=["climb", "tokens"])
@pytest.mark.parametrize("reference", HOSTILE_REFERENCES)
def test_a_reference_that_is_not_one_path_segment_is_refused_and_nothing_is_sent(
    http: HttpHarness, reference: str, template: dict[str, str]
) -> None:
    params = revoke_with(template, http)
    http.provider.check_params(params)  # the template is fine; the reference is not
    assert not http.provider.reference_matches(reference, label="rk_attack", params=params)
    with pytest.raises(ProviderError, match="cannot be one path segment") as caught:
        http.provider.revoke(revoke_request(http, reference, params, "rk_attack"))
    assert not caught.value.retryable
    assert_clean(caught.value, http.secrets())
    assert http.issuer.requests == []
    assert http.issuer.users == USERS


@pytest.mark.parametrize(
    ("reference", "target"),
    [
        ("v1.2", "/api/v1/tokens/v1.2"),
        ("..a", "/api/v1/tokens/..a"),
        ("a..", "/api/v1/tokens/a.."),
        ("a b", "/api/v1/tokens/a%20b"),
        ("50%off", "/api/v1/tokens/50%25off"),
        ("tok:7", "/api/v1/tokens/tok%3A7"),
    ],
)
def test_a_reference_with_dots_spaces_or_percent_inside_still_revokes(
    http: HttpHarness, reference: str, target: str
) -> None:
    http.issuer.add(reference, label="rk_owner")
    params = revoke_with(TOKENS, http)
    assert http.provider.reference_matches(reference, label="rk_owner", params=params)
    http.provider.revoke(revoke_request(http, reference, params, "rk_owner"))
    assert http.issuer.requests == [("DELETE", target)]
    assert http.issuer.live() == []


def test_a_value_in_the_query_is_one_query_value(http: HttpHarness) -> None:
    reference = "t 1&admin=1#x"
    http.issuer.add(reference, label="rk_owner")
    params = revoke_with({**TOKENS, "path": "/v1/tokens/{reference}?id={reference}"}, http)
    http.provider.check_params(params)
    http.provider.revoke(revoke_request(http, reference, params, "rk_owner"))
    assert http.issuer.requests == [
        ("DELETE", "/api/v1/tokens/t%201%26admin%3D1%23x?id=t%201%26admin%3D1%23x")
    ]
    assert http.issuer.live() == []


@pytest.mark.parametrize(
    "path",
    [
        "/../api-admin/v1/tokens/{reference}",
        "/v1/../../admin/users/1/delete/{reference}",
        "/%2e%2e/admin/users/1/delete/{reference}",
        "/.%2E/admin/users/1/delete/{reference}",
        "/v1/a%2F..%2F..%2Fadmin/{reference}",
        "/v1/a%5C..%5C..%5Cadmin/{reference}",
        "/./v1/tokens/{reference}",
    ],
)
def test_a_template_that_leaves_the_base_path_is_refused_by_the_check_and_at_revoke(
    http: HttpHarness, path: str
) -> None:
    """Refused by the spec check; and a ledger row written without it (by hand, or by an older
    version) is refused again when the worker revokes it."""
    params = revoke_with({"method": "POST", "path": path}, http)
    with pytest.raises(ParamError) as checked:
        http.provider.check_params(params)
    assert checked.value.field == "revoke.path"
    token = http.issuer.add("t1", label="rk_owner")
    with pytest.raises(ProviderError) as caught:
        http.provider.revoke(revoke_request(http, token.id, params, "rk_owner"))
    assert not caught.value.retryable
    assert http.issuer.requests == []
    assert http.issuer.users == USERS


def test_mint_and_revoke_are_sent_to_exactly_their_paths_below_the_base(
    http: HttpHarness,
) -> None:
    minted = http.mint()
    http.revoke(minted)
    targets = [target for _, target in http.issuer.requests]
    assert targets == ["/api/v1/tokens", f"/api/v1/tokens/{minted.reference}"]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        # `requests` turns %2e into `.` on the wire: the server would resolve `..`
        ("/v1/%2e%2e/%2e%2e/admin/users/1/delete", "'..' that is a dot segment"),
        # `requests` resolves a literal `..` itself, to a path outside the base
        ("/../admin/users/1/delete", "'/admin/users/1/delete' leaves"),
        ("/../api-admin/v1/tokens", "'/api-admin/v1/tokens' leaves"),
    ],
)
def test_the_url_is_checked_as_sent_whatever_built_it(
    http: HttpHarness, path: str, problem: str
) -> None:
    """The last check, on the URL `requests` will send: a request built without the template
    checks (as a new feature might) still cannot leave `/api/`."""
    assert http.connection is not None
    assert isinstance(http.provider, HttpIssuerProvider)
    call = Call(method="POST", path=path, headers={})
    with pytest.raises(ProviderError, match="refusing to send the POST request") as caught:
        http.provider._send(http.connection, http.params, call, ok=lambda status: True)
    assert problem in str(caught.value)
    assert http.issuer.requests == []
    assert http.issuer.users == USERS


def test_an_answer_whose_id_cannot_be_revoked_safely_fails_the_mint(http: HttpHarness) -> None:
    http.issuer.answer_override = {"data": {"id": "..", "token": "iss_forged", "expires_at": ""}}
    with pytest.raises(ProviderError, match="revoke") as caught:
        http.mint(revoke_with(CLIMB, http))
    assert not caught.value.retryable
    assert [target for _, target in http.issuer.requests] == ["/api/v1/tokens"]
    assert http.issuer.users == USERS


# --- headers runkeys sets for itself -------------------------------------------------------------

OWN_HEADER_SPELLINGS = [
    "Runkeys-Label",
    "runkeys-label",
    "RUNKEYS-LABEL",
    "rUnKeYs-LaBeL",
    " Runkeys-Label ",
    "Runkeys-Label\t",
    "Idempotency-Key",
    "idempotency-key",
    "Host",
    "content-length",
    "Transfer-Encoding",
]


@pytest.mark.parametrize("field", ["mint", "revoke"])
@pytest.mark.parametrize("name", OWN_HEADER_SPELLINGS)
def test_a_spec_may_not_set_a_header_runkeys_sets_itself(name: str, field: str) -> None:
    harness = HttpHarness()
    params = {**harness.params, field: {**harness.params[field], "headers": {name: "rk_victim"}}}
    with pytest.raises(ParamError, match="runkeys sets it itself") as caught:
        harness.provider.check_params(params)
    assert caught.value.field == f"{field}.headers"


@pytest.mark.parametrize("name", ["Runkeys-Label", "runkeys-label", "RUNKEYS-LABEL"])
def test_a_forged_label_header_never_reaches_the_issuer(http: HttpHarness, name: str) -> None:
    """A lease (a ledger row this version never checked) names another lease's token and
    carries that lease's label in its own revoke headers: the issuer, which compares the label,
    would revoke it. The revoke is refused and the token lives."""
    victim = http.issuer.add("victim-token", label="rk_victim")
    forged = {**TOKENS, "headers": {name: "rk_victim"}}
    params = revoke_with(forged, http)
    with pytest.raises(ProviderError, match="runkeys sets it itself"):
        http.provider.revoke(revoke_request(http, victim.id, params, "rk_attacker"))
    assert http.issuer.requests == []
    assert [t.id for t in http.issuer.live()] == ["victim-token"]


def test_runkeys_label_is_the_leases_own(http: HttpHarness) -> None:
    """Without a forged header the issuer sees the lease's own label and refuses a revoke of a
    token minted under another."""
    victim = http.issuer.add("victim-token", label="rk_victim")
    with pytest.raises(ProviderError, match="403"):
        http.provider.revoke(
            revoke_request(http, victim.id, revoke_with(TOKENS, http), "rk_attacker")
        )
    assert [t.id for t in http.issuer.live()] == ["victim-token"]


@pytest.mark.parametrize(
    "value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\x1b[31mb", "a\x7fb", "a\x0bb"]
)
def test_a_header_value_with_a_control_character_is_refused(value: str) -> None:
    harness = HttpHarness()
    mint = {**harness.params["mint"], "headers": {"X-Purpose": value}}
    with pytest.raises(ParamError, match="control character") as caught:
        harness.provider.check_params({**harness.params, "mint": mint})
    assert caught.value.field == "mint.headers.X-Purpose"


def test_a_tab_in_a_header_value_is_allowed() -> None:
    harness = HttpHarness()
    mint = {**harness.params["mint"], "headers": {"X-Purpose": "ci\trunkeys"}}
    harness.provider.check_params({**harness.params, "mint": mint})


def test_a_credential_with_a_line_break_is_not_sent_as_a_header(http: HttpHarness) -> None:
    """The connection's password fills `{password}` in a header: a line break in it (written
    `%0D%0A` in the URL) would add a header. Refused before anything is sent, without quoting
    the password."""
    password = f"{ACCOUNT[1]}\r\nX-Injected: 1"
    url = http.base_url.replace("http://", "http://ci:" + password.replace("\r\n", "%0D%0A") + "@")
    connection = Connection("ISSUER", url + "/api/")
    headers = {"Authorization": "Bearer {password}"}
    params = {**http.params, "auth": "none", "mint": {**http.params["mint"], "headers": headers}}
    with pytest.raises(ProviderError, match="control character") as caught:
        http.mint(params, connection=connection)
    assert not caught.value.retryable
    assert_clean(caught.value, [password, ACCOUNT[1]])
    assert http.issuer.requests == []
