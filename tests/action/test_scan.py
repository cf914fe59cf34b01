"""The `scan` sub-action: the main step runs as the runner runs it, then `runkeys-scan` with the
job's environment (what GITHUB_ENV added), over files with values planted in them. Each encoding
here is written with the standard library, not taken from runkeys; no value may appear in the
scan's output, annotations or summary."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from runkeys.filescan import MANIFESTS_VARIABLE
from tests.action.harness import MASK, SCAN, Run, Step, unescape
from tests.encoded_forms import encoded_forms
from tests.services import need

KEYS = (
    "API_TOKEN: {provider: random, ttl: 30m, lifetime: job}\n"
    "SIGNING_SECRET: {provider: random, format: base64url, bytes: 48, lifetime: job}\n"
)
CLEAN = "a report that names API_TOKEN and SIGNING_SECRET but holds neither\n"


class Job:
    """One job: the main step ran once; `scan` runs the sub-action with the job's env."""

    def __init__(self, step: Step, main: Run) -> None:
        self.step = step
        self.main = main
        self.values = dict(main.env)

    def scan(
        self,
        *paths: str | Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        inputs: dict[str, str] | None = None,
    ) -> Run:
        given = {"path": "\n".join(str(p) for p in paths), **(inputs or {})}
        job_env = self.main.job_env() if env is None else env
        return self.step.run(given, extra_env=job_env, entry=SCAN, cwd=cwd or self.step.tmp)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    step = Step(tmp_path_factory.mktemp("scan-job"))
    main = step.run({"keys": KEYS})
    assert main.returncode == 0, [*main.lines, main.stderr]
    return Job(step, main)


def assert_no_value(run: Run, values: list[str]) -> None:
    forms = [f for v in values for f in encoded_forms(v) if len(f) >= 8]
    assert forms
    texts = {"stdout": "\n".join(run.lines), "stderr": run.stderr, **run.files}
    for where, text in texts.items():
        for form in forms:
            assert form not in text, f"a value in {where}"
            assert form not in unescape(text), f"a value in {where}, escaped"


def errors(run: Run) -> list[str]:
    """The `::error` lines as the runner reads them: properties, then the message."""
    return [unescape(line) for line in run.lines if line.startswith("::error ")]


# --- what the main step leaves ----------------------------------------------------------------


def test_the_main_step_leaves_names_and_fingerprints_in_a_private_file(job: Job) -> None:
    assert job.main.manifests is not None
    (path,) = job.main.manifests.splitlines()
    assert Path(path).parent == job.step.tmp / "home" / ".runkeys"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(Path(path).read_text())
    expected = {
        (key, key, hashlib.sha256(job.values[key].encode()).hexdigest())
        for key in ("API_TOKEN", "SIGNING_SECRET")
    }
    assert {(w["key"], w["variable"], w["fingerprint"]) for w in data["watched"]} == expected
    text = Path(path).read_text()
    for value in job.values.values():
        assert not [form for form in encoded_forms(value) if form in text]
    # Not among the job's key variables, not masked, not in the summary.
    assert MANIFESTS_VARIABLE not in job.main.env
    assert path not in job.main.summary


def test_a_second_runkeys_step_adds_its_list_to_the_first(tmp_path: Path) -> None:
    step = Step(tmp_path)
    first = step.run({"keys": "A_KEY: {provider: random, lifetime: job}"})
    second = step.run(
        {"keys": "B_KEY: {provider: random, lifetime: job}"}, extra_env=first.job_env()
    )
    assert second.returncode == 0, second.lines
    assert first.manifests is not None
    assert second.manifests is not None
    assert second.manifests.splitlines()[0] == first.manifests
    assert len(second.manifests.splitlines()) == 2
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "b.txt").write_text(first.env["A_KEY"])
    run = step.run({"path": str(folder)}, extra_env={**first.env, **second.job_env()}, entry=SCAN)
    assert run.returncode == 1
    assert "the value of A_KEY (raw)" in errors(run)[0]


def test_without_home_the_keys_are_delivered_and_a_warning_says_the_scan_will_not_see_them(
    tmp_path: Path,
) -> None:
    step = Step(tmp_path)
    del step.base_env["HOME"]
    run = step.run({"keys": "A_KEY: {provider: random, lifetime: job}"})
    assert run.returncode == 0, run.lines
    assert "A_KEY" in run.env
    assert run.manifests is None
    (warning,) = run.annotations("warning")
    assert warning[1] == "The scan sub-action will not see these keys: HOME is not set"


