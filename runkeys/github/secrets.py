"""Actions secrets and the environments that hold them, for one repository
(https://docs.github.com/rest/actions/secrets).

The fewest calls GitHub allows, each through PyGithub's requester with a path of checked segments
(`runkeys.github.paths`): PyGithub's own methods read the public key once per secret, hide 201
from 204, and leave dot segments in paths. An environment is PUT only when missing."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from github import GithubException, UnknownObjectException
from github.PublicKey import PublicKey
from github.Repository import Repository
from github.Requester import Requester

from runkeys.github.errors import explain
from runkeys.github.pacing import InstallationPace
from runkeys.github.paths import environment_path, quote_path, repository_path
from runkeys.github.session import GitHubSession, Observer
from runkeys.leases import SecretTarget

# Per repository and per environment:
# https://docs.github.com/actions/security-guides/using-secrets-in-github-actions#limits-for-secrets
MAX_SECRETS_PER_SCOPE = 100
SECRET_SCOPE_PATH = "/repos/{owner}/{repo}/actions/secrets/{secret_name}"
ENV_SECRET_PATH = "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
ENV_PATH = "/repos/{owner}/{repo}/environments/{environment_name}"
ENV_RULES_PATH = f"{ENV_PATH}/deployment_protection_rules"


@dataclass(frozen=True)
class EnvironmentFacts:
    """What GitHub says of an environment that decides whether runkeys may delete it."""

    created_at: datetime
    protections: tuple[str, ...]  # e.g. "a wait timer", "required reviewers"; empty: none


def github_time(value: Any) -> datetime:
    """A GitHub timestamp (`2020-11-23T22:00:40Z`) as an aware datetime; ValueError if not."""
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed


def protections_of(environment: dict[str, Any], custom_rules: int) -> tuple[str, ...]:
    """Every protection an environment has: its rules (wait timer, reviewers, branch policy,
    any other type GitHub adds), its deployment branch policy, and custom protection rules."""
    found = []
    for rule in environment.get("protection_rules") or []:
        kind = str(rule.get("type", "unknown")) if isinstance(rule, dict) else "unknown"
        found.append(f"a {kind.replace('_', ' ')} protection rule")
    if environment.get("deployment_branch_policy") is not None:
        found.append("a deployment branch policy")
    if custom_rules:
        found.append(f"{custom_rules} custom deployment protection rule(s)")
    return tuple(found)


# What PyGithub's `create_environment` sends by default: no reviewers, timer or branch policy.
_UNPROTECTED = {
    "wait_timer": 0,
    "reviewers": [],
    "prevent_self_review": False,
    "deployment_branch_policy": None,
}


class WriteBudget:
    """At most `limit` writes in any `window` seconds: GitHub's secondary limit is 80
    content-creating requests a minute
    (https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits).
    Waits rather than fails."""

    def __init__(
        self,
        limit: int = 80,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit, self.window = limit, window
        self._clock, self._sleep = clock, sleep
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def spend(self) -> None:
        with self._lock:
            now = self._clock()
            # `t + window <= now`, never `now - t >= window`: in floats the two can disagree,
            # and the wait below must use the same test to be sure of a full window.
            while self._times and self._times[0] + self.window <= now:
                self._times.popleft()
            if len(self._times) >= self.limit:
                oldest = self._times.popleft()
                # Until a full window after the oldest: a sleep may end a rounding error early.
                while (remaining := oldest + self.window - now) > 0:
                    self._sleep(remaining)
                    now = self._clock()
            self._times.append(now)


class RepositoryCalls:
    """Calls about one repository through PyGithub's requester, each paced by its
    installation (or, unpaced, by the write budget)."""

    def __init__(
        self, session: GitHubSession, repository: str, *, budget: WriteBudget | None = None
    ) -> None:
        self.session = session
        self.repository = repository
        self.budget = budget or WriteBudget()  # when the session has no pacing
        self._keys: dict[str | None, PublicKey] = {}
        self._pace_of: tuple[InstallationPace | None] | None = None

    @property
    def repo(self) -> Repository:
        """PyGithub's lazy repository, its URL built of checked segments."""
        return self.session.repository(self.repository)

    @property
    def _requester(self) -> Requester:
        return self.session.github_for(self.repository).requester

    def _pace(self) -> InstallationPace | None:
        if self._pace_of is None:
            self._pace_of = (self.session.pace_for(self.repository),)
        return self._pace_of[0]

    @contextmanager
    def _paced(self, method: str) -> Iterator[Observer]:
        """Wait for the installation's pace (or, unpaced, the write budget) before a call;
        the body reports GitHub's answer to it."""
        write = method != "GET"
        pace = self._pace()
        if pace is None:
            if write:
                self.budget.spend()
            yield lambda status, headers: None
            return
        with pace.request(write=write) as answer:
            yield answer

    def _checked(self, method: str, url: str, **kwargs: Any) -> tuple[dict[str, Any], Any]:
        """PyGithub's `requestJsonAndCheck`, paced."""
        with self._paced(method) as answer:
            headers, data = self._requester.requestJsonAndCheck(method, url, **kwargs)
            answer(200, headers)
        return headers, data

    def _unchecked(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any], str]:
        """PyGithub's `requestJson` (the caller reads the status), paced."""
        with self._paced(method) as answer:
            status, headers, output = self._requester.requestJson(method, url, **kwargs)
            answer(status, headers)
        return status, headers, output

    def _fail(self, exc: GithubException, doing: str, method: str, path: str) -> Exception:
        return explain(exc, doing=doing, method=method, path=path, repository=self.repository)


