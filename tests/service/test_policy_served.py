"""The policy under real gunicorn (`runkeys serve` in a subprocess): an invalid policy stops
start-up naming its line; SIGHUP puts a new one in force, and keeps the old one when the new
file is invalid, saying why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from runkeys.broker import new_key_pair
from tests.service.conftest import GitHub, make_environ
from tests.service.served import Served, wait_for

pytestmark = pytest.mark.slow


def policy(repository: str) -> str:
    return f"""\
version: 1
rules:
  - name: only-{repository.rsplit("/", 1)[1]}
    match:
      repository: {repository}
    max_keys: 2
    allow:
      - provider: random
        max_ttl: 10m
"""


def test_an_invalid_policy_stops_start_up_naming_its_line(github: GitHub, tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(policy(github.repo.full_name).replace("max_keys: 2", "max_keys: lots"))
    env = {
        **os.environ,
        **make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'l.sqlite3'}"),
        "RUNKEYS_POLICY_FILE": str(path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "runkeys.cli", "serve", "--bind", "127.0.0.1:0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "RUNKEYS_POLICY_FILE" in done.stderr
    assert "line 6" in done.stderr  # `max_keys: lots`


def ask(served: Served, github: GitHub) -> int:
    """A job of the test's repository asks for one random key; the status answered."""
    _, public = new_key_pair()
    response = requests.post(
        f"{served.url}/v1/keys",
        json={
            "request_id": uuid.uuid4().hex,
            "keys": "TOKEN: {provider: random, ttl: 5m}\n",
            "destination": {"kind": "job"},
            "public_key": public,
        },
        headers=github.auth(github.claims()),
        timeout=30,
    )
    return response.status_code


def reload(served: Served) -> None:
    before = served.worker_pids()
    os.kill(served.process.pid, signal.SIGHUP)
    wait_for(lambda: not set(before) & set(served.worker_pids()), what="workers replaced")
    wait_for(lambda: len(served.worker_pids()) == 1, what="a new worker")
    wait_for(lambda: _ready(served), what="the new worker ready")


def _ready(served: Served) -> bool:
    try:
        return requests.get(f"{served.url}/readyz", timeout=3).status_code == 200
    except requests.ConnectionError:
        return False


def test_sighup_reloads_the_policy_and_keeps_it_when_the_new_one_is_invalid(
    github: GitHub, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(policy(github.repo.full_name))
    env = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'l.sqlite3'}")
    log = tmp_path / "service.log"
    served = Served(env | {"RUNKEYS_POLICY_FILE": str(path)}, log, workers=1)
    try:
        assert len(list(tmp_path.glob("runkeys-policy-*"))) == 1  # the copy workers load
        assert ask(served, github) == 201
        path.write_text(policy(github.other_repo.full_name))  # no longer this repository
        reload(served)
        assert ask(served, github) == 403
        path.write_text(  # a rule that binds no owner: anyone's repository would match
            "version: 1\nrules:\n  - name: broken\n    max_keys: 1\n"
            "    match: {ref: refs/heads/main}\n"
            "    allow: [{provider: random, max_ttl: 5m}]\n"
        )
        reload(served)
        assert ask(served, github) == 403  # the second policy, still in force
        path.write_text(policy(github.repo.full_name))
        reload(served)
        assert ask(served, github) == 201
    finally:
        served.stop()
    assert list(tmp_path.glob("runkeys-policy-*")) == []  # the master removed its copy
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    kept = [x for x in lines if x.get("message", "").startswith("policy not reloaded")]
    assert len(kept) == 1
    assert kept[0]["line"] == 5  # `match:`
    assert "must name repository" in kept[0]["reason"]
    assert [x["message"] for x in lines].count("policy reloaded") == 2