def test_a_step_that_fails_after_delivery_withdraws_the_list_with_the_keys(
    tmp_path: Path,
) -> None:
    """GITHUB_STATE is written last (a `run` key needs no state before): its failure rolls
    back, and GITHUB_ENV is cut back to before the keys, the list's entry included."""
    step = Step(tmp_path / "step")
    (tmp_path / "not-a-file").mkdir()
    run = step.run(
        {"keys": "A_KEY: {provider: random, lifetime: run}"},
        extra_env={"GITHUB_STATE": str(tmp_path / "not-a-file")},
    )
    assert run.returncode == 1
    assert "GITHUB_STATE" in run.annotations("error")[0][1]
    assert run.env == {}
    assert run.manifests is None
    assert (step.tmp / "github_env").read_text() == ""


# --- findings, one encoding at a time ------------------------------------------------------------


def _inside(value: str, prefix: bytes, encode: Callable[[bytes], bytes]) -> str:
    return encode(prefix + value.encode() + b"\n").decode()


ENCODINGS: dict[str, tuple[str, Callable[[str], str]]] = {
    "raw": ("raw", lambda v: v),
    "base64": ("base64", lambda v: base64.b64encode(v.encode()).decode()),
    "base64-unpadded": (
        "base64 without padding",
        lambda v: base64.b64encode(v.encode()).decode().rstrip("="),
    ),
    "base64url": ("base64url", lambda v: base64.urlsafe_b64encode(v.encode()).decode()),
    # As a Basic auth header carries it: `user:value`, so the value sits mid-blob.
    "basic-auth": (
        "base64 inside a longer blob",
        lambda v: "Authorization: Basic " + _inside(v, b"ci-user:", base64.b64encode),
    ),
    "base64url-shifted": (
        "base64url inside a longer blob",
        lambda v: _inside(v, b"x", base64.urlsafe_b64encode),
    ),
    "url-encoded": ("URL-encoded", lambda v: urllib.parse.quote(v, safe="")),
    "form-encoded": ("URL-encoded (form)", lambda v: urllib.parse.quote_plus(v, safe="")),
    "json": ("JSON-escaped", lambda v: json.dumps(v)[1:-1]),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_value_planted_in_each_encoding_is_found_by_file_and_line(
    job: Job, tmp_path: Path, encoding: str
) -> None:
    name, encode = ENCODINGS[encoding]
    value = job.values["SIGNING_SECRET"]
    # A value that encodes to itself would prove nothing for this encoding: make it differ.
    if encoding in ("url-encoded", "form-encoded", "json"):
        value = job.values["API_TOKEN"]
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "clean.txt").write_text(CLEAN)
    planted = encode(value)
    (folder / "junit.xml").write_text(f"<testsuite>\n<case>\n  <out>{planted}</out>\n</case>\n")
    run = job.scan(folder)
    assert run.returncode == 1, run.lines
    (error,) = errors(run)
    variable = "SIGNING_SECRET" if value == job.values["SIGNING_SECRET"] else "API_TOKEN"
    assert error.startswith(f"::error file={folder}/junit.xml,line=3,title=runkeys scan::")
    expected_name = name if planted != value else "raw"
    if "url" in expected_name and planted == planted.replace("-", "+").replace("_", "/"):
        expected_name = expected_name.replace("base64url", "base64")  # the two forms agree
    assert f"the value of {variable} ({expected_name})" in error
    assert f"| {folder}/junit.xml | line 3 | {variable} | {expected_name} |" in run.summary
    assert_no_value(run, list(job.values.values()))


def test_the_forms_that_differ_from_the_token_are_found_under_their_names(
    job: Job, tmp_path: Path
) -> None:
    """A value with `:`, `/`, `"` and a newline, as the JSON and URL forms change it, found by
    the core's own matcher over the test's encodings."""
    from runkeys.filescan import Matcher, needles

    value = 'pa:ss/w"rd ~~??>>\nsecond-line-of-it'
    matcher = Matcher(needles({"X": value}))
    for encoding, (name, encode) in ENCODINGS.items():
        text = f"header\n{encode(value)}\n".encode()
        hits = list(matcher.scan([text]))
        assert hits, encoding
        assert hits[0].line == 2
        assert hits[0].needle.encoding == name


def test_a_value_one_character_off_is_not_a_finding(job: Job, tmp_path: Path) -> None:
    value = job.values["API_TOKEN"]
    # Another high nibble: the form inside a longer blob drops the last base64 character, so a
    # last character that differs only in its low bits is a finding (as the README says).
    near = value[:-1] + ("0" if ord(value[-1]) >> 4 != ord("0") >> 4 else "x")
    (tmp_path / "near.log").write_text(f"{near}\n{base64.b64encode(near.encode()).decode()}\n")
    (tmp_path / "prefix.log").write_text(value[:-1] + "\n")
    run = job.scan(tmp_path / "near.log", tmp_path / "prefix.log")
    assert run.returncode == 0, run.lines
    assert errors(run) == []


