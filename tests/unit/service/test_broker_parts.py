"""Broker mode's small decisions, each on its own (handler.broker): which key a failing secret
belongs to, the policy's view of the token, the App permissions asked for, and what a 403
names. Each oracle is written out here, with the almost-right input beside the right one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from handler.broker import _denied, _key_of, claims_of, fill_environment, permissions_for
from handler.errors import ApiError
from handler.policy import Claims, Decision, KeyDecision
from runkeys.issuance import SecretScope
from runkeys.leases import Lifetime
from runkeys.oidc import RunIdentity
from runkeys.spec import KeySpec


def spec(name: str) -> KeySpec:
    return KeySpec(name=name, provider="random", ttl=timedelta(minutes=5), lifetime=Lifetime.RUN)


@pytest.mark.parametrize("order", [["DB", "DB_RO"], ["DB_RO", "DB"]], ids=["short first", "long"])
@pytest.mark.parametrize(
    ("secret", "key"),
    [
        ("DB", "DB"),  # the key's own secret
        ("DB_PASSWORD", "DB"),  # one of its parts
        ("DB_RO", "DB_RO"),
        ("DB_RO_PASSWORD", "DB_RO"),  # DB's prefix too: the longer name is the one
        ("DBX", None),  # begins with DB, yet no part of it
        ("DBX_PASSWORD", None),
        ("CACHE", None),
    ],
)
def test_a_secret_is_told_to_the_longest_key_it_belongs_to(
    order: list[str], secret: str, key: str | None
) -> None:
    assert _key_of(secret, [spec(n) for n in order]) == key


def test_a_key_named_in_lower_case_owns_its_upper_cased_secrets() -> None:
    """GitHub upper-cases secret names; the spec's key keeps the case it was written in."""
    specs = [spec("db"), spec("db_ro")]
    assert _key_of("DB_RO_PASSWORD", specs) == "db_ro"
    assert _key_of("DB", specs) == "db"
    assert _key_of("db_password", specs) == "db"


PR_RUN = RunIdentity(
    repository="octo/app",
    repository_id=1296269,
    owner="octo",
    owner_id=583231,
    run_id=30433642,
    run_attempt=3,
    ref="refs/pull/7/merge",
    sha="e" * 40,
    event_name="pull_request",
    environment="ci-pr-7",
    subject="repo:octo/app:pull_request",
    jti="jti-1",
    expires_at=datetime(2026, 12, 7, tzinfo=UTC),
    run_number=42,
    ref_type="branch",
    workflow_ref="octo/app/.github/workflows/ci.yml@refs/pull/7/merge",
    job_workflow_ref="octo/shared/.github/workflows/job.yml@refs/heads/main",
    runner_environment="github-hosted",
    actor="mona",
)


def test_the_policy_sees_every_claim_of_the_token_in_its_own_field() -> None:
    """Every value distinct, so a claim read into another's field shows."""
    identity = PR_RUN
    assert claims_of(identity) == Claims(
        repository="octo/app",
        repository_id="1296269",
        repository_owner="octo",
        ref="refs/pull/7/merge",
        event_name="pull_request",
        run_id="30433642",
        run_attempt="3",
        ref_type="branch",
        environment="ci-pr-7",
        workflow_ref="octo/app/.github/workflows/ci.yml@refs/pull/7/merge",
        job_workflow_ref="octo/shared/.github/workflows/job.yml@refs/heads/main",
        runner_environment="github-hosted",
        actor="mona",
        sha="e" * 40,
    )


def test_the_app_is_asked_for_the_permissions_the_destination_needs_and_no_more() -> None:
    assert permissions_for(None) == {}  # the job's variables: no secret is written
    assert permissions_for(SecretScope("octo/app")) == {"secrets": "write"}
    assert permissions_for(SecretScope("octo/app", "ci-pr-7")) == {
        "secrets": "write",
        "environments": "write",
        "actions": "read",
        "administration": "write",
    }


def decided(name: str, *, allowed: bool) -> KeyDecision:
    if allowed:
        return KeyDecision(key=name, provider="random", connection=None, allowed=True, rule="ci")
    return KeyDecision(
        key=name,
        provider="random",
        connection=None,
        allowed=False,
        rule="ci",
        field="ttl",
        reason="2h is over 1h",
        fix="ask for 1h at most",
    )


def test_a_403_names_the_first_denied_key_and_lists_every_denied_one() -> None:
    keys = (
        decided("A", allowed=True),
        decided("B", allowed=False),
        decided("C", allowed=True),
        decided("D", allowed=False),
        decided("E", allowed=False),
    )
    error = _denied(Decision(False, keys))
    assert isinstance(error, ApiError)
    assert (error.status, error.code) == (403, "policy_denied")
    refusal = "B: denied by ci: ttl: 2h is over 1h; fix: ask for 1h at most"
    assert error.message == f"{refusal}. Nothing was minted (2 more key(s) denied too)"
    assert error.extra == {
        "key": "B",
        "denied": [refusal, *(refusal.replace("B:", f"{k}:", 1) for k in "DE")],
    }


def test_a_403_for_one_denied_key_counts_no_others() -> None:
    error = _denied(Decision(False, (decided("A", allowed=True), decided("B", allowed=False))))
    refusal = "B: denied by ci: ttl: 2h is over 1h; fix: ask for 1h at most"
    assert error.message == f"{refusal}. Nothing was minted"
    assert error.extra == {"key": "B", "denied": [refusal]}


# The same token on a push run: no pull request; its run_number is 42.
PUSH_RUN = replace(PR_RUN, ref="refs/heads/main", event_name="push", environment=None)


@pytest.mark.parametrize(
    ("template", "run_number", "says"),
    [
        ("ci-{run_number}", 42, None),
        ("ci-{run_number}", None, "{run_number} needs a token with a run_number claim"),
        ("ci-{pr}", 42, "{pr} needs a pull request's run; this run's ref is refs/heads/main"),
    ],
)
def test_a_placeholder_the_token_has_no_value_for_is_named(
    template: str, run_number: int | None, says: str | None
) -> None:
    identity = replace(PUSH_RUN, run_number=run_number)
    if says is None:
        assert fill_environment(template, identity) == "ci-42"
        return
    with pytest.raises(ApiError) as raised:
        fill_environment(template, identity)
    assert (raised.value.status, raised.value.code) == (422, "invalid_destination")
    assert raised.value.message == f"destination.environment: {says}"
