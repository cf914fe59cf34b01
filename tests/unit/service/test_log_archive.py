"""Reading a run's log archive (`handler.logscan.scan_archive`): step logs by job and step, a
job's own log only when it has no step logs, the text cap held however far the zip expands,
and the download URL refused unless it is HTTPS (or the stand-in's own host)."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

import pytest

from handler.logscan import scan_archive
from runkeys.github.runlogs import RunLogs
from runkeys.github.session import GitHubConfig, GitHubSession

STAMP = "2026-12-07T05:00:00.0000000Z "
KEY = "rk_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4" + "zzzzzz"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as made:
        for name, text in files.items():
            made.writestr(name, text)
    return buffer.getvalue()


def test_each_step_log_is_read_and_a_jobs_own_log_only_without_steps() -> None:
    printed = f"{STAMP}ok\n{STAMP}{base64.b64encode(KEY.encode()).decode()}\n"
    data = archive(
        {
            "1_build.txt": f"{STAMP}setup\n" + printed,  # repeats its steps: not read
            "build/1_Set up job.txt": f"{STAMP}setup\n",
            "build/2_Run tests.txt": printed,
            "2_deploy.txt": f"{STAMP}a\n{STAMP}b\n{STAMP}{KEY}\n",  # no step logs: read
        }
    )
    result = scan_archive(data, {sha(KEY)}, max_bytes=10_000)
    found = [(f.job, f.step, f.found.line, f.found.hit.form) for f in result.findings]
    assert found == [("build", "Run tests", 2, "base64"), ("deploy", None, 3, "as is")]
    assert not result.truncated


def test_the_text_cap_holds_however_far_the_zip_expands() -> None:
    data = archive({"build/1_Run.txt": f"{STAMP}x\n" * 100_000 + KEY + "\n"})
    assert len(data) < 20_000  # a small download that expands to megabytes
    result = scan_archive(data, {sha(KEY)}, max_bytes=50_000)
    assert result.truncated
    assert result.scanned == 50_000
    assert result.findings == []  # past the cap: not read


def test_a_key_wrong_in_its_last_character_is_not_found() -> None:
    near = KEY[:-1] + "y"
    data = archive(
        {"build/1_Run.txt": f"{STAMP}{near}\n{STAMP}{base64.b64encode(near.encode()).decode()}\n"}
    )
    assert scan_archive(data, {sha(KEY)}, max_bytes=10_000).findings == []


def test_not_a_zip_is_an_error_the_worker_records() -> None:
    with pytest.raises(zipfile.BadZipFile):
        scan_archive(b"<html>not a zip</html>", {sha(KEY)}, max_bytes=10_000)


@pytest.mark.parametrize(
    "url",
    [
        "http://logs.example.com/archive.zip",  # plain HTTP elsewhere: readable on the way
        "ftp://api.github.com/archive.zip",
        "file:///etc/passwd",
    ],
)
def test_a_download_url_that_is_not_https_is_refused_before_any_request(url: str) -> None:
    session = GitHubSession(GitHubConfig("https://api.github.com", token="t"))
    with pytest.raises(ValueError, match="not an HTTPS URL"):
        RunLogs(session, "octo/app").download(url, max_bytes=1024)
