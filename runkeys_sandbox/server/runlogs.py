"""A run's log archive as GitHub makes it
(https://docs.github.com/rest/actions/workflow-runs#download-workflow-run-logs): a zip holding
`<n>_<job>.txt` for each job (its steps' lines one after another) and `<job>/<n>_<step>.txt` for
each step, every line starting with its time in UTC, 7 digits of fractions."""

from __future__ import annotations

import io
import secrets
import zipfile
from datetime import UTC, datetime

from runkeys_sandbox.server.state import RunLogs, World

DOWNLOAD_PATH = "/_sandbox/run-logs/"  # where the 302 points: not GitHub's API, like GitHub's
DOWNLOAD_SECONDS = 60  # "This link expires after 1 minute" (the operation's description)
_UNSAFE = str.maketrans(dict.fromkeys('/\\:*?"<>|', "_"))


def _stamped(text: str, at: float) -> str:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return "".join(f"{stamp} {line}\n" for line in text.splitlines())


def archive(logs: RunLogs) -> bytes:
    """The zip of `logs`: job files and step files, names made safe as paths."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as made:
        for number, (job, steps) in enumerate(logs.jobs.items(), 1):
            folder = job.translate(_UNSAFE)
            whole = ""
            for index, (step, text) in enumerate(steps, 1):
                stamped = _stamped(text, logs.at)
                whole += stamped
                made.writestr(f"{folder}/{index}_{step.translate(_UNSAFE)}.txt", stamped)
            made.writestr(f"{number}_{folder}.txt", whole)
    return buffer.getvalue()


def download_token(world: World, repository_id: int, run_id: int, attempt: int) -> str:
    """A token for the download URL of one attempt's logs, good for a minute (callers hold the
    world lock)."""
    now = world.now()
    for token, (*_, expires) in list(world.log_downloads.items()):
        if expires < now:
            del world.log_downloads[token]
    token = secrets.token_urlsafe(24)
    world.log_downloads[token] = (repository_id, run_id, attempt, now + DOWNLOAD_SECONDS)
    return token


def downloaded(world: World, token: str) -> bytes | None:
    """The archive a live token is for; None for an unknown or expired token, or logs gone."""
    with world.lock:
        found = world.log_downloads.get(token)
        if found is None or found[3] < world.now():
            return None
        repository_id, run_id, attempt, _ = found
        for repo in world.repositories.values():
            if repo.id == repository_id and run_id in repo.runs:
                logs = repo.runs[run_id].logs.get(attempt)
                return None if logs is None or logs.deleted else archive(logs)
    return None
