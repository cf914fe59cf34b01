"""`runkeys sandbox complete-run` and `close-pr`: another shell asks the running stand-in (its
URL from GITHUB_API_URL, as `. FILE` exported it) through its control API
(runkeys_sandbox/server/control.py), and says what the service answered to the delivery. Prints
no secret: the stand-in's answer holds none."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

import requests

from runkeys.errors import ConfigError, RunkeysError

TIMEOUT = 30.0  # the stand-in waits up to 10 s for the service's answer to its delivery


class SandboxControlError(RunkeysError):
    title = "The sandbox could not do it"


def _api_url(environ: Mapping[str, str]) -> str:
    url = environ.get("GITHUB_API_URL", "").strip().rstrip("/")
    if not url:
        raise ConfigError(
            "GITHUB_API_URL",
            "is not set, so the running sandbox cannot be found",
            fix="source the file `runkeys sandbox --env-file FILE` wrote: . ./FILE",
        )
    return url


def _post(environ: Mapping[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"{_api_url(environ)}/_sandbox/{path}"
    try:
        answer = requests.post(url, json=body, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise SandboxControlError(
            f"no sandbox answered at {url} ({type(exc).__name__}); is `runkeys sandbox` running?"
        ) from None
    try:
        data = answer.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SandboxControlError(f"{url} answered {answer.status_code}, not the sandbox's JSON")
    if answer.status_code >= 400:
        raise SandboxControlError(str(data.get("message") or f"status {answer.status_code}"))
    return data


def _report(what: str, event: str, data: dict[str, Any], out: TextIO) -> int:
    """`what` happened; then what became of the delivery. 1 when it was sent and failed."""
    delivery = data.get("delivery") or {}
    print(what, file=out)
    if not delivery.get("sent"):
        print(f"Nothing delivered: {delivery.get('reason', 'unknown')}.", file=out)
        return 0
    if "error" in delivery:
        print(f"Delivering {event} to {delivery['url']} failed: {delivery['error']}.", file=out)
        return 1
    status = delivery.get("status")
    body = json.dumps(delivery.get("body"), separators=(", ", ": "))
    print(f"Delivered {event} to {delivery['url']}: the service answered {status} {body}", file=out)
    return 0 if isinstance(status, int) and 200 <= status < 300 else 1


def complete_run(
    environ: Mapping[str, str], run_id: int | None, conclusion: str, out: TextIO
) -> int:
    if run_id is None:
        text = environ.get("GITHUB_RUN_ID", "").strip()
        if not text.isdigit():
            raise ConfigError("--run", "no run named, and GITHUB_RUN_ID is not set", fix="--run ID")
        run_id = int(text)
    data = _post(environ, f"runs/{run_id}/complete", {"conclusion": conclusion})
    what = f"Run {run_id} of {data['repository']} completed ({data['conclusion']})."
    return _report(what, "workflow_run completed", data, out)


def close_pull_request(
    environ: Mapping[str, str], number: int, merged: bool, repository: str | None, out: TextIO
) -> int:
    body: dict[str, Any] = {"merged": merged}
    if repository is not None:
        body["repository"] = repository
    data = _post(environ, f"pulls/{number}/close", body)
    how = "merged" if data.get("merged") else "closed"
    what = f"Pull request #{number} of {data['repository']} {how}."
    return _report(what, "pull_request closed", data, out)
