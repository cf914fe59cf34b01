"""The JSON GitHub answers with, built from the sandbox's state. Field sets follow the REST
description's schemas (`repository`, `minimal-repository`, `simple-user`, `installation`,
`integration`, `environment`, `deploy-key`, `workflow-run`, `secret-scanning-alert-with-metadata`);
URLs point back at the sandbox."""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import Any

from runkeys_sandbox.server.state import (
    Account,
    App,
    DeployKey,
    Environment,
    Installation,
    Repository,
    RunAttempt,
    Secret,
    SecretScanningAlert,
    WorkflowRun,
    iso,
    legacy_node_id,
)

# The templated URL fields of a repository, as GitHub lists them.
_REPO_URL_TEMPLATES = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def host_of(base: str) -> str:
    return urllib.parse.urlsplit(base).netloc


def account_json(account: Account, base: str) -> dict[str, Any]:
    url = f"{base}/users/{account.login}"
    return {
        "login": account.login,
        "id": account.id,
        "node_id": account.node_id,
        "avatar_url": f"{base}/_avatars/u/{account.id}?v=4",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{base}/{account.login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": account.type,
        "user_view_type": "public",
        "site_admin": False,
    }


def minimal_repository_json(repo: Repository, base: str) -> dict[str, Any]:
    url = f"{base}/repos/{repo.full_name}"
    data: dict[str, Any] = {
        "id": repo.id,
        "node_id": repo.node_id,
        "name": repo.name,
        "full_name": repo.full_name,
        "private": True,
        "owner": account_json(repo.account, base),
        "html_url": f"{base}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": url,
    }
    data.update({field: url + suffix for field, suffix in _REPO_URL_TEMPLATES.items()})
    host = host_of(base)
    data.update(
        {
            "git_url": f"git://{host}/{repo.full_name}.git",
            "ssh_url": f"git@{host}:{repo.full_name}.git",
            "clone_url": f"{base}/{repo.full_name}.git",
            "svn_url": f"{base}/{repo.full_name}",
            "mirror_url": None,
        }
    )
    return data


def repository_json(repo: Repository, base: str) -> dict[str, Any]:
    """The `repository` schema (full): what `GET /repos/{owner}/{repo}` and token grants show."""
    data = minimal_repository_json(repo, base)
    data.update(
        {
            "homepage": None,
            "language": None,
            "size": 0,
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "open_issues": 0,
            "open_issues_count": 0,
            "default_branch": repo.default_branch,
            "visibility": "private",
            "license": None,
            "topics": [],
            "is_template": False,
            "has_issues": True,
            "has_projects": True,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "allow_forking": False,
            "web_commit_signoff_required": False,
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.created_at),
            "pushed_at": iso(repo.created_at),
        }
    )
    return data


def public_key_json(key_id: str, key: str) -> dict[str, Any]:
    return {"key_id": key_id, "key": key}


def secret_json(secret: Secret) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": secret.name,
        "created_at": iso(secret.created_at),
        "updated_at": iso(secret.updated_at),
    }
    if secret.visibility is not None:
        data["visibility"] = secret.visibility
    return data


def environment_json(repo: Repository, env: Environment, base: str) -> dict[str, Any]:
    # GitHub's `url` carries the name as it is (a `/` stays a `/`); `html_url` encodes it.
    quoted = urllib.parse.quote(env.name, safe="")
    rules: list[dict[str, Any]] = []
    # Repeated on purpose: GitHub's protection rules, each its own JSON shape.
    if env.wait_timer:
        rules.append(
            {
                "id": env.rule_ids[0],
                "node_id": legacy_node_id("04", "Gate", env.rule_ids[0]),
                "type": "wait_timer",
                "wait_timer": env.wait_timer,
            }
        )
    if env.reviewers:
        rules.append(
            {
                "id": env.rule_ids[1],
                "node_id": legacy_node_id("04", "Gate", env.rule_ids[1]),
                "type": "required_reviewers",
                "prevent_self_review": env.prevent_self_review,
                "reviewers": [_reviewer_json(r, base) for r in env.reviewers],
            }
        )
    if env.deployment_branch_policy is not None:  # GitHub lists the policy as a rule too
        rules.append(
            {
                "id": env.rule_ids[2],
                "node_id": legacy_node_id("04", "Gate", env.rule_ids[2]),
                "type": "branch_policy",
            }
        )
    return {
        "id": env.id,
        "node_id": legacy_node_id("011", "Environment", env.id),
        "name": env.name,
        "url": f"{base}/repos/{repo.full_name}/environments/{env.name}",
        "html_url": f"{base}/{repo.full_name}/deployments/activity_log"
        f"?environments_filter={quoted}",
        "created_at": iso(env.created_at),
        "updated_at": iso(env.updated_at),
        "can_admins_bypass": True,
        "protection_rules": rules,
        "deployment_branch_policy": env.deployment_branch_policy,
    }


