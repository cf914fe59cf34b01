"""Secret scanning alerts of one repository
(https://docs.github.com/rest/secret-scanning/secret-scanning): read one, with its `secret`
(https://docs.github.com/rest/secret-scanning/secret-scanning#get-a-secret-scanning-alert) or,
with `hide_secret=true`, only its state; and resolve one as revoked with a comment
(https://docs.github.com/rest/secret-scanning/secret-scanning#update-a-secret-scanning-alert).
Each call waits for the installation's pace, the PATCH as a write (`RepositoryCalls`).

The value is in what `read` returns and nowhere else: never in an error or a repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from github import GithubException

from runkeys.github.paths import repository_path
from runkeys.github.secrets import RepositoryCalls

ALERT_PATH = "/repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}"


@dataclass(frozen=True)
class FoundAlert:
    """An alert as read with its value: `secret` None when GitHub sent none (hidden)."""

    secret: str | None = field(repr=False)
    html_url: str


class SecretScanningAlerts(RepositoryCalls):
    def _call(self, method: str, number: int, doing: str, **kwargs: Any) -> dict[str, Any]:
        """GitHub's answer to `method` on alert `number`; an explained `GitHubError` if not
        2xx (GitHub's message only: never a request or a response body)."""
        url = f"{repository_path(self.repository)}/secret-scanning/alerts/{int(number)}"
        try:
            _, data = self._checked(method, url, **kwargs)
        except GithubException as exc:
            raise self._fail(
                exc, f"{doing} secret scanning alert {number}", method, ALERT_PATH
            ) from None
        return data if isinstance(data, dict) else {}

    def read(self, number: int) -> FoundAlert:
        """The alert with its value, and its address."""
        data = self._call("GET", number, "reading")
        secret = data.get("secret")
        return FoundAlert(secret if isinstance(secret, str) else None, str(data.get("html_url")))

    def state(self, number: int) -> str:
        """The alert's state (`open`, `resolved`), asked for without its value."""
        data = self._call("GET", number, "reading", parameters={"hide_secret": "true"})
        return str(data.get("state"))

    def resolve_revoked(self, number: int, comment: str) -> None:
        """Resolve the alert, resolution `revoked`, with `comment`. GitHub's answer, which
        carries the value, is dropped unread."""
        body = {"state": "resolved", "resolution": "revoked", "resolution_comment": comment}
        self._call("PATCH", number, "resolving", input=body)
