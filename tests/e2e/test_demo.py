"""`runkeys demo`, the README's first command, as a newcomer runs it: with PostgreSQL on
localhost (a real role), without (a random value), and cut short by Ctrl-C. Each time: the story
is told, no value is printed, and nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from runkeys_sandbox.launch import free_port
from tests.e2e.commands import (
    Finished,
    assert_nothing_left,
    demo_roles,
    environ,
    interrupt_after,
    leaked,
    run,
)
from tests.services import need

pytestmark = pytest.mark.slow


def report(done: Finished) -> str:
    return f"exit {done.returncode} after {done.seconds:.1f} s\n{done.stdout}\n{done.stderr}"


def assert_story(out: str) -> None:
    """The chapters a newcomer reads, in order (sentences are wrapped to the terminal)."""
    out = " ".join(out.split())
    for expected in (
        "1. A GitHub stand-in (the sandbox) listens at http://127.0.0.1:",
        "2. The runkeys service starts: gunicorn, its ledger a SQLite file.",
        "3. A job of that run has this step:",
        "| API_TOKEN: minted by random, lifetime job",
        "Registered 2 lease(s) with the runkeys service.",
        "::add-mask:: commands",
        "each matches what the job got",
        "4. The job ends, and the runner runs the action's post step:",
        "| API_TOKEN: revoked and deleted its secret.",
        "5. The run completes.",
        "answered 200 at once, with 1 lease queued",
        "6. The ledger (`runkeys leases`) holds 2 leases, all revoked",
        "LEASE KEY PROVIDER STATE RETIRED BY FINGERPRINT",
        "7. In short:",
        "KEY PROVIDER LIFETIME MINTED RETIRED BY SECRET GONE CREDENTIAL WORKS?",
        "Cleaned up: the service and the sandbox are stopped",
        "8. What to try next:",
        "runkeys sandbox --keys keys.yml",
    ):
        assert expected in out, expected
        out = out[out.index(expected) :]


def test_the_demo_with_postgres_mints_a_real_role() -> None:
    admin = need("postgres")
    before = demo_roles(admin)
    done = run("demo", "--postgres", admin, env=environ())
    print(report(done))
    assert done.returncode == 0, report(done)
    flat = " ".join(done.stdout.split())
    assert "PostgreSQL answers at 127.0.0.1:5432: DATABASE_URL will be a real login role" in flat
    assert_story(done.stdout)
    assert "A later step connects with DATABASE_URL: it logs in as its own role." in flat
    table = done.stdout[done.stdout.index("7. In short:") :].splitlines()
    assert table[1].split() == ["KEY", "PROVIDER", "LIFETIME", "MINTED", "RETIRED", "BY",
                                "SECRET", "GONE", "CREDENTIAL", "WORKS?"]  # fmt: skip
    assert table[2].split() == ["API_TOKEN", "random", "job", "yes", "post", "step", "yes",
                                "n/a", "(no", "login)"]  # fmt: skip
    assert table[3].split() == ["DATABASE_URL", "postgres", "run", "yes", "webhook",
                                "workflow_run.completed", "yes", "yes,", "then", "no"]  # fmt: skip
    assert leaked(done.stdout + done.stderr) == []
    assert_nothing_left(done.stdout, admin, before)


def test_the_demo_without_postgres_mints_a_random_value() -> None:
    closed_port = free_port()
    done = run("demo", "--postgres", f"postgresql://postgres@127.0.0.1:{closed_port}/postgres",
               env=environ())  # fmt: skip
    print(report(done))
    assert done.returncode == 0, report(done)
    flat = " ".join(done.stdout.split())
    assert f"No PostgreSQL to use at 127.0.0.1:{closed_port} (connection failed:" in flat
    assert "so the second key is a random value" in flat
    assert_story(done.stdout)
    rows = done.stdout[done.stdout.index("7. In short:") :].splitlines()[2:4]
    assert rows[1].split()[:7] == ["SESSION_SECRET", "random", "run", "yes", "webhook",
                                   "workflow_run.completed", "yes"]  # fmt: skip
    assert "DATABASE_URL" not in done.stdout
    ledger = done.stdout[done.stdout.index("   LEASE ") :].splitlines()[1:3]
    assert [row.split()[1:6] for row in ledger] == [
        ["API_TOKEN", "random", "revoked", "post", "step"],
        ["SESSION_SECRET", "random", "revoked", "webhook", "workflow_run.completed"],
    ]
    assert leaked(done.stdout + done.stderr) == []
    assert_nothing_left(done.stdout, None, set())


@pytest.mark.parametrize("how", ["ctrl-c", "closed output"])
def test_a_demo_cut_short_leaves_nothing_behind(how: str, tmp_path: Path) -> None:
    """Cut short once the role exists and the ledger holds it (before the run completes): by
    Ctrl-C, or by its output going away (`runkeys demo | head`), a failure mid-story. The demo
    gets a temporary folder of its own, so another demo running meanwhile cannot be mistaken
    for what this one left."""
    admin = need("postgres")
    roles = demo_roles(admin)
    done = interrupt_after(
        "demo", "--postgres", admin, env=environ(TMPDIR=str(tmp_path)), marker="4. The job ends",
        close=how == "closed output",
    )  # fmt: skip
    print(report(done))
    if how == "ctrl-c":
        assert done.returncode == 130, report(done)
        assert "Interrupted: undoing what was done so far, then stopping everything." in done.stdout
    else:
        assert done.returncode == 1, report(done)
        assert "runkeys: Output closed" in done.stderr
    assert "7. In short:" not in done.stdout
    assert leaked(done.stdout + done.stderr) == []
    assert_nothing_left(done.stdout, admin, roles)
    assert sorted(tmp_path.iterdir()) == [], "a file or folder the demo made is left"
