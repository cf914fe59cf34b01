"""`runkeys sandbox --keys FILE`: a user dry-runs their own spec offline — a good one is minted,
delivered, shown and retired (with the exact GitHub API calls); a bad one is refused with the
action's own error; a missing connection is named before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.commands import Finished, assert_nothing_left, environ, leaked, run
from tests.e2e.world import Postgres

pytestmark = pytest.mark.slow


def report(done: Finished) -> str:
    return f"exit {done.returncode} after {done.seconds:.1f} s\n{done.stdout}\n{done.stderr}"


def test_a_good_spec_is_minted_shown_and_retired() -> None:
    spec = (
        "API_TOKEN: {provider: random, lifetime: job, ttl: 30m}\n"
        "DATABASE_URL: {provider: postgres, connection: ci_db, lifetime: pr, ttl: 2h}\n"
    )
    with Postgres.prepared() as postgres:
        env = environ(RUNKEYS_CONNECTION_CI_DB=postgres.connection_url)
        done = run("sandbox", "--keys", "-", env=env, stdin=spec)
        print(report(done))
        assert done.returncode == 0, report(done)
        assert postgres.members() == []  # minted, and dropped again
    out = done.stdout
    assert "| API_TOKEN: minted by random, lifetime job" in out
    assert "| DATABASE_URL: minted by postgres, lifetime pr" in out
    written = [line.strip() for line in out.splitlines()]
    assert "API_TOKEN: random, lifetime job, expires " in out
    assert "DATABASE_URL: postgres, lifetime pr, expires " in out
    assert out.count("Z, a secret of environment ci-pr-7\n") == 2
    assert "job variables and step outputs: API_TOKEN" in written
    assert (
        "job variables and step outputs: DATABASE_URL, DATABASE_URL_USER, DATABASE_URL_PASSWORD, "
        "DATABASE_URL_HOST, DATABASE_URL_PORT, DATABASE_URL_DATABASE"
    ) in written
    calls = [line.split() for line in out.splitlines() if line.startswith("       ")]
    assert len(calls) >= 15
    assert ["PUT", "/repos/octo/app/environments/ci-pr-7", "200", "(installation)"] in calls
    for name in ("API_TOKEN", "DATABASE_URL"):
        put = ["PUT", f"/repos/octo/app/environments/ci-pr-7/secrets/{name}", "201"]
        assert [*put, "(installation)"] in calls
    # The post step deletes the job key's secret alone (the run's key still uses the
    # environment); the pull request's close then deletes the environment, its last secret in it.
    secrets = [c[1].rsplit("/", 1)[1] for c in calls if c[:1] == ["DELETE"] and "/secrets/" in c[1]]
    assert secrets == ["API_TOKEN"]
    deleted = [c for c in calls if c[:2] == ["DELETE", "/repos/octo/app/environments/ci-pr-7"]]
    assert deleted == [["DELETE", "/repos/octo/app/environments/ci-pr-7", "204", "(installation)"]]
    flat = " ".join(out.split())  # sentences are wrapped to the terminal
    assert "API_TOKEN: revoked (post step)." in flat
    assert "DATABASE_URL: revoked (webhook pull_request.closed)." in flat
    assert "the sandbox holds no secret and no environment any more." in flat
    assert leaked(out + done.stderr) == []
    assert_nothing_left(out, None, set())


def test_a_bad_spec_fails_with_the_actions_error(tmp_path: Path) -> None:
    spec = tmp_path / "keys.yml"
    spec.write_text("API_TOKEN: {provider: randomm, ttl: 30}\n2FA: {provider: random}\n")
    done = run("sandbox", "--keys", str(spec), env=environ())
    print(report(done))
    assert done.returncode == 1
    assert "| Error: The `keys` input has 3 problem(s):" in done.stdout
    assert "| - keys.API_TOKEN.provider: unknown provider 'randomm'" in done.stdout
    assert "| - keys.API_TOKEN.ttl: '30' is not a duration" in done.stdout
    assert "| - keys.2FA: a secret name cannot start with a digit" in done.stdout
    flat = " ".join(done.stdout.split())
    assert "The step failed, as it would on GitHub (exit status 1)" in flat
    assert "What was written where" not in done.stdout
    assert_nothing_left(done.stdout, None, set())
    unreadable = run("sandbox", "--keys", str(tmp_path / "missing.yml"), env=environ())
    assert unreadable.returncode == 1
    assert "--keys: " in unreadable.stderr
    assert "cannot be read" in unreadable.stderr


def test_a_missing_connection_is_named() -> None:
    spec = "DATABASE_URL: {provider: postgres, connection: ci_db}\n"
    done = run("sandbox", "--keys", "-", env=environ(), stdin=spec)
    print(report(done))
    assert done.returncode == 1
    first = done.stdout.index(
        "Missing connection: keys.DATABASE_URL needs RUNKEYS_CONNECTION_CI_DB"
    )
    assert first < done.stdout.index("1. The sandbox listens")  # said before anything runs
    assert "export RUNKEYS_CONNECTION_CI_DB=" in done.stdout
    assert "| - keys.DATABASE_URL.connection: RUNKEYS_CONNECTION_CI_DB is not set" in done.stdout
    assert_nothing_left(done.stdout, None, set())
