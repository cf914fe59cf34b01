"""Broker mode's main step (issue 15): the runkeys service mints with its own connections and
writes the secrets with its own App; this step holds neither. It sends the spec with a one-request
X25519 public key, unseals the answer, masks every value in every encoding before it prints
anything else, checks the answer against the spec, and exports as local mode does."""

from __future__ import annotations

import binascii
import secrets
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey

from action_src.collaborators import lease_client
from action_src.plan import BrokerPlan
from action_src.report import broker_keys_json, broker_summary, scan_manifest
from action_src.workflow import Workflow
from runkeys.broker import KeysGranted, KeysRequest, KeysRetirement, SealedKey, new_key_pair, unseal
from runkeys.errors import LeaseServiceError, RunkeysError
from runkeys.issuance import IssuanceError
from runkeys.lease_client import MALFORMED_ANSWER, LeaseClient
from runkeys.leases import Lifetime
from runkeys.masking import secret_parts
from runkeys.spec import KeySpec

STATE_NAME = "broker"  # the post step reads it as STATE_broker
STATE_VERSION = 1
REPEATED = "request_repeated"  # the service's 409 code for a request id it served before
MALFORMED_FIX = (
    "the runkeys service answered something this action cannot use: check that `service-url` "
    "points at a runkeys service of this version, and report it to its operator"
)


class BrokerState(msgspec.Struct, frozen=True, kw_only=True):
    """What the post step asks the service to retire: the request's `job` keys, all of its keys
    (the step failed once the service had answered, or may have), or nothing."""

    version: int = STATE_VERSION
    request_id: str
    retire: Literal["job", "all", "none"]

    def to_text(self) -> str:
        return msgspec.json.encode(self).decode()


class BrokerAnswerError(RunkeysError):
    """The service's answer cannot be used: a key missing, extra, or not sealed to this step."""

    title = "Keys not issued"


def new_request_id() -> str:
    """One id per step attempt; the client's HTTP retries resend it, so the service mints once."""
    return secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-]


def mint_brokered(plan: BrokerPlan, workflow: Workflow) -> int:
    private, public = new_key_pair()
    request_id = new_request_id()
    # Before the request: if its answer is lost, the post step still has the id to retire by.
    remember(workflow, request_id, "all")
    client = lease_client(plan.service, workflow, plan.retries)
    request = KeysRequest(
        request_id=request_id,
        keys=plan.keys_text,
        destination=plan.destination,
        public_key=public,
    )
    try:
        granted = client.request_keys(request)
    except LeaseServiceError as exc:
        if exc.code == REPEATED:
            # An earlier attempt of this step's request was granted (or is being served) and
            # its answer lost: the keys exist, and no one can have their values. Retire them.
            _give_back(client, request_id, workflow, exc)
            raise _repeated(exc) from None
        if exc.status is not None and 400 <= exc.status < 500:
            remember(workflow, request_id, "none")  # a refusal: the service minted nothing
        elif exc.code == MALFORMED_ANSWER:
            _give_back(client, request_id, workflow, exc)
        # Otherwise (unreachable, 5xx) the state says `all`: the post step asks again later.
        raise _refused(exc) from None
    try:
        keys, opened = open_answer(granted, request_id, plan.specs, private, workflow)
        variables, names = job_variables(keys, opened)
        outputs = {**variables, "keys-json": broker_keys_json(keys, names)}
        workflow.deliver_files(variables, outputs)
        workflow.leave_for_scan(scan_manifest(names, variables))
    except BaseException as exc:
        workflow.withdraw()
        _give_back(client, request_id, workflow, exc)
        raise
    has_job_keys = any(key.lifetime is Lifetime.JOB for key in keys)
    remember(workflow, request_id, "job" if has_job_keys else "none")
    try:
        workflow.summary(broker_summary(keys, granted.created_environment, plan.service.url))
    except RunkeysError as exc:  # the keys are out; a missing summary only deserves a warning
        workflow.warning(exc.explain())
    return 0


def remember(workflow: Workflow, request_id: str, retire: Literal["job", "all", "none"]) -> None:
    workflow.save_state(STATE_NAME, BrokerState(request_id=request_id, retire=retire).to_text())


def _repeated(exc: LeaseServiceError) -> LeaseServiceError:
    return LeaseServiceError(
        "the runkeys service granted this step's request on an attempt whose answer was lost; "
        "it keeps no value to send again, so the keys it minted were asked to be retired "
        f"({exc.cause})",
        status=exc.status,
        code=exc.code,
        fix="re-run the job: a new step attempt sends a new request and gets new keys",
    )