class SecretStore(RepositoryCalls):
    """Secrets of one repository, in its repository scope or its environments."""

    def _scope_url(self, environment: str | None) -> str:
        if environment is None:
            return f"{repository_path(self.repository)}/actions/secrets"
        return f"{environment_path(self.repository, environment)}/secrets"

    # -- environments ----------------------------------------------------------------------

    def environment_exists(self, name: str) -> bool:
        # Not PyGithub's lazy `get_environment(name)`: it reads `name` from its own URL, so no
        # attribute access is sure to make the GET (2.10 answers `.name` without a request).
        url = environment_path(self.repository, name)
        return self._on_environment("GET", url, doing=f"reading environment {name}")

    def create_environment(self, name: str) -> None:
        """Create `name`; only call it for an environment that does not exist."""
        url = environment_path(self.repository, name)
        try:
            self._checked("PUT", url, input=_UNPROTECTED)
        except GithubException as exc:
            raise self._fail(exc, f"creating environment {name}", "PUT", ENV_PATH) from None

    def delete_environment(self, name: str) -> bool:
        """Delete `name`; False when it was already gone."""
        url = environment_path(self.repository, name)  # refuses a hostile name before spending
        return self._on_environment("DELETE", url, doing=f"deleting environment {name}")

    def _on_environment(self, method: str, url: str, *, doing: str) -> bool:
        """`method` on an environment's `url`: False when GitHub answers 404, else True."""
        try:
            self._checked(method, url)
        except UnknownObjectException:
            return False
        except GithubException as exc:
            raise self._fail(exc, doing, method, ENV_PATH) from None
        return True

    def environment_facts(self, name: str) -> EnvironmentFacts | None:
        """GitHub's `created_at` and protections of `name`; None when it does not exist.
        Docs: https://docs.github.com/rest/deployments/environments#get-an-environment and
        https://docs.github.com/rest/deployments/protection-rules"""
        url = environment_path(self.repository, name)
        try:
            _, data = self._checked("GET", url)
            _, rules = self._checked("GET", f"{url}/deployment_protection_rules")
        except UnknownObjectException:
            return None
        except GithubException as exc:
            raise self._fail(exc, f"reading environment {name}", "GET", ENV_PATH) from None
        try:
            created_at = github_time(data["created_at"])
            custom = int(rules.get("total_count") or 0)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._fail(
                GithubException(200, {"message": "an answer without created_at"}, {}),
                f"reading environment {name}",
                "GET",
                ENV_PATH,
            ) from None
        return EnvironmentFacts(created_at=created_at, protections=protections_of(data, custom))

    # -- secrets -----------------------------------------------------------------------------

    def secret_written_at(self, target: SecretTarget) -> datetime | None:
        """When GitHub says the secret was last written (`updated_at`); None when it does not
        exist. Docs: https://docs.github.com/rest/actions/secrets#get-a-repository-secret"""
        url = f"{self._scope_url(target.environment)}/{quote_path(target.name, what='secret')}"
        path = ENV_SECRET_PATH if target.environment else SECRET_SCOPE_PATH
        doing = f"reading secret {target.name}"
        try:
            _, data = self._checked("GET", url)
        except UnknownObjectException:
            return None
        except GithubException as exc:
            raise self._fail(exc, doing, "GET", path) from None
        try:
            return github_time(data["updated_at"])
        except (KeyError, TypeError, ValueError):
            raise self._fail(
                GithubException(200, {"message": "an answer without updated_at"}, {}),
                doing,
                "GET",
                path,
            ) from None

    def public_key(self, environment: str | None) -> PublicKey:
        if environment not in self._keys:
            url = f"{self._scope_url(environment)}/public-key"
            try:
                headers, data = self._checked("GET", url)
            except GithubException as exc:
                path = (ENV_SECRET_PATH if environment else SECRET_SCOPE_PATH).replace(
                    "{secret_name}", "public-key"
                )
                raise self._fail(exc, "reading the secrets' public key", "GET", path) from None
            self._keys[environment] = PublicKey(self._requester, headers, data, completed=True)
        return self._keys[environment]

    def names(self, environment: str | None) -> set[str]:
        """Names of the secrets in a scope, upper-cased (GitHub ignores case). One request:
        a scope holds at most 100."""
        url = self._scope_url(environment)
        try:
            _, data = self._checked("GET", url, parameters={"per_page": MAX_SECRETS_PER_SCOPE})
        except GithubException as exc:
            path = (ENV_SECRET_PATH if environment else SECRET_SCOPE_PATH).rsplit("/", 1)[0]
            raise self._fail(exc, "listing secrets", "GET", path) from None
        return {str(s["name"]).upper() for s in data.get("secrets", [])}

    def put(self, target: SecretTarget, value: str) -> bool:
        """Seal `value` to the scope's public key and write it; True when it was created."""
        url = f"{self._scope_url(target.environment)}/{quote_path(target.name, what='secret')}"
        key = self.public_key(target.environment)
        body = {"encrypted_value": key.encrypt(value), "key_id": str(key.key_id)}
        path = ENV_SECRET_PATH if target.environment else SECRET_SCOPE_PATH
        doing = f"writing secret {target.name}"
        try:
            # PyGithub's retry raises a refusal (a 403 that is no rate limit) by itself.
            status, headers, output = self._unchecked("PUT", url, input=body)
        except GithubException as exc:
            raise self._fail(exc, doing, "PUT", path) from None
        if status in (201, 204):
            return status == 201
        raise self._fail(_exception(status, headers, output), doing, "PUT", path)

    def delete(self, target: SecretTarget) -> bool:
        """Delete a secret; False when it was already gone."""
        url = f"{self._scope_url(target.environment)}/{quote_path(target.name, what='secret')}"
        path = ENV_SECRET_PATH if target.environment else SECRET_SCOPE_PATH
        doing = f"deleting secret {target.name}"
        try:
            status, headers, output = self._unchecked("DELETE", url)
        except GithubException as exc:
            raise self._fail(exc, doing, "DELETE", path) from None
        if status == 204:
            return True
        if status == 404:
            return False
        raise self._fail(_exception(status, headers, output), doing, "DELETE", path)


def _exception(status: int, headers: dict[str, str], output: str) -> GithubException:
    try:
        data = json.loads(output) if output else None
    except ValueError:
        data = {"message": output[:200]}
    return GithubException(status, data, headers)
