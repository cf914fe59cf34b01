"""The action's client of the lease service: `POST /v1/leases` (register),
`POST /v1/leases/retire` (the post step's report) and `POST /v1/leases/check` (the `check`
sub-action), over `runkeys.http_session`.

Each attempt carries a fresh OIDC token (`runkeys.oidc.RunnerOIDC`): the service accepts a `jti`
once, even from a request that then failed. The action makes lease ids: no retry leases twice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
import requests
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from runkeys import __version__, http_session, versions
from runkeys.broker import KeysGranted, KeysRequest, KeysRetirement
from runkeys.errors import LeaseServiceError
from runkeys.leases import (
    LeaseRequest,
    Registered,
    RegisteredLease,
    Registration,
    Retired,
    Retirement,
    RetireOutcome,
)
from runkeys.preflight import CheckAnswer, CheckRequest
from runkeys.scrub import short

Answer = TypeVar("Answer", bound=msgspec.Struct)

INCOMPATIBLE_VERSION = "incompatible_version"
MALFORMED_ANSWER = "malformed_answer"  # the code of a 2xx answer that is not the schema
RETRY_AFTER_CAP = 60.0  # seconds: longer than that, the step fails and says why


class LeaseClient:
    """`POST /v1/leases` and `POST /v1/leases/retire` of one service, authenticated with the
    job's OIDC token."""

    def __init__(
        self,
        service_url: str,
        tokens: Callable[[], str],
        *,
        http: requests.Session | None = None,
        retry: Retry | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.service_url = service_url.rstrip("/")
        self._tokens = tokens
        self._http = http or requests.Session()
        self._retry = retry or http_session.backoff(4, factor=0.5, cap=RETRY_AFTER_CAP)
        self._timeout = timeout

    def register(self, leases: Sequence[LeaseRequest]) -> list[RegisteredLease]:
        """Register every lease; the answer must list each of them."""
        answer = self._post("/v1/leases", Registration(list(leases)), doing="registering leases")
        registered = _decoded(
            answer,
            Registered,
            "the lease service answered without the registered leases",
            fix="check that `service-url` points at a runkeys service of this version",
        ).leases
        missing = {lease.id for lease in leases} - {r.id for r in registered}
        if missing:
            raise LeaseServiceError(
                f"the lease service did not register {len(missing)} of {len(leases)} lease(s)"
            )
        return registered

    def retire(self, outcomes: Sequence[RetireOutcome]) -> dict[str, str]:
        """Tell the service what was retired on the runner (or failed to be). The answer, for
        the leases reported with `secret_pending`: the id of the newer live lease that wrote
        each one's secret since, by lease id. A lease not in it is its secret's last writer, or
        the service is older than `secret_kept_for`: either way its secret is to be deleted."""
        if not outcomes:
            return {}
        cut = [
            msgspec.structs.replace(o, error=short(o.error, 200) if o.error else None)
            for o in outcomes
        ]
        answer = self._post("/v1/leases/retire", Retirement(cut), doing="reporting retired leases")
        retired = _decoded(
            answer,
            Retired,
            "the lease service answered the report without its leases",
            fix="check that `service-url` points at a runkeys service",
        ).leases
        return {r.id: r.secret_kept_for for r in retired if isinstance(r.secret_kept_for, str)}

    def request_keys(self, request: KeysRequest) -> KeysGranted:
        """Broker mode: `POST /v1/keys`. Every attempt carries the same `request_id` (the
        service mints once per id) and a fresh token. The answer is read as `KeysGranted`;
        the caller checks it against the spec and unseals it."""
        answer = self._post("/v1/keys", request, doing="asking for the keys")
        try:
            return msgspec.json.decode(answer, type=KeysGranted)
        except msgspec.DecodeError:
            # The service answered 2xx, so it may have minted: the caller asks it to retire.
            raise LeaseServiceError(
                "the runkeys service's answer to /v1/keys is not a list of sealed keys",
                code=MALFORMED_ANSWER,
                fix="check that `service-url` points at a runkeys service that serves broker mode",
            ) from None

    def retire_keys(self, retirement: KeysRetirement) -> list[str]:
        """Broker mode: ask the service to retire a request's keys (`POST /v1/keys/retire`);
        the ids of the leases its answer lists."""
        answer = self._post("/v1/keys/retire", retirement, doing="asking to retire the keys")
        retired = _decoded(
            answer,
            Retired,
            "the runkeys service answered /v1/keys/retire without its leases",
            fix="check that `service-url` points at a runkeys service that serves broker mode",
        )
        return [lease.id for lease in retired.leases]

    def check(self, request: CheckRequest) -> CheckAnswer:
        """The `check` sub-action: `POST /v1/leases/check`, what the ledger says of each key."""
        answer = self._post("/v1/leases/check", request, doing="checking the keys")
        return _decoded(
            answer,
            CheckAnswer,
            "the runkeys service answered /v1/leases/check without the keys' states",
            fix="check that `service-url` points at a runkeys service of this version",
        )

    def _post(self, path: str, body: msgspec.Struct, *, doing: str) -> bytes:
        """POST with a fresh token per attempt, tried again as `retry` says (a retry inside
        the session would resend a token the service may have seen)."""
        url = self.service_url + path
        retry = self._retry
        while True:
            try:
                response = self._http.post(
                    url,
                    data=msgspec.json.encode(body),
                    headers={
                        "Authorization": f"Bearer {self._tokens()}",
                        "Content-Type": "application/json",
                        "User-Agent": versions.USER_AGENT,
                        versions.HEADER: __version__,
                    },
                    timeout=self._timeout,
                )
            except requests.RequestException as exc:
                try:
                    retry = retry.increment("POST", url, error=exc)
                except MaxRetryError:
                    raise LeaseServiceError(
                        f"could not reach the lease service at {self.service_url} while {doing}: "
                        f"{type(exc).__name__}",
                        fix="check `service-url` and that the service is up",
                    ) from None
                retry.sleep()
                continue
            if not retry.is_retry("POST", response.status_code):
                return _answer(response, doing)
            try:
                retry = retry.increment("POST", url, response=response.raw)
            except MaxRetryError:
                return _answer(response, doing)
            retry.sleep(response.raw)


def _decoded(answer: bytes, schema: type[Answer], refusal: str, *, fix: str) -> Answer:
    """The service's answer read as `schema`, or `refusal` when it is not one."""
    try:
        return msgspec.json.decode(answer, type=schema)
    except msgspec.DecodeError:
        raise LeaseServiceError(refusal, fix=fix) from None


def _refuse_another_version(response: requests.Response, doing: str) -> None:
    """A refusal from a service of another major version: say that, not its wording."""
    said = response.headers.get(versions.HEADER)
    why = None if said is None else versions.mismatch(said, they="the service", we="this action")
    if said is not None and why is not None:
        tag = versions.series(said)
        raise LeaseServiceError(
            f"the lease service answered {response.status_code} while {doing}, but {why}",
            status=response.status_code,
            code=INCOMPATIBLE_VERSION,
            fix="use the action's tag of the service's major version"
            + (f" (`uses: OWNER/runkeys@v{tag}`)" if tag else "")
            + ", or ask the service's operator to upgrade it",
        )


def _answer(response: requests.Response, doing: str) -> bytes:
    status = response.status_code
    if status in (200, 201):
        return response.content
    _refuse_another_version(response, doing)
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and ("error" in data or "message" in data):
        message = str(data.get("message", ""))
        key = data.get("key")
        if isinstance(key, str):  # the service's message may start with the key's name too
            message = message.removeprefix(f"{key}: ")
        said = short(f"{data.get('error', '')}: {message}".strip(": "), 300)
        if isinstance(key, str):  # broker mode names the key a refusal is about
            said = f"key {short(key, 100)}: {said}"
    else:
        said = short(response.text or response.reason or "no message", 200)
    if status == 401:
        fix = (
            "the service did not accept the job's OIDC token: check that `audience` matches "
            "the service's configured audience and that the service trusts this GitHub's issuer"
        )
    elif status == 403:
        fix = "the service does not accept leases from this repository; ask its operator"
    elif status == 429:
        fix = (
            "the lease service (or a proxy in front of it) is limiting the rate of requests; "
            "re-run the job later (runkeys waited and retried already)"
        )
    elif 400 <= status < 500:
        fix = "the service refused the request's content; the message above says which part"
    else:
        fix = "the lease service is failing; re-run the job later (runkeys retried already)"
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    raise LeaseServiceError(
        f"the lease service answered {status} while {doing}: {said}",
        status=status,
        code=code,
        fix=fix,
    )
