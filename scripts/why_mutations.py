"""The five mutations issue 13 found surviving, applied again one at a time: each must make the
tests named for it fail (`make mutate-why`; docs/mutation.md).

Each mutation is written here as the exact text it replaces, so a change to the guarded line
makes this script fail loudly rather than test nothing. The file is restored from git afterwards,
and the script refuses to start on a file with uncommitted changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    what: str
    path: str
    was: str
    now: str
    tests: tuple[str, ...]  # test function names, found wherever they live under tests/


MUTATIONS = (
    Mutation(
        "the webhook signature compared on its first 4 bytes",
        "handler/webhooks.py",
        "hmac.compare_digest(expected, bytes.fromhex(match.group(1)))",
        "hmac.compare_digest(expected[:4], bytes.fromhex(match.group(1))[:4])",
        ("test_a_signature_wrong_only_in_its_last_digit_is_refused",),
    ),
    Mutation(
        "the foreign-repository check reduced to owners",
        "handler/registration.py",
        "if secret.repository.lower() != identity.repository.lower():",
        'if secret.repository.lower().split("/")[0] != identity.repository.lower().split("/")[0]:',
        ("test_a_secret_in_a_sibling_repository_of_the_same_owner_is_refused",),
    ),
    Mutation(
        "the secret-name check at registration disabled",
        "handler/registration.py",
        "problem = secret_name_problem(lease.key_name)",
        "problem = None",
        ("test_a_bad_key_name_is_refused_at_registration",),
    ),
    Mutation(
        "the discovery document's issuer check disabled",
        "runkeys/oidc.py",
        'if str(discovery.get("issuer", "")).rstrip("/") != self.issuer:',
        "if False:",
        ("test_a_discovery_document_naming_another_issuer_is_refused",),
    ),
    Mutation(
        "the quote_plus masking form removed",
        "runkeys/masking.py",
        'forms.setdefault(urllib.parse.quote_plus(value, safe=""), "URL-encoded (form)")',
        "pass",
        ("test_the_forms_of_a_value_with_a_space_plus_slash_percent_and_newline",),
    ),
)


def node_ids(name: str) -> list[str]:
    """`path::name` of every test function called `name` under tests/."""
    pattern = re.compile(rf"^def {re.escape(name)}\(", re.MULTILINE)
    found = [
        f"{path.relative_to(ROOT)}::{name}"
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
        if pattern.search(path.read_text())
    ]
    if not found:
        raise SystemExit(f"no test is called {name}: update scripts/why_mutations.py")
    return found


def apply(mutation: Mutation) -> str:
    """Write the mutation into its file; return the original text."""
    path = ROOT / mutation.path
    dirty = subprocess.run(
        ["git", "diff", "--quiet", "--", mutation.path], cwd=ROOT, check=False
    ).returncode
    if dirty:
        raise SystemExit(f"{mutation.path} has uncommitted changes: commit or stash them first")
    original = path.read_text()
    if original.count(mutation.was) != 1:
        raise SystemExit(
            f"{mutation.path} no longer holds `{mutation.was}` exactly once: the check moved, "
            "so update scripts/why_mutations.py"
        )
    path.write_text(original.replace(mutation.was, mutation.now))
    return original


def pytest(ids: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids],
        cwd=ROOT,
        env={**os.environ, "RUNKEYS_TEST_LEDGERS": "sqlite"},
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> int:
    every = [node for mutation in MUTATIONS for name in mutation.tests for node in node_ids(name)]
    # A test that fails on the unmutated code would "kill" every mutant: they must pass first.
    if (baseline := pytest(every)).returncode != 0:
        print(baseline.stdout)
        raise SystemExit("the named tests fail on the unmutated code")
    missed = 0
    for mutation in MUTATIONS:
        ids = [node for name in mutation.tests for node in node_ids(name)]
        original = apply(mutation)
        try:
            run = pytest(ids)
        finally:
            (ROOT / mutation.path).write_text(original)
        failed = sorted(set(re.findall(r"^FAILED (\S+?)(?: - |$)", run.stdout, re.MULTILINE)))
        if run.returncode == 1 and failed:
            print(f"killed   {mutation.what}: {len(failed)} failed, e.g. {failed[0]}")
        else:
            missed += 1
            tail = run.stdout.strip().splitlines()[-1:] or ["no output"]
            print(f"SURVIVED {mutation.what}: pytest exit {run.returncode}, {tail[0]}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
