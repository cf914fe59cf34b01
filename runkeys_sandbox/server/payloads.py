"""The webhook payloads GitHub sends an App when a sandbox run completes, a pull request
closes or secret scanning raises an alert, built from the sandbox's own state in the shape of
GitHub's deliveries (the official webhook schemas `workflow-run-completed`,
`pull-request-closed` and `secret-scanning-alert-created`; tests check them).
`Sandbox.deliver` signs them with the App's webhook secret, as GitHub would."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

from runkeys_sandbox.server.representations import (
    account_json,
    repository_json,
    secret_alert_webhook_json,
    workflow_run_json,
)
from runkeys_sandbox.server.state import (
    Account,
    Installation,
    Repository,
    SecretScanningAlert,
    World,
    iso,
    legacy_node_id,
)


class Stand(Protocol):
    """What a payload reads of the running stand-in (a `Sandbox`, which imports this module)."""

    @property
    def url(self) -> str: ...

    @property
    def world(self) -> World: ...

    @property
    def clock(self) -> Callable[[], float]: ...


SENDER = Account("octocat", 583231, "User")


def _installation(installation: Installation) -> dict[str, Any]:
    # Deliveries to an App carry the installation's id and node id only.
    return {
        "id": installation.id,
        "node_id": legacy_node_id("023", "Integration Installation", installation.id),
    }


def workflow_run_completed(
    sandbox: Stand,
    repo: Repository,
    run_id: int,
    installation: Installation,
    *,
    attempt: int | None = None,
) -> dict[str, Any]:
    """`workflow_run` `completed` for an attempt of `run_id` (default: the latest), as it
    stands in the sandbox: complete it first with `set_run_status`."""
    base = sandbox.url
    with sandbox.world.lock:
        run = repo.runs[run_id]
        attempt_state = run.attempts[attempt] if attempt is not None else run.latest
        if attempt_state.status != "completed":
            raise ValueError(
                f"run {run_id} attempt {attempt_state.number} is {attempt_state.status}"
            )
        workflow_run = workflow_run_json(repo, run, attempt_state, base)
        workflow_url = f"{base}/repos/{repo.full_name}/actions/workflows/{run.workflow_id}"
        workflow = {
            "badge_url": f"{base}/{repo.full_name}/workflows/{run.name}/badge.svg",
            "created_at": iso(attempt_state.created_at),
            "html_url": f"{base}/{repo.full_name}/blob/{repo.default_branch}/{run.path}",
            "id": run.workflow_id,
            "name": run.name,
            "node_id": legacy_node_id("008", "Workflow", run.workflow_id),
            "path": run.path,
            "state": "active",
            "updated_at": iso(attempt_state.updated_at),
            "url": workflow_url,
        }
        return {
            "action": "completed",
            "workflow_run": workflow_run,
            "workflow": workflow,
            "repository": repository_json(repo, base),
            "sender": account_json(SENDER, base),
            "installation": _installation(installation),
        }


# Repeated on purpose: alike only in layout (one parameter a line) with representations.py.
def pull_request_closed(
    sandbox: Stand,
    repo: Repository,
    number: int,
    installation: Installation,
    *,
    merged: bool = False,
) -> dict[str, Any]:
    """`pull_request` `closed` for pull request `number` of `repo` (its head is the newest
    sandbox run that names it)."""
    base = sandbox.url
    with sandbox.world.lock:
        runs = [r for r in repo.runs.values() if number in r.pull_requests]
        head_ref = runs[-1].head_branch if runs else f"pr-{number}"
        head_sha = runs[-1].head_sha if runs else _sha(f"head:{repo.id}:{number}")
        created = min((r.attempts[min(r.attempts)].created_at for r in runs), default=0.0)
        closed = sandbox.clock()
        return {
            "action": "closed",
            "number": number,
            "pull_request": _pull_request(
                repo,
                number,
                base,
                head=(head_ref, head_sha),
                times=(created, closed),
                merged=merged,
            ),
            "repository": repository_json(repo, base),
            "sender": account_json(SENDER, base),
            "installation": _installation(installation),
        }


def secret_scanning_alert(
    sandbox: Stand,
    repo: Repository,
    alert: SecretScanningAlert,
    installation: Installation,
    *,
    action: str = "created",
) -> dict[str, Any]:
    """`secret_scanning_alert` (`created`, `publicly_leaked`, `reopened`, …) for `alert`: like
    GitHub's, it carries no secret; an App fetches the alert to read it."""
    base = sandbox.url
    with sandbox.world.lock:
        return {
            "action": action,
            "alert": secret_alert_webhook_json(repo, alert, base),
            "repository": repository_json(repo, base),
            "sender": account_json(SENDER, base),
            "installation": _installation(installation),
        }


def _sha(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def _pull_request(
    repo: Repository,
    number: int,
    base: str,
    *,
    head: tuple[str, str],
    times: tuple[float, float],
    merged: bool,
) -> dict[str, Any]:
    api = f"{base}/repos/{repo.full_name}"
    html = f"{base}/{repo.full_name}/pull/{number}"
    user = account_json(SENDER, base)
    ident = repo.id * 1000 + number
    head_ref, head_sha = head
    created, closed = times

    def branch(ref: str, sha: str) -> dict[str, Any]:
        return {
            "label": f"{repo.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": account_json(repo.account, base),
            "repo": repository_json(repo, base),
        }

    links = {
        name: {"href": href}
        for name, href in (
            ("self", f"{api}/pulls/{number}"),
            ("html", html),
            ("issue", f"{api}/issues/{number}"),
            ("comments", f"{api}/issues/{number}/comments"),
            ("review_comments", f"{api}/pulls/{number}/comments"),
            ("review_comment", f"{api}/pulls/comments{{/number}}"),
            ("commits", f"{api}/pulls/{number}/commits"),
            ("statuses", f"{api}/statuses/{head_sha}"),
        )
    }
    return {
        "url": f"{api}/pulls/{number}",
        "id": ident,
        "node_id": legacy_node_id("011", "PullRequest", ident),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": f"{api}/issues/{number}",
        "number": number,
        "state": "closed",
        "locked": False,
        "title": f"Pull request {number}",
        "user": user,
        "body": None,
        "created_at": iso(created),
        "updated_at": iso(closed),
        "closed_at": iso(closed),
        "merged_at": iso(closed) if merged else None,
        "merge_commit_sha": _sha(f"merge:{ident}") if merged else None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "labels": [],
        "milestone": None,
        "commits_url": f"{api}/pulls/{number}/commits",
        "review_comments_url": f"{api}/pulls/{number}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{number}/comments",
        "statuses_url": f"{api}/statuses/{head_sha}",
        "head": branch(head_ref, head_sha),
        "base": branch(repo.default_branch, _sha(f"base:{repo.id}")),
        "_links": links,
        "author_association": "MEMBER",
        "auto_merge": None,
        "active_lock_reason": None,
        "draft": False,
        "merged": merged,
        "mergeable": None,
        "rebaseable": None,
        "mergeable_state": "unknown",
        "merged_by": user if merged else None,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": 1,
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
    }