def test_inside_a_blob_a_value_off_in_the_low_bits_of_its_last_character_is_found(
    job: Job, tmp_path: Path
) -> None:
    """The README's caveat: where the value ends inside a base64 group, that group's character is
    shared with what follows the value in the blob, so it is not compared."""
    value = job.values["API_TOKEN"]
    near = value[:-1] + chr(ord(value[-1]) ^ 1)
    prefix = b"u:" if (2 + len(value)) % 3 else b"us:"  # the value ends inside a group
    blob = base64.b64encode(prefix + near.encode() + b"@example").decode()
    (tmp_path / "auth.log").write_text(f"Authorization: Basic {blob}\n")
    run = job.scan(tmp_path / "auth.log")
    assert run.returncode == 1
    assert len(errors(run)) == 1
    assert "| line 1 | API_TOKEN | base64 inside a longer blob |" in run.summary


def test_a_clean_folder_passes_and_says_how_much_it_scanned(job: Job, tmp_path: Path) -> None:
    for index in range(3):
        (tmp_path / f"r{index}.txt").write_text(CLEAN)
    run = job.scan(tmp_path)
    assert run.returncode == 0, run.lines
    size = 3 * len(CLEAN)
    assert f"Scanned 3 file(s), {size} bytes, for 2 value(s) of this job's keys: 0 finding(s)" in (
        "\n".join(run.lines)
    )
    assert run.outputs == {"findings": "0", "files": "3"}
    assert "0 finding(s)" in run.summary


def test_nested_folders_several_paths_globs_and_exclusions(job: Job, tmp_path: Path) -> None:
    token = job.values["API_TOKEN"]
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "deep.log").write_text(f"one\ntwo\n{token}\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "one.json").write_text(json.dumps({"token": token}))
    (other / "skip.json").write_text(token)
    single = tmp_path / "single.txt"
    single.write_text(f"x\n{token}")
    run = job.scan("a", "other/*.json", "!other/skip.json", single, cwd=tmp_path)
    assert run.returncode == 1
    found = sorted(line.split(",title=")[0] for line in errors(run))
    assert found == [
        f"::error file={single},line=2",
        "::error file=a/b/c/deep.log,line=3",
        "::error file=other/one.json,line=1",
    ]
    assert run.outputs["findings"] == "3"


def test_a_secret_part_is_found_and_a_public_part_is_not(tmp_path: Path) -> None:
    """A PostgreSQL key minted for real: its PASSWORD is watched, its HOST and PORT are not
    (they are in every config file)."""
    admin = need("postgres")
    step = Step(tmp_path / "step")
    connection = {"RUNKEYS_CONNECTION_CI_DB": admin}
    main = step.run(
        {"keys": "DB: {provider: postgres, connection: ci_db, lifetime: job}"},
        extra_env=connection,
    )
    try:
        assert main.returncode == 0, [*main.lines, main.stderr]
        folder = tmp_path / "out"
        folder.mkdir()
        (folder / "config.ini").write_text(
            f"host = {main.env['DB_HOST']}\nport = {main.env['DB_PORT']}\n"
        )
        run = step.run({"path": str(folder)}, extra_env=main.job_env(), entry=SCAN)
        assert run.returncode == 0, run.lines
        (folder / "dump.txt").write_text(f"user ok\npassword: {main.env['DB_PASSWORD']}\n")
        run = step.run({"path": str(folder)}, extra_env=main.job_env(), entry=SCAN)
        assert run.returncode == 1
        (error,) = errors(run)
        assert f"file={folder}/dump.txt,line=2" in error
        assert "the value of DB_PASSWORD (raw)" in error
        assert_no_value(run, [main.env["DB"], main.env["DB_PASSWORD"]])
    finally:
        post = step.run({}, extra_env={**step.post_env(main), **connection}, post=True)
        assert post.returncode == 0, post.lines
    with psycopg.connect(admin) as conn:
        role = main.env["DB_USER"]
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None


# --- files that are not plain text -----------------------------------------------------------


def test_a_value_in_a_binary_file_is_found_by_byte_offset(job: Job, tmp_path: Path) -> None:
    token = job.values["API_TOKEN"].encode()
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2" * 10 + token + b"\0")
    run = job.scan(tmp_path)
    (error,) = errors(run)
    assert error.startswith(f"::error file={tmp_path}/blob.bin,title=runkeys scan::")
    assert "byte 30: the value of API_TOKEN (raw)" in error


def test_symlinks_are_followed_as_upload_artifact_follows_them(job: Job, tmp_path: Path) -> None:
    """A link to a file outside the path uploads that file: it is scanned. A link back up the
    tree does not loop; a link to nothing and a named pipe are skipped, saying so."""
    outside = tmp_path / "outside.txt"
    outside.write_text(job.values["SIGNING_SECRET"])
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "link.txt").symlink_to(outside)
    (folder / "loop").symlink_to(folder)
    (folder / "dangling").symlink_to(tmp_path / "missing")
    os.mkfifo(folder / "pipe")
    run = job.scan(folder)
    assert run.returncode == 1
    (error,) = errors(run)
    assert f"file={folder}/link.txt,line=1" in error
    text = "\n".join(run.lines)
    assert f"Skipped {folder}/dangling: a symbolic link to nothing" in text
    assert f"Skipped {folder}/pipe: not a regular file" in text


