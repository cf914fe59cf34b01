"""The conformance suite every provider passes, against the real backend (Vault's dbplugin
test suite is the model): mint → use for real → revoke → revoke again → no longer works, nothing
left; the backend down at mint and at revoke; a mint the backend refuses; injection refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runkeys.errors import ParamError, ProviderError
from runkeys.providers import PROVIDERS
from tests.providers.harness import EXPIRES_AT, Harness, assert_clean

pytestmark = pytest.mark.services


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Whether `condition` holds within `seconds` (a killed session may take a moment to see)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_every_registered_provider_with_a_backend_has_a_harness() -> None:
    from tests.providers.conftest import HARNESSES

    backed = {name for name, cls in PROVIDERS.items() if cls.needs_connection}
    assert backed <= set(HARNESSES), backed - set(HARNESSES)


def test_mint_use_revoke_twice_then_refused(harness: Harness) -> None:
    minted = harness.mint()
    assert minted.reference
    assert minted.value not in minted.reference
    # Never later than asked, unless the backend fixes the life itself (a token's hour).
    fixed = harness.provider.max_ttl
    assert minted.expires_at <= max(EXPIRES_AT, datetime.now(UTC) + (fixed or timedelta(0)))
    harness.use(minted)
    session = harness.hold(minted)
    assert harness.leftovers(minted.reference), "the backend does not show the credential"

    harness.revoke(minted)
    harness.revoke(minted)  # already gone: success

    harness.refused(minted)
    assert harness.leftovers(minted.reference) == []
    if session is not None:
        assert wait_until(lambda: not session()), "a session of the revoked credential lives on"


def test_revoke_of_what_never_existed_is_success(harness: Harness) -> None:
    minted = harness.mint()
    harness.revoke(minted)
    harness.revoke(minted.reference)
    harness.revoke(harness.unknown_reference())  # one the backend has never seen


def test_a_reference_is_bound_to_the_label_it_was_minted_under(harness: Harness) -> None:
    """Another lease (another label) cannot name this credential and have it revoked."""
    minted = harness.mint()
    label, other = harness.labels[-1], harness.label()
    matches = harness.provider.reference_matches
    assert matches(minted.reference, label=label, params=harness.params)
    if harness.bound == "name":
        assert not matches(minted.reference, label=other, params=harness.params)
    elif harness.bound == "revoke":
        with pytest.raises(ProviderError) as caught:
            harness.revoke(minted, label=other)
        assert not caught.value.retryable, caught.value
        assert_clean(caught.value, harness.secrets(minted))
        harness.use(minted)  # untouched
    else:
        assert harness.bound == "nothing"
        harness.revoke(minted, label=other, value=None)  # as the service would: calls nobody
        harness.use(minted)
    harness.revoke(minted)
    assert harness.leftovers(minted.reference) == []


def test_mint_with_the_backend_down_is_retryable_and_leaves_nothing(harness: Harness) -> None:
    label = harness.label()
    with harness.backend_down(), pytest.raises(ProviderError) as caught:
        harness.mint(label=label)
    assert caught.value.retryable, caught.value
    assert caught.value.provider == harness.provider.name
    assert caught.value.fix  # says what to do, not only what happened
    assert_clean(caught.value, harness.secrets())
    assert harness.leftovers(label) == []


def test_revoke_with_the_backend_down_is_retryable_and_loses_nothing(harness: Harness) -> None:
    minted = harness.mint()
    with harness.backend_down(), pytest.raises(ProviderError) as caught:
        harness.revoke(minted)
    assert caught.value.retryable, caught.value
    assert_clean(caught.value, harness.secrets(minted))
    harness.use(minted)  # still there, still works: the retry will find it
    assert harness.leftovers(minted.reference)

    harness.revoke(minted)
    harness.refused(minted)
    assert harness.leftovers(minted.reference) == []


def test_a_mint_the_backend_refuses_is_final_and_leaves_nothing(harness: Harness) -> None:
    params = harness.backend_refusal()
    # Every backend refuses something the spec check accepts; a harness that says nothing
    # would leave the provider's cleanup after a refused mint untested.
    assert params is not None, f"{harness.provider.name}'s harness names no backend refusal"
    label = harness.label()
    with pytest.raises(ProviderError) as caught:
        harness.mint(params, label=label)
    assert not caught.value.retryable, caught.value
    assert_clean(caught.value, harness.secrets())
    assert harness.leftovers(label) == []


def test_the_same_label_twice_does_what_the_backend_promises(harness: Harness) -> None:
    first = harness.mint()
    label = harness.labels[-1]
    if harness.same_label == "refused":
        with pytest.raises(ProviderError) as caught:
            harness.mint(label=label)
        assert not caught.value.retryable
        assert_clean(caught.value, harness.secrets(first))
        survivor = first
    else:
        second = harness.mint(label=label)
        if harness.same_label == "same":
            assert second.reference == first.reference
        else:
            assert second.reference != first.reference
            assert second.value != first.value
        if harness.same_label == "replaced":
            harness.refused(first)
            assert harness.leftovers(first.reference) == []
        if harness.same_label == "independent":
            harness.use(first)
            harness.revoke(first)
        survivor = second
    harness.use(survivor)
    harness.revoke(survivor)
    assert harness.leftovers(survivor.reference) == []


def test_a_refused_connection_account_is_not_retryable(harness: Harness) -> None:
    label = harness.label()
    with harness.wrong_account(), pytest.raises(ProviderError) as caught:
        harness.mint(label=label)
    assert not caught.value.retryable, caught.value
    assert caught.value.fix
    assert_clean(caught.value, [*harness.secrets(), "not-the-password"])
    assert harness.leftovers(label) == []


# -- the spec check: no backend needed ------------------------------------------------------------


def test_the_harness_parameters_pass_the_spec_check(spec_only: Harness) -> None:
    spec_only.provider.check_params(spec_only.params)


def test_injection_is_refused_by_the_spec_check(spec_only: Harness) -> None:
    harness = spec_only
    injections = harness.injections()
    assert injections
    for params in injections:
        with pytest.raises(ParamError) as caught:
            harness.provider.check_params(params)
        assert caught.value.field, params


def variants(params: dict[str, Any], garbage: Any) -> list[dict[str, Any]]:
    """`params` with one value, at the top or one level down, replaced by `garbage`."""
    found = [{**params, key: garbage} for key in params]
    for key, value in params.items():
        if isinstance(value, dict):
            found += [{**params, key: {**value, inner: garbage}} for inner in value]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            found += [{**params, key: [{**value[0], inner: garbage}]} for inner in value[0]]
    return found


@pytest.mark.parametrize(
    "garbage", [None, 1, -1, True, 1.5, "", "x y", [], [None], {"x": 1}, [{"a": None}]]
)
def test_garbage_anywhere_is_a_param_error_never_a_crash(spec_only: Harness, garbage: Any) -> None:
    harness = spec_only
    for params in variants(dict(harness.params), garbage):
        try:
            harness.provider.check_params(params)
        except ParamError as exc:  # the only exception allowed; accepting is fine too
            problem = exc
            assert problem.field
            assert problem.cause
    with pytest.raises(ParamError) as caught:
        harness.provider.check_params({**harness.params, "nonsense": garbage})
    assert caught.value.field == "nonsense"