def custom_rule_json(rule: dict[str, Any], base: str) -> dict[str, Any]:
    """A custom deployment protection rule: an App that approves deployments."""
    ident, slug = int(rule["id"]), str(rule["app_slug"])
    return {
        "id": ident,
        "node_id": legacy_node_id("04", "DeploymentProtectionRule", ident),
        "enabled": True,
        "app": {
            "id": ident,
            "node_id": legacy_node_id("03", "Integration", ident),
            "slug": slug,
            "integration_url": f"{base}/apps/{slug}",
        },
    }


def _reviewer_json(reviewer: dict[str, Any], base: str) -> dict[str, Any]:
    ident = int(reviewer["id"])
    if reviewer["type"] == "User":
        user = Account(f"user-{ident}", ident, "User")
        return {"type": "User", "reviewer": account_json(user, base)}
    slug = f"team-{ident}"
    team_url = f"{base}/teams/{ident}"
    team = {
        "id": ident,
        "node_id": legacy_node_id("04", "Team", ident),
        "url": team_url,
        "html_url": f"{base}/orgs/teams/{slug}",
        "name": slug,
        "slug": slug,
        "description": None,
        "privacy": "closed",
        "permission": "pull",
        "members_url": f"{team_url}/members{{/member}}",
        "repositories_url": f"{team_url}/repos",
        "type": "organization",
        "parent": None,
    }
    return {"type": "Team", "reviewer": team}


def deploy_key_json(repo: Repository, key: DeployKey, base: str) -> dict[str, Any]:
    return {
        "id": key.id,
        "key": key.key,
        "url": f"{base}/repos/{repo.full_name}/keys/{key.id}",
        "title": key.title,
        "verified": True,
        "created_at": iso(key.created_at),
        "read_only": key.read_only,
        "added_by": key.added_by,
        "last_used": iso(key.last_used) if key.last_used is not None else None,
        "enabled": True,
    }


def secret_alert_json(
    repo: Repository, alert: SecretScanningAlert, base: str, *, secret: bool = True
) -> dict[str, Any]:
    """`secret-scanning-alert-with-metadata` (the REST answer), with `secret` unless the
    caller said `hide_secret=true`; `secret_alert_webhook_json` is what a delivery carries."""
    data = secret_alert_webhook_json(repo, alert, base)
    data["state"] = alert.state
    if secret:
        data["secret"] = alert.secret
    return data


def secret_alert_webhook_json(
    repo: Repository, alert: SecretScanningAlert, base: str
) -> dict[str, Any]:
    """`secret-scanning-alert-webhook`: a delivery never carries the secret."""
    url = f"{base}/repos/{repo.full_name}/secret-scanning/alerts/{alert.number}"
    return {
        "number": alert.number,
        "created_at": iso(alert.created_at),
        "updated_at": iso(alert.updated_at),
        "url": url,
        "html_url": f"{base}/{repo.full_name}/security/secret-scanning/{alert.number}",
        "locations_url": f"{url}/locations",
        "resolution": alert.resolution,
        "resolved_at": iso(alert.resolved_at) if alert.resolved_at is not None else None,
        "resolved_by": None if alert.resolved_by is None else account_json(alert.resolved_by, base),
        "resolution_comment": alert.resolution_comment,
        "secret_type": alert.secret_type,
        "secret_type_display_name": alert.secret_type_display_name,
        "validity": "unknown",
        "push_protection_bypassed": False,
        "push_protection_bypassed_by": None,
        "push_protection_bypassed_at": None,
        "push_protection_bypass_request_reviewer": None,
        "push_protection_bypass_request_reviewer_comment": None,
        "push_protection_bypass_request_comment": None,
        "push_protection_bypass_request_html_url": None,
        "publicly_leaked": alert.publicly_leaked,
        "multi_repo": False,
        "assigned_to": None,
    }


def app_json(app: App, base: str, installations: int) -> dict[str, Any]:
    return {
        "id": app.id,
        "slug": app.slug,
        "node_id": legacy_node_id("017", "Integration", app.id),
        "client_id": app.client_id,
        "owner": account_json(app.owner, base),
        "name": app.name,
        "description": "A GitHub App in the runkeys sandbox",
        "external_url": f"{base}/apps/{app.slug}",
        "html_url": f"{base}/apps/{app.slug}",
        "created_at": iso(app.created_at),
        "updated_at": iso(app.created_at),
        "permissions": dict(app.permissions),
        "events": list(app.events),
        "installations_count": installations,
    }