def test_a_file_over_the_size_cap_fails_as_not_scanned(job: Job, tmp_path: Path) -> None:
    (tmp_path / "big.log").write_bytes(b"x" * 2048)
    (tmp_path / "small.log").write_text(CLEAN)
    run = job.scan(tmp_path, inputs={"max-file-size": "1K"})
    assert run.returncode == 1
    (error,) = errors(run)
    assert f"{tmp_path}/big.log was not scanned: 2048 bytes, over `max-file-size` (1024)" in error
    assert "Not scanned:" in run.summary
    bad = job.scan(tmp_path, inputs={"max-file-size": "lots"})
    assert bad.returncode == 1
    assert "max-file-size" in errors(bad)[0]


def test_a_value_across_chunk_boundaries_is_found_once(job: Job, tmp_path: Path) -> None:
    token = job.values["API_TOKEN"]
    head = b"y\n" * ((1 << 20) // 2 - 10)  # the token straddles the first MiB
    (tmp_path / "long.log").write_bytes(head + token.encode() + b"\n")
    run = job.scan(tmp_path)
    (error,) = errors(run)
    assert f"line={len(head) // 2 + 1}," in error


# --- warn or fail -------------------------------------------------------------------------------


def test_fail_false_turns_findings_into_warnings(job: Job, tmp_path: Path) -> None:
    (tmp_path / "leak.txt").write_text(job.values["API_TOKEN"])
    run = job.scan(tmp_path, inputs={"fail": "false"})
    assert run.returncode == 0
    assert errors(run) == []
    assert any("the value of API_TOKEN" in m for _, m in run.annotations("warning"))
    assert run.outputs["findings"] == "1"


def test_without_a_runkeys_step_the_scan_fails_saying_why(job: Job, tmp_path: Path) -> None:
    run = job.scan(tmp_path, env={})
    assert run.returncode == 1
    (error,) = errors(run)
    assert "this job has no runkeys keys to look for" in error
    assert "after the runkeys step" in error


def test_a_value_changed_since_minting_is_skipped_with_a_warning(job: Job, tmp_path: Path) -> None:
    """A later step that set API_TOKEN to something else: that value is not the key's, and is
    not looked for (its fingerprint does not match); the other key still is."""
    env = {**job.main.job_env(), "API_TOKEN": "not-the-minted-value-1234"}
    (tmp_path / "a.txt").write_text("not-the-minted-value-1234")
    run = job.scan(tmp_path, env=env)
    assert run.returncode == 0, run.lines
    (warning,) = run.annotations("warning")
    assert "API_TOKEN is no longer the value runkeys minted" in warning[1]
    only = {"API_TOKEN": "x" * 20, MANIFESTS_VARIABLE: env[MANIFESTS_VARIABLE]}
    run = job.scan(tmp_path, env=only)
    assert run.returncode == 1
    assert "none of this job's runkeys keys" in errors(run)[0]


def test_an_empty_path_is_a_clear_error(job: Job) -> None:
    run = job.scan("!only/an/exclusion")
    assert run.returncode == 1
    assert "input `path`" in errors(run)[0]


def test_a_missing_path_is_a_warning(job: Job, tmp_path: Path) -> None:
    run = job.scan(tmp_path / "not-there")
    assert run.returncode == 0
    (warning,) = run.annotations("warning")
    assert "No file matches the path" in warning[1]


def test_a_file_named_after_a_value_is_reported_without_it(job: Job, tmp_path: Path) -> None:
    token = job.values["API_TOKEN"]
    (tmp_path / f"{token}.txt").write_text(token)
    run = job.scan(tmp_path)
    assert run.returncode == 1
    assert_no_value(run, [token])
    assert not [line for line in run.lines if line.startswith(MASK)]


def test_many_findings_in_one_file_are_counted_past_the_annotations_shown(
    job: Job, tmp_path: Path
) -> None:
    (tmp_path / "spam.log").write_text(f"{job.values['API_TOKEN']}\n" * 25)
    run = job.scan(tmp_path)
    shown = errors(run)
    assert len(shown) == 21
    assert [f"line={n}," in line for n, line in enumerate(shown[:20], 1)] == [True] * 20
    assert shown[20].endswith(f"{tmp_path}/spam.log: 5 more finding(s)")
    assert run.outputs["findings"] == "25"
    assert run.summary.count("| API_TOKEN | raw |") == 25
