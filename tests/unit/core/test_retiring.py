"""Retiring a key (`runkeys.retire`): revoked only through a connection that reaches the server
it was minted on, and the secret deleted only when nobody says to keep it, with the outcome
said exactly. The `random` provider revokes nothing itself, so no server is needed; the
secret store is a fake that records what it was asked."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from runkeys.connections import load_connections
from runkeys.errors import ProviderError
from runkeys.github.secrets import SecretStore
from runkeys.leases import SecretTarget
from runkeys.providers import Registry
from runkeys.retire import Retired, RetireRequest, retire

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
