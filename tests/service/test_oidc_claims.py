"""Every claim the service keeps is checked at its bounds and carried into the identity exactly
as the token signed it: an empty or one-too-long text is refused and the longest allowed one
accepted, a repository is `owner/name` and nothing else, a run attempt or pull request number
past the ledger's column is refused, and each field of the identity is the claim's own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from runkeys.errors import AuthError
from runkeys.oidc import OIDCVerifier
from runkeys_sandbox.server import RunClaims
from tests.service.kit import AUDIENCE
from tests.service.test_oidc import IssuerServer, Seen

CLAIMS = RunClaims(repository="octo/app", repository_id=1296269, run_id=4242, run_attempt=2)


@pytest.fixture
def issuer() -> Iterator[IssuerServer]:
    server = IssuerServer()
    yield server
    server.server.stop()


def verify(issuer: IssuerServer, run: RunClaims = CLAIMS, **claims: Any) -> Any:
    check = OIDCVerifier(issuer.issuer.issuer, AUDIENCE, first_use=Seen())
    overrides: dict[str, Any] = claims
    return check.verify(issuer.issuer.token_for(run, AUDIENCE, **overrides))


def refused(issuer: IssuerServer, claim: str, value: Any) -> None:
    with pytest.raises(AuthError) as caught:
        verify(issuer, CLAIMS, **{claim: value})
    assert (
        caught.value.cause == f"The token's {claim!r} claim is missing, malformed or out of range"
    )


def test_the_identity_is_the_tokens_claims_field_by_field(issuer: IssuerServer) -> None:
    run = RunClaims(
        repository="octo/app",
        repository_id=1296269,
        run_id=4242,
        run_attempt=3,
        ref="refs/heads/release",
        sha="a" * 40,
        environment="staging",
        event_name="workflow_dispatch",
        repository_owner_id=583231,
    )
    identity = verify(issuer, run)
    assert (identity.repository, identity.repository_id) == ("octo/app", 1296269)
    assert (identity.owner, identity.owner_id) == ("octo", 583231)
    assert (identity.run_id, identity.run_attempt) == (4242, 3)
    assert (identity.ref, identity.sha) == ("refs/heads/release", "a" * 40)
    assert identity.event_name == "workflow_dispatch"
    assert identity.environment == "staging"
    assert identity.subject == "repo:octo/app:environment:staging"


@pytest.mark.parametrize("environment", ["", None])
def test_no_environment_is_none(issuer: IssuerServer, environment: str | None) -> None:
    assert verify(issuer, environment=environment).environment is None


@pytest.mark.parametrize(
    ("claim", "field", "longest"),
    [
        ("jti", "jti", 200),
        ("sha", "sha", 64),
        ("event_name", "event_name", 64),
        ("repository_owner", "owner", 200),
        ("ref", "ref", 255),
    ],
)
def test_a_text_claim_is_one_to_its_longest_characters(
    issuer: IssuerServer, claim: str, field: str, longest: int
) -> None:
    text = "refs/heads/" + "r" * (longest - 11) if claim == "ref" else "x" * longest
    assert getattr(verify(issuer, CLAIMS, **{claim: text}), field) == text
    for wrong in (text + "x", "", *([] if claim == "jti" else [7])):
        # PyJWT itself refuses a `jti` that is not a string, in its own words
        refused(issuer, claim, wrong)


@pytest.mark.parametrize(
    "repository", ["octo", "octo/app/extra", "/app", "octo/", "octo/..", "../app", "x" * 201]
)
def test_a_repository_is_an_owner_and_a_name(issuer: IssuerServer, repository: str) -> None:
    refused(issuer, "repository", repository)


def test_a_repository_of_the_longest_length_is_accepted(issuer: IssuerServer) -> None:
    repository = "o/" + "n" * 198
    assert verify(issuer, repository=repository).repository == repository


def test_a_run_attempt_fits_the_ledgers_column(issuer: IssuerServer) -> None:
    assert verify(issuer, run_attempt=2**31 - 1).run_attempt == 2**31 - 1
    refused(issuer, "run_attempt", 2**31)
    refused(issuer, "run_attempt", "2147483648")


def test_a_pull_requests_number_fits_the_ledgers_column(issuer: IssuerServer) -> None:
    assert verify(issuer, ref="refs/pull/2147483647/merge").pull_request == 2**31 - 1
    refused(issuer, "ref", "refs/pull/2147483648/merge")
    refused(issuer, "ref", "refs/pull/0/merge")


@pytest.mark.parametrize("environment", ["e" * 256, 7, ["staging"]])
def test_an_environment_claim_is_text_of_at_most_255_characters(
    issuer: IssuerServer, environment: Any
) -> None:
    assert verify(issuer, environment="e" * 255).environment == "e" * 255
    with pytest.raises(AuthError) as caught:
        verify(issuer, environment=environment)
    assert caught.value.cause == "The token's 'environment' claim is malformed or out of range"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub"])
def test_a_token_without_a_registered_claim_is_refused_naming_it(
    issuer: IssuerServer, claim: str
) -> None:
    claims = CLAIMS.claims(
        issuer=issuer.issuer.issuer, audience=AUDIENCE, now=int(time.time()), lifetime=300
    )
    del claims[claim]
    check = OIDCVerifier(issuer.issuer.issuer, AUDIENCE, first_use=Seen())
    with pytest.raises(AuthError) as caught:
        check.verify(issuer.issuer.sign(claims))
    assert caught.value.cause == f"The token has no {claim!r} claim"


def test_an_issued_at_that_is_no_time_is_refused(issuer: IssuerServer) -> None:
    with pytest.raises(AuthError) as caught:
        verify(issuer, iat="recently")
    assert caught.value.cause == "The token is not valid (InvalidIssuedAtError)"


def test_a_verifier_configured_with_a_trailing_slash_accepts_its_issuers_tokens(
    issuer: IssuerServer,
) -> None:
    check = OIDCVerifier(issuer.issuer.issuer + "/", AUDIENCE, first_use=Seen())
    assert check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE)).run_id == 4242


@pytest.mark.parametrize("claim", ["jti", "sha", "event_name", "repository_owner", "ref"])
def test_a_one_character_text_claim_is_accepted(issuer: IssuerServer, claim: str) -> None:
    field = "owner" if claim == "repository_owner" else claim
    assert getattr(verify(issuer, CLAIMS, **{claim: "z"}), field) == "z"


@pytest.mark.parametrize("repository", [7, ["octo/app"], "o/" + "n" * 199])
def test_a_repository_that_is_not_text_or_one_past_the_longest_is_refused(
    issuer: IssuerServer, repository: Any
) -> None:
    """Each fails one half of the check only: a one-too-long repository has its one `/`."""
    refused(issuer, "repository", repository)


def test_the_replay_guard_is_told_when_the_token_expires(issuer: IssuerServer) -> None:
    """The guard forgets a token's id once the token has expired; told no expiry, a ledger
    would keep every id for ever or forget them at once."""
    told: list[tuple[str, Any]] = []

    def guard(jti: str, expires_at: datetime) -> bool:
        told.append((jti, expires_at))
        return True

    now = int(time.time())
    check = OIDCVerifier(issuer.issuer.issuer, AUDIENCE, first_use=guard)
    check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE, now=now, lifetime=300, jti="once-1"))
    assert told == [("once-1", datetime.fromtimestamp(now + 300, UTC))]


@pytest.mark.parametrize(
    ("claim", "longest"),
    [("actor", 255), ("workflow_ref", 500), ("job_workflow_ref", 500), ("runner_environment", 500)],
)
def test_the_claims_the_audit_keeps_fit_its_columns(
    issuer: IssuerServer, claim: str, longest: int
) -> None:
    """The broker's audit stores these (policy_decisions): one past its column is refused,
    as are other types; the longest is read back whole."""
    assert getattr(verify(issuer, CLAIMS, **{claim: "w" * longest}), claim) == "w" * longest
    for value in ("w" * (longest + 1), 7):
        with pytest.raises(AuthError) as caught:
            verify(issuer, CLAIMS, **{claim: value})
        assert caught.value.cause == f"The token's {claim!r} claim is malformed or out of range"


def test_run_number_is_read_when_it_is_a_number_and_refused_otherwise(issuer: IssuerServer) -> None:
    assert verify(issuer, run_number="42").run_number == 42
    for value in ("forty-two", "0"):
        with pytest.raises(AuthError) as caught:
            verify(issuer, run_number=value)
        assert caught.value.cause == "The token's 'run_number' claim is malformed or out of range"