def installation_json(installation: Installation, base: str) -> dict[str, Any]:
    selection = "all" if installation.repository_ids is None else "selected"
    owner_path = "organizations/" if installation.account.type == "Organization" else ""
    return {
        "id": installation.id,
        "client_id": installation.app.client_id,
        "account": account_json(installation.account, base),
        "repository_selection": selection,
        "access_tokens_url": f"{base}/app/installations/{installation.id}/access_tokens",
        "repositories_url": f"{base}/installation/repositories",
        "html_url": f"{base}/{owner_path}{installation.account.login}/settings/installations/"
        f"{installation.id}",
        "app_id": installation.app.id,
        "app_slug": installation.app.slug,
        "target_id": installation.account.id,
        "target_type": installation.account.type,
        "permissions": dict(installation.permissions),
        "events": list(installation.events),
        "created_at": iso(installation.created_at),
        "updated_at": iso(installation.created_at),
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": iso(installation.suspended_at) if installation.suspended_at else None,
    }


def workflow_run_json(
    repo: Repository,
    run: WorkflowRun,
    attempt: RunAttempt,
    base: str,
    *,
    include_pull_requests: bool = True,
) -> dict[str, Any]:
    url = f"{base}/repos/{repo.full_name}/actions/runs/{run.id}"
    check_suite = run.id // 3
    actor = account_json(Account(run.actor, 583231, "User"), base)
    data: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "node_id": legacy_node_id("011", "WorkflowRun", run.id),
        "check_suite_id": check_suite,
        "check_suite_node_id": legacy_node_id("010", "CheckSuite", check_suite),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.path,
        "display_title": f"{run.name} on {run.head_branch}",
        "run_number": run.run_number,
        "run_attempt": attempt.number,
        "referenced_workflows": [],
        "event": run.event,
        "status": attempt.status,
        "conclusion": attempt.conclusion,
        "workflow_id": run.workflow_id,
        "url": url,
        "html_url": f"{base}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [_pull_request_json(repo, run, n, base) for n in run.pull_requests]
        if include_pull_requests
        else [],
        "created_at": iso(attempt.created_at),
        "updated_at": iso(attempt.updated_at),
        "actor": actor,
        "triggering_actor": actor,
        "run_started_at": iso(attempt.created_at),
        "jobs_url": f"{url}/jobs",
        "logs_url": f"{url}/logs",
        "check_suite_url": f"{base}/repos/{repo.full_name}/check-suites/{check_suite}",
        "artifacts_url": f"{url}/artifacts",
        "cancel_url": f"{url}/cancel",
        "rerun_url": f"{url}/rerun",
        "previous_attempt_url": f"{url}/attempts/{attempt.number - 1}"
        if attempt.number > 1
        else None,
        "workflow_url": f"{base}/repos/{repo.full_name}/actions/workflows/{run.workflow_id}",
        "head_commit": _head_commit_json(run),
        "repository": minimal_repository_json(repo, base),
        "head_repository": minimal_repository_json(repo, base),
    }
    return data


def _pull_request_json(
    repo: Repository, run: WorkflowRun, number: int, base: str
) -> dict[str, Any]:
    repo_ref = {"id": repo.id, "url": f"{base}/repos/{repo.full_name}", "name": repo.name}
    return {
        "id": repo.id * 1000 + number,
        "number": number,
        "url": f"{base}/repos/{repo.full_name}/pulls/{number}",
        "head": {"ref": run.head_branch, "sha": run.head_sha, "repo": repo_ref},
        "base": {"ref": repo.default_branch, "sha": _sha(f"base:{repo.id}"), "repo": repo_ref},
    }


def _head_commit_json(run: WorkflowRun) -> dict[str, Any]:
    person = {"name": run.actor, "email": f"{run.actor}@users.noreply.sandbox"}
    return {
        "id": run.head_sha,
        "tree_id": _sha(f"tree:{run.head_sha}"),
        "message": f"Commit {run.head_sha[:7]}",
        "timestamp": iso(run.attempts[min(run.attempts)].created_at),
        "author": person,
        "committer": person,
    }


def _sha(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def rate_limit_json(limit: int, remaining: int, reset: int, used: int) -> dict[str, Any]:
    core = {
        "limit": limit,
        "remaining": remaining,
        "reset": reset,
        "used": used,
        "resource": "core",
    }
    others = {
        name: {"limit": size, "remaining": size, "reset": reset, "used": 0, "resource": name}
        for name, size in (
            ("search", 30),
            ("graphql", 5000),
            ("integration_manifest", 5000),
            ("code_search", 10),
        )
    }
    return {"resources": {"core": core, **others}, "rate": core}
