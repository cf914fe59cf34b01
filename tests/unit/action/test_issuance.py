"""`runkeys.issuance.issue` in process, with a provider that fails on demand: a second key's
mint failing, revocation failing during rollback, unexpected errors that quote a value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runkeys import labels
from runkeys.errors import ProviderError
from runkeys.issuance import Collaborators, IssuanceError, IssuedKey, issue
from runkeys.leases import LeaseRequest, Lifetime, RetireOutcome, new_lease_id
from runkeys.providers import Minted, MintRequest, Provider, Registry, RevokeRequest
from runkeys.spec import KeySpec
from tests.encoded_forms import encoded_forms

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def lease_request(name: str, lifetime: Lifetime = Lifetime.RUN) -> LeaseRequest:
    lease_id = new_lease_id()
    return LeaseRequest(
        id=lease_id,
        key_name=name,
        provider="random",
        reference=f"random:{labels.label(lease_id, name)}",  # as the random provider mints
        fingerprint="0" * 64,
        lifetime=lifetime,
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


class Flaky(Provider):
    """Mints `value <n>+/%<newline><label>` with PASSWORD, HOST and PORT parts; fails the mint
    numbered `fail_on` (raising `crash`, or an error quoting the first value if `echo`); fails
    revokes if asked."""

    name = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.minted: list[str] = []
        self.revoked: list[RevokeRequest] = []
        self.fail_on: int | None = None
        self.crash: BaseException | None = None
        self.echo = False
        self.revoke_fails = False

    def check_params(self, params: Mapping[str, Any]) -> None:
        pass

    def mint(self, request: MintRequest) -> Minted:
        number = len(self.minted) + 1
        if number == self.fail_on:
            if self.crash is not None:
                raise self.crash
            if self.echo:
                raise RuntimeError(f"driver echoed {self.minted[0]} back")
            raise ProviderError(self.name, "backend refused", retryable=False)
        value = f"value {number}+/%\n{request.label}"  # each encoding writes it differently
        self.minted.append(value)
        parts = {"PASSWORD": value[::-1], "HOST": "localhost", "PORT": "5432"}
        return Minted(value, f"flaky:{request.label}", request.expires_at, parts)

    def reference_matches(self, reference: str, *, label: str, params: Mapping[str, Any]) -> bool:
        """`flaky:<label>` as minted (and `random:<label>` for `lease_request`'s leases)."""
        return reference.partition(":")[2] == label

    def revoke(self, request: RevokeRequest) -> None:
        self.revoked.append(request)
        if self.revoke_fails:
            raise ProviderError(self.name, "backend down", retryable=True)


class FakeRegistry(Registry):
    def __init__(self, provider: Provider) -> None:
        super().__init__()
        self.provider = provider

    def get(self, name: str) -> Provider:
        return self.provider


@dataclass
class Job:
    """The job as issuance sees it, recording what it was asked to do."""

    masks: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    remembered: list[tuple[list[str], str | None]] = field(default_factory=list)
    delivered: dict[str, str] = field(default_factory=dict)
    withdrawn: bool = False
    deliver_fails: bool = False

    def mask(self, form: str) -> None:
        self.masks.append(form)

    def progress(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def remember(self, leases: Sequence[LeaseRequest], created_environment: str | None) -> None:
        self.remembered.append(([lease.key_name for lease in leases], created_environment))

    def deliver(self, variables: Mapping[str, str], keys: Sequence[IssuedKey]) -> None:
        self.delivered.update(variables)
        if self.deliver_fails:
            raise OSError("disk full")

    def withdraw(self) -> None:
        self.withdrawn = True


@dataclass
class Registrar:
    registered: list[list[str]] = field(default_factory=list)
    retired: list[list[RetireOutcome]] = field(default_factory=list)

    def register(self, leases: Sequence[LeaseRequest]) -> object:
        self.registered.append([lease.key_name for lease in leases])
        return None

    def retire(self, outcomes: Sequence[RetireOutcome]) -> None:
        self.retired.append(list(outcomes))


def specs(*names: str, lifetime: Lifetime = Lifetime.JOB) -> list[KeySpec]:
    return [KeySpec(n, "flaky", timedelta(minutes=30), lifetime) for n in names]


def collaborators(provider: Flaky, job: Job, leases: Registrar | None = None) -> Collaborators:
    return Collaborators(
        registry=FakeRegistry(provider), connections={}, job=job, leases=leases, now=lambda: NOW
    )


def test_every_key_and_part_is_masked_before_the_next_step() -> None:
    provider, job, leases = Flaky(), Job(), Registrar()
    issued = issue(specs("A", "B"), None, collaborators(provider, job, leases))
    for value in provider.minted:
        assert encoded_forms(value) <= set(job.masks)
        assert encoded_forms(value[::-1]) <= set(job.masks)
    # Where a key logs in is exported, not masked: masking `5432` would blank every log line.
    assert "localhost" not in job.masks
    assert "5432" not in job.masks
    assert job.delivered == {
        "A": provider.minted[0],
        "A_PASSWORD": provider.minted[0][::-1],
        "A_HOST": "localhost",
        "A_PORT": "5432",
        "B": provider.minted[1],
        "B_PASSWORD": provider.minted[1][::-1],
        "B_HOST": "localhost",
        "B_PORT": "5432",
    }
    assert [k.variables for k in issued.keys] == [
        ("A", "A_PASSWORD", "A_HOST", "A_PORT"),
        ("B", "B_PASSWORD", "B_HOST", "B_PORT"),
    ]
    assert leases.registered == [["A", "B"]]
    assert issued.keys[0].lease.expires_at == NOW + timedelta(minutes=30)
    labels = [k.lease.reference.removeprefix("flaky:") for k in issued.keys]
    assert all(len(label) <= 32 and label.startswith("rk_") for label in labels)
    assert len(set(labels)) == 2


def test_a_second_mint_failing_revokes_the_first() -> None:
    provider, job, leases = Flaky(), Job(), Registrar()
    provider.fail_on = 2
    with pytest.raises(ProviderError, match="backend refused"):
        issue(specs("A", "B"), None, collaborators(provider, job, leases))
    assert [r.reference for r in provider.revoked] == [
        f"flaky:{provider.minted[0].splitlines()[1]}"
    ]
    assert provider.revoked[0].value == provider.minted[0]
    assert leases.registered == []  # never registered, so the service is not told
    assert leases.retired == []
    assert job.delivered == {}
    assert job.remembered[-1] == ([], None)  # nothing left for the post step
    assert "Rolling back 1 minted key(s)" in job.warnings[0]


def test_a_failure_before_the_first_mint_has_nothing_to_roll_back() -> None:
    provider, job = Flaky(), Job()
    provider.fail_on = 1
    with pytest.raises(ProviderError):
        issue(specs("A"), None, collaborators(provider, job))
    assert job.warnings == []
    assert provider.revoked == []


def test_an_unexpected_error_quoting_a_value_goes_on_scrubbed() -> None:
    provider, job = Flaky(), Job()
    provider.fail_on = 2
    provider.echo = True  # like a driver that puts what it was given in its error
    with pytest.raises(IssuanceError) as caught:
        issue(specs("A", "B"), None, collaborators(provider, job))
    first = provider.minted[0]
    assert "RuntimeError: driver echoed *** back" in caught.value.cause
    assert first not in caught.value.explain()
    assert first not in " ".join(job.warnings)


def test_a_revoke_failing_during_rollback_is_left_for_the_post_step() -> None:
    provider, job, leases = Flaky(), Job(deliver_fails=True), Registrar()
    provider.revoke_fails = True
    with pytest.raises(IssuanceError, match="OSError: disk full"):
        issue(specs("A", "B", lifetime=Lifetime.RUN), None, collaborators(provider, job, leases))
    assert job.withdrawn
    assert job.remembered[-1] == (["B", "A"], None)  # every lifetime: the rollback failed
    assert [o.outcome for o in leases.retired[0]] == ["failed", "failed"]
    assert all("backend down" in (o.error or "") for o in leases.retired[0])
    assert sum("could not retire" in w for w in job.warnings) == 2


def test_a_part_that_would_overwrite_another_key_is_refused_and_rolled_back() -> None:
    provider, job = Flaky(), Job()
    with pytest.raises(IssuanceError, match="both set the job variable A_PASSWORD"):
        issue(specs("A", "A_PASSWORD"), None, collaborators(provider, job))
    assert len(provider.revoked) == 2
    assert job.delivered == {}


def test_an_interrupt_rolls_back_and_goes_on() -> None:
    provider, job = Flaky(), Job()
    provider.fail_on = 2
    provider.crash = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        issue(specs("A", "B"), None, collaborators(provider, job))
    assert len(provider.revoked) == 1


def test_only_job_keys_are_remembered_for_the_post_step() -> None:
    provider, job = Flaky(), Job()
    keys = [*specs("A"), *specs("B", lifetime=Lifetime.RUN)]
    issue(keys, None, collaborators(provider, job))
    assert job.remembered[-1] == (["A"], None)