def _refused(exc: LeaseServiceError) -> LeaseServiceError:
    if exc.status != 403:
        return exc
    return LeaseServiceError(
        exc.cause,
        status=exc.status,
        code=exc.code,
        fix="the service's policy does not allow this run to mint these keys; the message above "
        "names the rule and the claim or field; ask the policy's owners, or change the key",
    )


def open_answer(
    granted: KeysGranted,
    request_id: str,
    specs: Sequence[KeySpec],
    private: PrivateKey,
    workflow: Workflow,
) -> tuple[list[SealedKey], dict[str, tuple[str, Mapping[str, str]]]]:
    """Unseal every key and mask what opened before anything is printed; then check the answer
    against the spec. Raises naming the first key that is wrong; prints no value."""
    opened: dict[str, tuple[str, Mapping[str, str]]] = {}
    failed: dict[str, str] = {}
    for key in granted.keys:
        try:
            unsealed = unseal(private, key.sealed)
        except msgspec.DecodeError:  # before ValueError, which it subclasses
            failed[key.name] = "its sealed value is not a key's value and parts"
            continue
        except (CryptoError, binascii.Error, ValueError):
            failed[key.name] = "its value was not sealed to this step's key"
            continue
        opened[key.name] = (unsealed.value, dict(unsealed.parts))
    workflow.hide(v for value, parts in opened.values() for v in (value, *secret_parts(parts)))
    problem = _first_problem(granted, request_id, specs, failed)
    if problem is not None:
        name, reason = problem
        where = f"key {name}: " if name else ""
        raise BrokerAnswerError(f"{where}{reason}. No key was exported.", fix=MALFORMED_FIX)
    by_name = {key.name: key for key in granted.keys}
    keys = [by_name[spec.name] for spec in specs]
    for key in keys:
        workflow.progress(
            f"{key.name}: minted by {key.provider} (runkeys service), lifetime "
            f"{key.lifetime.value}, expires {key.expires_at.isoformat(timespec='seconds')}"
        )
    return keys, opened


def _first_problem(
    granted: KeysGranted,
    request_id: str,
    specs: Sequence[KeySpec],
    failed: Mapping[str, str],
) -> tuple[str | None, str] | None:
    if granted.request_id != request_id:
        return None, "the service answered another request"
    wanted = {spec.name: spec for spec in specs}
    seen: set[str] = set()
    for key in granted.keys:
        if problem := _key_problem(key, wanted, seen, failed):
            return key.name, problem
        seen.add(key.name)
    for spec in specs:
        if spec.name not in seen:
            return spec.name, "the service's answer does not hold this key"
    return None


def _key_problem(
    key: SealedKey, wanted: Mapping[str, KeySpec], seen: set[str], failed: Mapping[str, str]
) -> str | None:
    spec = wanted.get(key.name)
    if spec is None:
        return "the service answered a key the `keys` input does not ask for"
    if key.name in seen:
        return "the service answered this key twice"
    if key.name in failed:
        return failed[key.name]
    if key.provider != spec.provider or key.lifetime is not spec.lifetime:
        return (
            f"the service minted {key.provider} with lifetime {key.lifetime.value}, but the "
            f"spec asks for {spec.provider} with lifetime {spec.lifetime.value}"
        )
    return None


def job_variables(
    keys: Sequence[SealedKey], opened: Mapping[str, tuple[str, Mapping[str, str]]]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each key's value under its name and each part as `<KEY>_<PART>`, as local mode; and the
    variable names of each key."""
    variables: dict[str, str] = {}
    names: dict[str, list[str]] = {}
    for key in keys:
        value, parts = opened[key.name]
        names[key.name] = [key.name, *(f"{key.name}_{part}" for part in parts)]
        for name, text in ((key.name, value), *((f"{key.name}_{p}", v) for p, v in parts.items())):
            if name.upper() in (n.upper() for n in variables):
                raise IssuanceError(
                    f"two keys would both set the job variable {name}",
                    fix=f"rename the key {key.name} (its parts are exported as {key.name}_<PART>)",
                )
            variables[name] = text
    return variables, names


def _give_back(
    client: LeaseClient, request_id: str, workflow: Workflow, cause: BaseException
) -> None:
    """The step fails after the service minted: ask it to retire every key of the request at
    once. If that fails too, the post step asks again (the state says `all`)."""
    try:
        client.retire_keys(KeysRetirement(request_id=request_id, scope="all"))
    except Exception as exc:
        message = exc.explain() if isinstance(exc, RunkeysError) else type(exc).__name__
        workflow.warning(f"Could not ask the runkeys service to retire the keys now: {message}")
        return
    remember(workflow, request_id, "none")
    workflow.warning(
        "The runkeys service was asked to retire every key of this request, since the step "
        f"failed ({type(cause).__name__})."
    )
