"""Retiring a key (`runkeys.retire`): revoked only through a connection that reaches the server
it was minted on, and the secret deleted only when nobody says to keep it, with the outcome
said exactly. The `random` provider revokes nothing itself, so no server is needed; the
secret store is a fake that records what it was asked."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pytest

from runkeys.connections import load_connections
from runkeys.errors import ProviderError
from runkeys.github.secrets import SecretStore
from runkeys.leases import SecretTarget
from runkeys.providers import PROVIDERS, Registry, RevokeRequest
from runkeys.providers.random_value import RandomProvider
from runkeys.retire import Retired, RetireRequest, delete_secret, retire

CONNECTIONS = load_connections({"RUNKEYS_CONNECTION_CI_DB": "postgresql://ci:pw@db/app"})
SECRET = SecretTarget("octo/app", "API_TOKEN")


def fingerprint(target: str) -> str:
    return hashlib.sha256(target.encode()).hexdigest()


def request(**fields: Any) -> RetireRequest:
    return RetireRequest(provider="random", reference="random:rk_x", **fields)


class Store(SecretStore):
    """Answers `delete` as GitHub would for a secret that is there (or not), and remembers."""

    def __init__(self, present: bool = True) -> None:  # no GitHub behind it
        self.present = present
        self.deleted: list[SecretTarget] = []

    def delete(self, target: SecretTarget) -> bool:
        self.deleted.append(target)
        return self.present


def test_a_key_is_revoked_through_a_connection_to_the_server_it_was_minted_on() -> None:
    minted_on = fingerprint("postgresql://db:5432/app")
    retire(
        request(connection="ci-db", connection_target=minted_on),
        registry=Registry(),
        connections=CONNECTIONS,
        secrets_for=None,
    )
    retire(
        request(connection="ci-db"), registry=Registry(), connections=CONNECTIONS, secrets_for=None
    )


def test_a_key_minted_on_another_server_is_not_revoked_through_this_one() -> None:
    elsewhere = fingerprint("postgresql://db:5432/other")
    with pytest.raises(ProviderError) as caught:
        retire(
            request(connection="ci-db", connection_target=elsewhere),
            registry=Registry(),
            connections=CONNECTIONS,
            secrets_for=None,
        )
    assert caught.value.provider == "random"
    assert caught.value.retryable is False
    assert caught.value.cause.startswith(
        "random: RUNKEYS_CONNECTION_CI_DB here reaches another server or database than the "
        "one this key was minted on"
    )


def test_without_a_secret_nothing_is_deleted() -> None:
    store = Store()
    done = retire(request(), registry=Registry(), connections={}, secrets_for=lambda r: store)
    assert done == Retired(secret_deleted=False, kept_for=None)
    assert store.deleted == []


def test_a_secret_someone_says_to_keep_is_kept_and_the_reason_returned() -> None:
    store = Store()
    done = retire(
        request(secret=SECRET),
        registry=Registry(),
        connections={},
        secrets_for=lambda r: store,
        keep_secret=lambda: "a newer lease wrote it",
    )
    assert done == Retired(secret_deleted=False, kept_for="a newer lease wrote it")
    assert store.deleted == []


@pytest.mark.parametrize("present", [True, False])
def test_a_secret_is_deleted_and_whether_it_was_there_said(present: bool) -> None:
    store = Store(present)
    done = retire(
        request(secret=SECRET),
        registry=Registry(),
        connections={},
        secrets_for=lambda r: store,
        keep_secret=lambda: None,
    )
    assert done == Retired(secret_deleted=present, kept_for=None)
    assert store.deleted == [SECRET]
    assert retire(
        request(secret=SECRET), registry=Registry(), connections={}, secrets_for=lambda r: store
    ) == Retired(secret_deleted=present, kept_for=None)


def test_with_no_store_to_delete_from_the_secret_is_left() -> None:
    done = retire(request(secret=SECRET), registry=Registry(), connections={}, secrets_for=None)
    assert done == Retired(secret_deleted=False, kept_for=None)


def test_a_reference_not_minted_under_the_leases_label_is_refused_for_good() -> None:
    with pytest.raises(ProviderError) as caught:
        retire(request(label="rk_other"), registry=Registry(), connections={}, secrets_for=None)
    assert caught.value.provider == "random"
    assert caught.value.retryable is False
    assert caught.value.cause.startswith("random: refusing to revoke 'random:rk_x'")
    assert "forged or damaged ledger row" in caught.value.fix
    retire(request(label="rk_x"), registry=Registry(), connections={}, secrets_for=None)


@dataclass(frozen=True)
class LeaseRow:
    """A lease as `RetireRequest.of` reads one (the ledger's and the action's have these)."""

    provider: str
    reference: str
    params: Mapping[str, Any]
    connection: str | None
    connection_target: str | None
    label: str | None


class Recording(RandomProvider):
    """The random provider (nothing to revoke), remembering every revoke it was asked for."""

    name = "recording"
    asked: ClassVar[list[RevokeRequest]] = []

    def revoke(self, request: RevokeRequest) -> None:
        self.asked.append(request)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[RevokeRequest]:
    monkeypatch.setitem(PROVIDERS, "recording", Recording)
    monkeypatch.setattr(Recording, "asked", [])
    return Recording.asked


def test_the_leases_label_value_and_no_connection_reach_the_providers_revoke(
    recording: list[RevokeRequest],
) -> None:
    """A provider that checks what it deletes (a deploy key's title) is told the lease's label;
    one that needs the value to revoke (an installation token) is given it on the runner."""
    row = LeaseRow("recording", "random:rk_a1", {"format": "hex"}, None, None, "rk_a1")
    request = RetireRequest.of(row, secret=SECRET, value="the-minted-value")
    retire(request, registry=Registry(), connections=CONNECTIONS, secrets_for=None)
    (asked,) = recording
    assert (asked.reference, asked.label, asked.value) == (
        "random:rk_a1",
        "rk_a1",
        "the-minted-value",
    )
    assert asked.params == {"format": "hex"}
    assert asked.connection is None  # none named: none given, not an empty one
    older = replace(row, label=None)  # a ledger row older than labels
    retire(
        RetireRequest.of(older, secret=None), registry=Registry(), connections={}, secrets_for=None
    )
    assert (recording[1].label, recording[1].value) == (None, None)


def test_the_connection_the_lease_names_reaches_the_providers_revoke(
    recording: list[RevokeRequest],
) -> None:
    row = LeaseRow("recording", "random:rk_b2", {}, "CI-DB", None, "rk_b2")
    retire(
        RetireRequest.of(row, secret=None),
        registry=Registry(),
        connections=CONNECTIONS,
        secrets_for=None,
    )
    (asked,) = recording
    assert asked.connection is CONNECTIONS["CI_DB"]


def test_deleting_the_secret_of_a_request_without_one_deletes_nothing_and_says_so() -> None:
    """The worker's path calls `delete_secret` directly after asking many at once."""
    store = Store()
    assert delete_secret(request(), lambda r: store) is False
    assert store.deleted == []
    assert delete_secret(request(secret=SECRET), lambda r: store) is True
    assert store.deleted == [SECRET]
