"""GitHub's refusals explained: which credential, permission or installation is missing.

Messages quote GitHub's own `message` (never a request body), plus the fix a person can act on.
"""

from __future__ import annotations

from typing import Any

from github import GithubException

from runkeys.errors import GitHubError
from runkeys.github.permissions import required
from runkeys.scrub import short

APP_PERMISSIONS_DOCS = (
    "https://docs.github.com/apps/maintaining-github-apps/modifying-a-github-app-registration"
)


def github_message(exc: GithubException) -> str:
    data: Any = exc.data
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = "; ".join(
                str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
                for e in errors
            )
            message = f"{message} ({details})" if message else details
        return short(message or "no message", 200)
    return short(str(data or "no message"), 200)


def retry_after(exc: GithubException) -> float | None:
    """GitHub's `Retry-After` in whole seconds (the form GitHub sends), or None: an HTTP date or
    a malformed value is not GitHub's and is ignored rather than guessed at."""
    value = str((exc.headers or {}).get("retry-after", "")).strip()
    return float(value) if value.isascii() and value.isdigit() else None


def explain(
    exc: GithubException,
    *,
    doing: str,
    method: str,
    path: str,
    repository: str | None = None,
) -> GitHubError:
    """A `GitHubError` for a failed call: cause with GitHub's message, and the fix."""
    status = exc.status
    where = f" on {repository}" if repository else ""
    cause = f"GitHub answered {status} while {doing}{where}: {github_message(exc)}"
    needs = required(method, path)
    needed = " and ".join(f"'{r.label()}'" for r in needs)
    if status == 401:
        fix = (
            "the credentials were refused or have expired: check `app-id` and `private-key` "
            "(or the token), and that the App's private key was not revoked"
        )
    elif status in (403, 404) and needs:
        fix = (
            f"this call needs the repository permission {needed}. Grant it in the GitHub App's "
            "settings, then accept the new permissions on the installation. A workflow's "
            "GITHUB_TOKEN cannot write secrets or environments at all: use a GitHub App"
        )
        if status == 404:
            fix = f"the repository may not exist, or the App is not installed on it, or {fix}"
    elif status == 404 and path.endswith("/installation"):
        fix = "install the GitHub App on this repository (or add the repository to it)"
    elif status == 422:
        fix = "GitHub refused the request's content; the message above says which part"
    elif status in (403, 429):
        fix = "a rate limit was hit and retries ran out; wait and re-run, or spread out runs"
    elif status >= 500:
        fix = "GitHub is failing; re-run the job later (runkeys retried already)"
    else:
        fix = ""
    return GitHubError(
        cause,
        status=status,
        fix=fix,
        docs=APP_PERMISSIONS_DOCS if needs else "",
        retry_after=retry_after(exc),
    )
