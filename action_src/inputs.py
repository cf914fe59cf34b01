"""The step's inputs and the run it belongs to, read from the environment the runner gives a
container action: `INPUT_<NAME>` with hyphens kept (`INPUT_REPOSITORY-SECRETS`), `GITHUB_*`,
`ACTIONS_ID_TOKEN_REQUEST_*`. Everything is checked here, before any side effect.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from runkeys.durations import format_duration, parse_duration
from runkeys.errors import ConfigError
from runkeys.names import (
    PlaceholderError,
    environment_name_problem,
    fill_placeholders,
    placeholders_of,
)

DEFAULT_API_URL = "https://api.github.com"

DEFAULT_TTL = "1h"
DEFAULT_MAX_TTL = "24h"
_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE", "")


def get_input(environ: Mapping[str, str], name: str) -> str:
    """An input as the runner passes it: `INPUT_` + the id upper-cased, spaces → `_`, hyphens
    kept (actions/runner `Handler.cs`). An input without a value and without a default is ''."""
    return environ.get(f"INPUT_{name.replace(' ', '_').upper()}", "").strip()


def get_bool(environ: Mapping[str, str], name: str) -> bool:
    raw = get_input(environ, name)
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"input `{name}`", f"{raw!r} is not a boolean", fix="use true or false")


def get_duration(environ: Mapping[str, str], name: str, default: str) -> timedelta:
    raw = get_input(environ, name) or default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"input `{name}`", str(exc)) from None


@dataclass(frozen=True)
class RunContext:
    """The workflow run the step belongs to."""

    repository: str
    run_id: str
    run_attempt: str = "1"
    run_number: str = ""
    event_name: str = ""
    pull_request: int | None = None

    @property
    def is_pull_request(self) -> bool | None:
        """Whether the run was triggered by a pull request; None when the event is unknown."""
        if not self.event_name:
            return None
        return self.pull_request is not None


def read_run(environ: Mapping[str, str]) -> RunContext:
    repository = environ.get("GITHUB_REPOSITORY", "")
    if repository.count("/") != 1 or not all(repository.split("/")):
        raise ConfigError(
            "GITHUB_REPOSITORY",
            f"{repository!r} is not owner/name",
            fix="runkeys runs as a step of a GitHub Actions job, which sets it",
        )
    event_name = environ.get("GITHUB_EVENT_NAME", "")
    return RunContext(
        repository=repository,
        run_id=environ.get("GITHUB_RUN_ID", ""),
        run_attempt=environ.get("GITHUB_RUN_ATTEMPT", "") or "1",
        run_number=environ.get("GITHUB_RUN_NUMBER", ""),
        event_name=event_name,
        pull_request=_pull_request_number(event_name, environ.get("GITHUB_EVENT_PATH", "")),
    )


def _pull_request_number(event_name: str, event_path: str) -> int | None:
    """The pull request of `pull_request*` events, from the event payload the runner wrote."""
    if not event_name.startswith("pull_request") or not event_path:
        return None
    try:
        with open(event_path, encoding="utf-8") as file:
            payload: Any = json.load(file)
    except (OSError, ValueError) as exc:
        raise ConfigError("GITHUB_EVENT_PATH", f"the event payload cannot be read: {exc}") from None
    number = (payload.get("pull_request") or {}).get("number") or payload.get("number")
    return number if isinstance(number, int) else None


def environment_name(template: str, run: RunContext) -> str:
    """The `environment` input with `{pr}`, `{run_id}`, `{run_attempt}`, `{run_number}` filled."""
    setting = "input `environment`"
    values: dict[str, str] = {
        "run_id": run.run_id,
        "run_attempt": run.run_attempt,
        "run_number": run.run_number,
        "pr": "" if run.pull_request is None else str(run.pull_request),
    }
    try:
        fields = placeholders_of(template)
    except PlaceholderError as exc:
        raise ConfigError(setting, exc.message, fix=exc.fix) from None
    for name in fields:
        if not values[name]:
            why = "a pull_request event" if name == "pr" else f"GITHUB_{name.upper()} to be set"
            raise ConfigError(
                setting,
                f"{{{name}}} needs {why}",
                fix="run this step only on pull_request events, or use {run_id}",
            )
    name = fill_placeholders(template, values)
    if problem := environment_name_problem(name):
        raise ConfigError(setting, f"{name!r}: {problem}")
    return name


@dataclass(frozen=True)
class Retries:
    """How long to keep trying GitHub and the service; tests shorten the waits."""

    github_retries: int = 5
    backoff: float = 0.5
    secondary_rate_wait: float = 60.0


def read_retries(environ: Mapping[str, str]) -> Retries:
    def number(variable: str, default: float) -> float:
        raw = environ.get(variable, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise ConfigError(variable, f"{raw!r} is not a number of seconds")
        return value

    return Retries(
        github_retries=int(number("RUNKEYS_GITHUB_RETRIES", 5)),
        backoff=number("RUNKEYS_RETRY_BACKOFF", 0.5),
        secondary_rate_wait=number("RUNKEYS_SECONDARY_RATE_WAIT", 60.0),
    )


@dataclass(frozen=True)
class GitHubSettings:
    """Where GitHub is and who to be there: an App, or a token."""

    api_url: str
    app_id: str = ""
    private_key: str = field(default="", repr=False)
    token: str = field(default="", repr=False)


def read_github(environ: Mapping[str, str]) -> GitHubSettings | None:
    """GitHub credentials: an App (`app-id` + `private-key`) or a `github-token`; None without."""
    app_id = get_input(environ, "app-id")
    private_key = get_input(environ, "private-key")
    token = get_input(environ, "github-token")
    if bool(app_id) != bool(private_key):
        given, missing = ("app-id", "private-key") if app_id else ("private-key", "app-id")
        raise ConfigError(
            f"input `{missing}`",
            f"is empty, but `{given}` is set",
            fix="give both `app-id` and `private-key` of the GitHub App",
        )
    if app_id and token:
        raise ConfigError(
            "input `github-token`",
            "is set together with `app-id`",
            fix="give either a GitHub App (`app-id`, `private-key`) or `github-token`, not both",
        )
    if not app_id and not token:
        return None
    if "\\n" in private_key and "\n" not in private_key:
        private_key = private_key.replace("\\n", "\n")  # a PEM pasted with escaped newlines
    return GitHubSettings(
        api_url=environ.get("GITHUB_API_URL", "") or DEFAULT_API_URL,
        app_id=app_id,
        private_key=private_key,
        token=token,
    )


@dataclass(frozen=True)
class ServiceSettings:
    url: str
    audience: str
    request_url: str | None = None
    request_token: str | None = field(default=None, repr=False)


def read_service(environ: Mapping[str, str]) -> ServiceSettings | None:
    url = get_input(environ, "service-url").rstrip("/")
    if not url:
        return None
    check_service_url(url)
    return ServiceSettings(
        url=url,
        audience=get_input(environ, "audience") or url,
        request_url=environ.get("ACTIONS_ID_TOKEN_REQUEST_URL") or None,
        request_token=environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN") or None,
    )


def check_service_url(url: str) -> None:
    """An https URL, or plain http to this machine only: the step sends the job's OIDC token
    there, which anyone on the way could read and present to the service while it is valid."""
    setting = "input `service-url`"
    try:
        parts = urllib.parse.urlsplit(url)
        scheme, host, _ = parts.scheme, parts.hostname, parts.port
    except ValueError:
        scheme, host = "", None
    if scheme not in ("https", "http") or not host:
        raise ConfigError(setting, f"{url!r} is not an http(s) URL with a host")
    if scheme == "http" and not _loopback(host):
        raise ConfigError(
            setting,
            f"plain http:// to {host}: the step sends the job's OIDC token to the service, and "
            "over plain HTTP anyone on the network path could read it and use it until it "
            "expires",
            fix="serve the runkeys service over https:// and use that URL; plain http:// is "
            "accepted only on this machine (127.0.0.0/8, ::1, localhost)",
        )


def _loopback(host: str) -> bool:
    if host == "localhost":  # `hostname` is lower-cased already
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, such as 127.0.0.1.example.com
        return False


def read_ttls(environ: Mapping[str, str]) -> tuple[timedelta, timedelta]:
    default_ttl = get_duration(environ, "default-ttl", DEFAULT_TTL)
    max_ttl = get_duration(environ, "max-ttl", DEFAULT_MAX_TTL)
    if default_ttl > max_ttl:
        raise ConfigError(
            "input `default-ttl`",
            f"{format_duration(default_ttl)} is longer than `max-ttl` ({format_duration(max_ttl)})",
            fix="lower `default-ttl` or raise `max-ttl`",
        )
    return default_ttl, max_ttl
