"""Durations, names, connections from the environment, the lease wire model, permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from runkeys.connections import load_connections
from runkeys.durations import format_duration, parse_duration
from runkeys.errors import ConfigError
from runkeys.github.permissions import required
from runkeys.leases import LeaseRequest, Lifetime, SecretTarget, fingerprint, new_lease_id
from runkeys.names import secret_name_problem
from runkeys.providers import Registry
from runkeys.retire import RetireRequest, retire


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2d", 172800), (" 1H ", 3600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "-1h", "1.5h", "0s", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|zero"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("API_TOKEN", True),
        ("_x", True),
        ("a1", True),
        ("1A", False),
        ("A-B", False),
        ("A B", False),
        ("GITHUB_X", False),
        ("github_x", False),
        ("RUNNER_TEMP", False),
        ("PATH", False),
        ("NODE_OPTIONS", False),
        ("", False),
        ("É", False),
    ],
)
def test_secret_names(name: str, ok: bool) -> None:
    assert (secret_name_problem(name) is None) is ok


def test_connections_from_the_environment() -> None:
    env = {"RUNKEYS_CONNECTION_CI_DB": "postgresql://u:p@h/d", "OTHER": "x"}
    assert list(load_connections(env)) == ["CI_DB"]
    with pytest.raises(ConfigError, match="RUNKEYS_CONNECTION_X"):
        load_connections({"RUNKEYS_CONNECTION_X": " "})
    with pytest.raises(ConfigError):
        load_connections({"RUNKEYS_CONNECTION_1X": "redis://h"})


def test_retiring_finds_a_connection_by_any_spelling_of_its_name() -> None:
    """`ci-db` in a ledger row or a spec is `RUNKEYS_CONNECTION_CI_DB`, as everywhere else."""
    connections = load_connections({"RUNKEYS_CONNECTION_CI_DB": "postgresql://ci@db/app"})
    for spelling in ("ci-db", "ci_db", "CI_DB", " Ci-Db "):
        request = RetireRequest(provider="random", reference="random:rk_x", connection=spelling)
        retire(request, registry=Registry(), connections=connections, secrets_for=None)
    with pytest.raises(ConfigError, match="RUNKEYS_CONNECTION_OTHER_DB"):
        retire(
            RetireRequest(provider="random", reference="random:rk_x", connection="other-db"),
            registry=Registry(),
            connections=connections,
            secrets_for=None,
        )


def test_lease_request_round_trips_and_holds_no_value() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    lease = LeaseRequest(
        id=new_lease_id(),
        key_name="API_TOKEN",
        provider="random",
        reference="random:rk_1",
        fingerprint=fingerprint("the-value"),
        lifetime=Lifetime.PR,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        secret=SecretTarget("octo/app", "API_TOKEN", "ci-pr-7"),
        environment_created=True,
        params={"format": "hex"},
    )
    wire = msgspec.json.encode(lease)
    assert msgspec.json.decode(wire, type=LeaseRequest) == lease
    assert b"the-value" not in wire
    with pytest.raises(msgspec.ValidationError, match=r"\$\.lifetime"):
        msgspec.json.decode(wire.replace(b'"pr"', b'"forever"'), type=LeaseRequest)


def test_permission_table_names_what_an_endpoint_needs() -> None:
    labels = [r.label() for r in required("PUT", "/repos/o/r/environments/e/secrets/S")]
    assert labels == ["Secrets: write", "Environments: write"]
    assert [r.label() for r in required("DELETE", "/repos/o/r/environments/e")] == [
        "Administration: write"
    ]
    assert required("GET", "/nowhere") == ()
