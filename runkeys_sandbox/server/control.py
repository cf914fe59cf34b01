"""The stand-in's own control API under `/_sandbox/`: not GitHub's, and served by no GitHub. It
does what happens on GitHub outside its REST API — a run ends, a pull request is closed, someone
creates an App from a manifest in the browser — and, for the first two, sends the App's webhook
the signed delivery GitHub would send (`Sandbox.webhook_url`). `runkeys sandbox complete-run`
and `close-pr` call it; the stand-in listens on loopback only.

    POST /_sandbox/runs/{run_id}/complete  {"conclusion": "success"}
    POST /_sandbox/runs/{run_id}/logs      {"jobs": {"ci": [{"step": "Test", "log": "…"}]},
                                            "run_attempt": 2}  (optional: the latest attempt)
    GET  /_sandbox/run-logs/{token}        the archive GET …/runs/{run_id}/logs redirects to
    POST /_sandbox/pulls/{number}/close    {"merged": false, "repository": "octo/app"}
    POST /_sandbox/app-manifests           {"manifest": {...}, "owner": "octo"} → {"code": …}
    POST /_sandbox/repos/{owner}/{repo}/secret-scanning/alerts  {"secret": "rk_…"}
                                           → {"number": …, "delivery": …}

Each answers JSON but the archive; `complete`, `close` and the alert say what was delivered
(`delivery`: the URL, the status and body the service answered, or why nothing was sent).
Errors are `{"message": …}` with 400, 404 or 409."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import requests

from runkeys_sandbox.server import payloads
from runkeys_sandbox.server.payloads import (
    pull_request_closed,
    secret_scanning_alert,
    workflow_run_completed,
)
from runkeys_sandbox.server.routing import Reply, split_path
from runkeys_sandbox.server.runlogs import downloaded
from runkeys_sandbox.server.runs import CONCLUSIONS
from runkeys_sandbox.server.state import (
    App,
    Installation,
    Repository,
    SecretScanningAlert,
    WorkflowRun,
)


class Stand(payloads.Stand, Protocol):
    """What the control API uses of the stand-in (a `Sandbox`, which imports this module)."""

    @property
    def webhook_url(self) -> str | None: ...

    def deliver(
        self, url: str, event: str, payload: Any, *, app: App | None = None
    ) -> requests.Response: ...

    def manifest_code(self, manifest: dict[str, Any], owner: str = ...) -> str: ...

    def set_run_logs(
        self,
        repo: Repository | str,
        run_id: int,
        jobs: Mapping[str, Sequence[tuple[str, str]]],
        run_attempt: int | None = None,
    ) -> None: ...

    def set_run_status(
        self,
        repo: Repository | str,
        run_id: int,
        status: str,
        conclusion: str | None = None,
        run_attempt: int | None = None,
    ) -> None: ...

    def raise_secret_alert(
        self, repo: Repository | str, secret: str, *, publicly_leaked: bool = ...
    ) -> SecretScanningAlert: ...


PREFIX = "/_sandbox/"
DOCS = "runkeys_sandbox/server/control.py"


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"message": message, "documentation_url": DOCS})


def _body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ControlError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "the body is not a JSON object")
    return body


def _number(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise ControlError(404, f"no {what} {text!r}")
    return int(text)


class Control:
    """Answers `/_sandbox/…` for `sandbox`; deliveries are sent without the world's lock held,
    since the service may call the stand-in back while it answers."""

    def __init__(self, sandbox: Stand) -> None:
        self.sandbox = sandbox

    def __call__(self, method: str, path: str, raw_body: bytes) -> Reply:  # noqa: PLR0911 (a call each)
        segments = split_path(path)[1:]
        if method == "GET" and len(segments) == 2 and segments[0] == "run-logs":
            return self.download(segments[1])
        try:
            body = _body(raw_body)
            if method == "POST" and len(segments) == 3 and segments[::2] == ["runs", "complete"]:
                return self.complete_run(_number(segments[1], "run"), body)
            if method == "POST" and len(segments) == 3 and segments[::2] == ["runs", "logs"]:
                return self.set_logs(_number(segments[1], "run"), body)
            if method == "POST" and len(segments) == 3 and segments[::2] == ["pulls", "close"]:
                return self.close_pull_request(_number(segments[1], "pull request"), body)
            if method == "POST" and segments == ["app-manifests"]:
                return self.manifest_code(body)
            alerts = len(segments) == 5 and segments[::3] == ["repos", "secret-scanning"]
            if method == "POST" and alerts and segments[4] == "alerts":
                return self.raise_alert(segments[1], segments[2], body)
        except ControlError as error:
            return _error(error.status, error.message)
        return _error(404, f"the stand-in's control API has no {method} {path}")

    # -- the run ends -------------------------------------------------------------------------

    def complete_run(self, run_id: int, body: dict[str, Any]) -> Reply:
        conclusion = body.get("conclusion", "success")
        if conclusion not in CONCLUSIONS:
            raise ControlError(400, f"conclusion must be one of {', '.join(CONCLUSIONS)}")
        sandbox = self.sandbox
        with sandbox.world.lock:
            repo, run = self._run(run_id)
            if run.latest.status == "completed":
                raise ControlError(409, f"run {run_id} is completed already")
            sandbox.set_run_status(repo, run_id, "completed", conclusion)
            installation = self._installation(repo)
            payload = (
                None
                if installation is None
                else workflow_run_completed(sandbox, repo, run_id, installation)
            )
        answer = {"run_id": run_id, "conclusion": conclusion, "repository": repo.full_name}
        answer["delivery"] = self._deliver("workflow_run", payload, installation)
        return Reply(200, answer)

    def download(self, token: str) -> Reply:
        """The archive behind the short-lived URL GitHub's GET of a run's logs points to."""
        data = downloaded(self.sandbox.world, token)
        if data is None:
            return _error(404, "no such download, or it expired")
        return Reply(200, data, {"Content-Type": "application/zip"})

    def set_logs(self, run_id: int, body: dict[str, Any]) -> Reply:
        jobs = body.get("jobs")
        if not isinstance(jobs, dict) or not jobs:
            raise ControlError(400, "jobs must be an object: job name → its steps")
        made: dict[str, list[tuple[str, str]]] = {}
        for job, steps in jobs.items():
            if not isinstance(steps, list) or not all(
                isinstance(s, dict)
                and isinstance(s.get("step"), str)
                and isinstance(s.get("log"), str)
                for s in steps
            ):
                raise ControlError(400, f"job {job!r}: each step is {{'step': name, 'log': text}}")
            made[job] = [(s["step"], s["log"]) for s in steps]
        attempt = body.get("run_attempt")
        if attempt is not None and (type(attempt) is not int or attempt < 1):
            raise ControlError(400, "run_attempt must be a positive integer")
        with self.sandbox.world.lock:
            repo, _ = self._run(run_id)
            try:
                self.sandbox.set_run_logs(repo, run_id, made, attempt)
            except ValueError as exc:
                raise ControlError(400, str(exc)) from None
        steps = sum(len(s) for s in made.values())
        return Reply(200, {"run_id": run_id, "jobs": len(made), "steps": steps})

    def _run(self, run_id: int) -> tuple[Repository, WorkflowRun]:
        for repo in self.sandbox.world.repositories.values():
            if run_id in repo.runs:
                return repo, repo.runs[run_id]
        raise ControlError(404, f"no run {run_id} in the stand-in")

    # -- a pull request closes ----------------------------------------------------------------

    def close_pull_request(self, number: int, body: dict[str, Any]) -> Reply:
        merged = body.get("merged", False)
        if not isinstance(merged, bool):
            raise ControlError(400, "merged must be true or false")
        sandbox = self.sandbox
        with sandbox.world.lock:
            repo = self._pull_request_repository(number, body.get("repository"))
            installation = self._installation(repo)
            payload = (
                None
                if installation is None
                else pull_request_closed(sandbox, repo, number, installation, merged=merged)
            )
        answer: dict[str, Any] = {"number": number, "repository": repo.full_name, "merged": merged}
        answer["delivery"] = self._deliver("pull_request", payload, installation)
        return Reply(200, answer)

    def _pull_request_repository(self, number: int, name: object) -> Repository:
        """The repository named, or the one whose runs name pull request `number`."""
        world = self.sandbox.world
        if name is not None:
            owner, _, repo_name = str(name).partition("/")
            repo = world.repository(owner, repo_name)
            if repo is None:
                raise ControlError(404, f"no repository {name!r} in the stand-in")
            return repo
        having = [r for r in world.repositories.values() if _names(r, number)]
        if len(having) != 1:
            where = "no run names it" if not having else "runs of several repositories name it"
            raise ControlError(
                404 if not having else 409,
                f"pull request #{number}: {where}; say which repository",
            )
        return having[0]

    # -- secret scanning finds a secret --------------------------------------------------------

    def raise_alert(self, owner: str, name: str, body: dict[str, Any]) -> Reply:
        """An alert on `secret` in the repository, and its `secret_scanning_alert` delivery
        (`created`; `publicly_leaked` when the body says so). The answer never repeats it."""
        secret, leaked = body.get("secret"), body.get("publicly_leaked", False)
        if not isinstance(secret, str) or not secret:
            raise ControlError(400, "secret must be a non-empty string")
        if not isinstance(leaked, bool):
            raise ControlError(400, "publicly_leaked must be true or false")
        sandbox = self.sandbox
        with sandbox.world.lock:
            repo = sandbox.world.repository(owner, name)
            if repo is None:
                raise ControlError(404, f"no repository {owner}/{name} in the stand-in")
            alert = sandbox.raise_secret_alert(repo, secret, publicly_leaked=leaked)
            installation = self._installation(repo)
            action = "publicly_leaked" if leaked else "created"
            payload = (
                None
                if installation is None
                else secret_scanning_alert(sandbox, repo, alert, installation, action=action)
            )
        answer: dict[str, Any] = {"number": alert.number, "repository": repo.full_name}
        answer["delivery"] = self._deliver("secret_scanning_alert", payload, installation)
        return Reply(201, answer)

    # -- an App from a manifest ---------------------------------------------------------------

    def manifest_code(self, body: dict[str, Any]) -> Reply:
        """What the browser gets back in GitHub's redirect once the user created the App."""
        manifest, owner = body.get("manifest"), body.get("owner", "runkeys-sandbox")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("url"), str):
            raise ControlError(400, "manifest must be an object with at least `url`")
        if not isinstance(owner, str) or not owner.strip():
            raise ControlError(400, "owner must be an account's login")
        return Reply(201, {"code": self.sandbox.manifest_code(manifest, owner.strip())})

    # -- delivering -----------------------------------------------------------------------------

    def _installation(self, repo: Repository) -> Installation | None:
        """The installation of the App whose webhook hears about `repo` (the first App's)."""
        world = self.sandbox.world
        apps: list[App] = sorted(world.apps.values(), key=lambda a: a.id)
        for app in apps:
            installation = world.installation_for(app, repo)
            if installation is not None:
                return installation
        return None

    def _deliver(
        self, event: str, payload: dict[str, Any] | None, installation: Installation | None
    ) -> dict[str, Any]:
        url = self.sandbox.webhook_url
        if url is None:
            return {"sent": False, "reason": "no webhook URL (runkeys sandbox --webhook-url)"}
        if payload is None or installation is None:
            return {"sent": False, "reason": "no App is installed on the repository"}
        try:
            answer = self.sandbox.deliver(url, event, payload, app=installation.app)
        except requests.RequestException as exc:
            return {"sent": True, "url": url, "error": type(exc).__name__}
        try:
            answered: Any = answer.json()
        except ValueError:
            answered = answer.text[:500]
        return {"sent": True, "url": url, "status": answer.status_code, "body": answered}


def _names(repo: Repository, number: int) -> bool:
    return any(number in run.pull_requests for run in repo.runs.values())
