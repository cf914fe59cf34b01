"""A workflow run's logs, for one repository: one attempt's
(https://docs.github.com/rest/actions/workflow-runs#download-workflow-run-attempt-logs; the
run's own GET serves only the latest attempt's, another one's once a re-run started). GitHub
answers the GET with a 302 to a short-lived download URL of a zip archive, which is fetched
without the App's token (it is signed itself), up to a size cap; and the run's logs, every
attempt's, can be deleted (Actions: write,
https://docs.github.com/rest/actions/workflow-runs#delete-workflow-run-logs)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from github import GithubException

from runkeys.github.paths import repository_path
from runkeys.github.secrets import RepositoryCalls
from runkeys.http_session import backoff, session

RUN_LOGS_PATH = "/repos/{owner}/{repo}/actions/runs/{run_id}/logs"
ATTEMPT_LOGS_PATH = "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}/logs"
CHUNK = 1 << 16
_GONE = (404, 410)  # no logs (yet, or any more), or no such run


class ArchiveTooLargeError(Exception):
    """The archive is larger than the cap: nothing of it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the log archive is larger than {limit} bytes")
        self.limit = limit


class RunLogs(RepositoryCalls):
    def _call(
        self, method: str, run_id: int, attempt: int | None, doing: str, *, expect: int
    ) -> dict[str, Any] | None:
        """The headers of GitHub's answer when it is `expect`; None for 404 or 410 (no logs, or
        no such run or attempt); an explained `GitHubError` for anything else."""
        run = f"{repository_path(self.repository)}/actions/runs/{int(run_id)}"
        if attempt is None:
            path, template = f"{run}/logs", RUN_LOGS_PATH
        else:
            path, template = f"{run}/attempts/{int(attempt)}/logs", ATTEMPT_LOGS_PATH
        try:
            status, headers, output = self._unchecked(method, path)
        except GithubException as exc:  # PyGithub's retry raises some refusals itself
            if exc.status in _GONE:
                return None
            raise self._fail(exc, doing, method, template) from None
        if status == expect:
            return headers
        if status in _GONE:
            return None
        answer = GithubException(status, output, headers)
        raise self._fail(answer, doing, method, template)

    def archive_url(self, run_id: int, attempt: int) -> str | None:
        """Where to download the log archive of the run's `attempt`; None when GitHub has none
        (404, 410)."""
        doing = f"asking for the logs of the run's attempt {int(attempt)}"
        headers = self._call("GET", run_id, attempt, doing, expect=302)
        if headers is None:
            return None
        location = {k.lower(): v for k, v in headers.items()}.get("location")
        if not location:
            raise ValueError("GitHub's redirect to the run's logs names no location")
        return str(location)

    def delete(self, run_id: int) -> bool:
        """Delete the run's logs; False when there were none."""
        return self._call("DELETE", run_id, None, "deleting the run's logs", expect=204) is not None

    def download(self, url: str, *, max_bytes: int, timeout: float = 60.0) -> bytes:
        """The archive at `url` (from `archive_url`), refused past `max_bytes`. Over HTTPS, or
        over HTTP only from the host the API is on (a stand-in on loopback)."""
        target = urllib.parse.urlsplit(url)
        api = urllib.parse.urlsplit(self.session.config.api_url)
        if target.scheme != "https" and (target.scheme, target.hostname) != (
            "http",
            api.hostname,
        ):
            raise ValueError("GitHub's download URL for the logs is not an HTTPS URL")
        http = session(backoff(3, factor=1.0, cap=10.0))
        with http, http.get(url, stream=True, timeout=timeout) as answer:
            answer.raise_for_status()
            declared = answer.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ArchiveTooLargeError(max_bytes)
            data = bytearray()
            for chunk in answer.iter_content(CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise ArchiveTooLargeError(max_bytes)
        return bytes(data)
