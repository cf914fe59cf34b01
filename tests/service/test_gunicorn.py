"""End to end under real gunicorn (`runkeys serve` in a subprocess): real signed deliveries,
the whole life of a lease with the embedded worker, and a SIGKILL mid-revocation."""

from __future__ import annotations

import functools
import json
import operator
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from handler.ledger import Ledger, tables
from handler.ledger.history import history
from runkeys.errors import LeaseServiceError
from runkeys.github.secrets import SecretStore
from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.lease_client import LeaseClient
from runkeys.leases import Lifetime, RetireOutcome
from runkeys.oidc import RunnerOIDC
from runkeys_sandbox.launch import ThreadServer, free_port
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App
from tests.github_data import DELIVERIES_SECRET, recorded_deliveries, recorded_delivery
from tests.service import kit
from tests.service.conftest import GitHub, make_environ
from tests.service.kit import AUDIENCE, HTTP_PARAMS, HeldIssuer, TokenIssuer, body, states
from tests.service.served import Served, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[TokenIssuer, str]]:
    tokens = TokenIssuer()
    server = ThreadServer(tokens)
    yield tokens, server.url
    server.stop()


def service_env(
    sandbox: Sandbox, app: App, url: str, issuer_url: str, **extra: str
) -> dict[str, str]:
    return {
        **make_environ(sandbox, app, url),
        "RUNKEYS_WORKER": "embedded",
        "RUNKEYS_WORKER_POLL_INTERVAL": "0.1",
        "RUNKEYS_CONNECTION_ISSUER": issuer_url.replace("http://", "http://ci:issuer-secret@"),
        **extra,
    }


@dataclass
class Running:
    served: Served
    ledger_url: str

    def deliveries(self) -> int:
        ledger = Ledger.open(self.ledger_url)
        with ledger.begin() as conn:
            count = int(conn.scalar(select(func.count()).select_from(tables.deliveries)) or 0)
        ledger.close()
        return count


@pytest.fixture(scope="module")
def running(
    sandbox: tuple[Sandbox, App],
    issuer: tuple[TokenIssuer, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    """One `runkeys serve` (two workers, SQLite, the embedded worker) for the tests that do not
    kill it; each test uses repositories of its own. Its webhook secret is the one the recorded
    real deliveries were signed with."""
    path = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{path / 'ledger.sqlite3'}"
    env = service_env(*sandbox, url, issuer[1], RUNKEYS_WEBHOOK_SECRET=DELIVERIES_SECRET)
    served = Served(env, path / "service.log")
    yield Running(served, url)
    served.stop()


def last_digit_changed(headers: dict[str, str]) -> str:
    """The delivery's signature, wrong only in its last hex digit."""
    good = headers["x-hub-signature-256"]
    return good[:-1] + ("1" if good[-1] == "0" else "0")


def test_real_signed_deliveries_under_gunicorn(running: Running) -> None:
    url = running.served.url
    genuine = recorded_deliveries()
    forged = 0
    for raw in genuine:
        before = running.deliveries()
        headers, data = recorded_delivery(raw)
        for bad_headers, bad_body in (
            ({**headers, "x-hub-signature-256": "sha256=" + "0" * 64}, data),
            ({k: v for k, v in headers.items() if k != "x-hub-signature-256"}, data),
            ({**headers, "x-hub-signature-256": headers["x-hub-signature-256"][:-1]}, data),
            ({**headers, "x-hub-signature-256": last_digit_changed(headers)}, data),
            (headers, data.replace(b'"sender"', b'"sendr"', 1)),  # replayed, body altered
            (headers, data[:-10]),  # truncated in transit
        ):
            answer = requests.post(f"{url}/webhook", data=bad_body, headers=bad_headers, timeout=10)
            assert answer.status_code == 401
            forged += 1
        assert running.deliveries() == before  # nothing recorded for any of them
        answer = requests.post(f"{url}/webhook", data=data, headers=headers, timeout=10)
        assert answer.status_code in (200, 202)
        # what can change something is recorded (a closed pull request); ignored events are not
        recorded = 1 if answer.json()["outcome"] == "queued" else 0
        assert running.deliveries() == before + recorded
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    # two processes answered: the multiprocess collector adds their counters up
    assert f"runkeys_webhook_signature_failures_total {float(forged)}" in metrics
    log = running.served.log.read_text()
    access = [json.loads(line) for line in log.splitlines() if '"message": "request"' in line]
    assert len(access) >= len(genuine) * 6
    assert {a["path"] for a in access} >= {"/webhook", "/readyz"}
    assert all(set(a) >= {"method", "path", "status", "duration_ms"} for a in access)
    # a delivery's line says what it did: the view's fields join the access line
    answered = [a for a in access if a["path"] == "/webhook" and a["status"] in (200, 202)]
    assert len(answered) == len(genuine)
    assert {(a["event"], a["outcome"]) for a in answered} >= {
        ("pull_request.closed", "queued"),
        ("pull_request.opened", "ignored"),
    }
    assert all(set(a) >= {"delivery", "installation", "queued"} for a in answered)
    assert "test-repo" not in log  # nothing of any body in any log line
    assert DELIVERIES_SECRET not in log


def test_the_life_of_a_lease_under_gunicorn(
    running: Running, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    url, sandbox = running.served.url, github.sandbox
    tokens, issuer_url = issuer
    claims = github.claims()
    run_token, job_token = tokens.mint(2)
    run_lease = github.lease(
        provider="http",
        connection="issuer",
        connection_url=issuer_url,
        params=HTTP_PARAMS,
        reference=run_token,
    )
    job_lease = github.lease(
        key_name="JOB_TOKEN",
        lifetime=Lifetime.JOB,
        provider="http",
        connection="issuer",
        connection_url=issuer_url,
        params=HTTP_PARAMS,
        reference=job_token,
        secret=False,
    )
    credentials = AppCredentials(str(github.app.id), github.app.private_key_pem)
    session = GitHubSession(GitHubConfig(sandbox.url, app=credentials))
    assert run_lease.secret is not None
    SecretStore(session, github.repo.full_name).put(run_lease.secret, "the value")
    answer = requests.post(
        f"{url}/v1/leases", json=body(run_lease, job_lease), headers=github.auth(claims), timeout=10
    )
    assert answer.status_code == 201, answer.text
    # the post step retires the job lease itself
    report = {"leases": [{"id": job_lease.id, "outcome": "revoked"}]}
    answer = requests.post(
        f"{url}/v1/leases/retire", json=report, headers=github.auth(claims), timeout=10
    )
    assert answer.json() == {"leases": [{"id": job_lease.id, "state": "revoked"}]}
    # the run completes: GitHub delivers workflow_run.completed
    sandbox.set_run_status(github.repo, claims.run_id, "completed", "success")
    payload = kit.workflow_run_completed(
        github.repo.id, github.repo.full_name, claims.run_id, 1, github.installation.id
    )
    delivered = sandbox.deliver(f"{url}/webhook", "workflow_run", payload, secret=DELIVERIES_SECRET)
    assert delivered.json() == {"outcome": "queued", "queued": 1}
    ledger = Ledger.open(running.ledger_url)
    wait_for(lambda: states(ledger, [run_lease.id]) == {run_lease.id: "revoked"}, what="revocation")
    assert tokens.revoked[run_token] == 1
    assert job_token not in tokens.revoked  # the post step did that one (at its own issuer)
    assert sandbox.secret_names(github.repo) == []
    with ledger.begin() as conn:
        assert [(e.actor, e.action) for e in history(conn, run_lease.id)] == [
            ("action", "registered"),
            ("webhook", "queued"),
            ("worker", "revoked"),
        ]
    ledger.close()


def test_killed_mid_revocation_every_lease_ends_revoked_once(
    sandbox: tuple[Sandbox, App], github: GitHub, tmp_path: Path
) -> None:
    tokens = HeldIssuer()
    server = ThreadServer(tokens)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    env = service_env(
        *sandbox,
        url,
        server.url,
        RUNKEYS_WORKER_CLAIM_TIMEOUT="1",
        RUNKEYS_WORKER_BATCH_SIZE="5",
    )
    served = Served(env, tmp_path / "first.log")
    claims = github.claims()
    references = tokens.mint(60)
    leases = github.http_leases(references, server.url)
    ids = [item.id for item in leases]
    ledger = Ledger.open(url)
    try:
        answer = requests.post(
            f"{served.url}/v1/leases", json=body(*leases), headers=github.auth(claims), timeout=10
        )
        assert answer.status_code == 201
        payload = kit.workflow_run_completed(
            github.repo.id, github.repo.full_name, claims.run_id, 1, github.installation.id
        )
        delivered = github.sandbox.deliver(
            f"{served.url}/webhook", "workflow_run", payload, app=github.app
        )
        assert delivered.json()["queued"] == 60
        wait_for(lambda: tokens.calls > tokens.answered, what="a revocation held")
        assert len(tokens.revoked) == tokens.answered
    finally:
        served.kill()
        tokens.released.set()
    done_before = list(states(ledger, ids).values()).count("revoked")
    assert 0 < done_before <= tokens.answered, "the kill must land mid-revocation"
    restarted = Served(env, tmp_path / "second.log", workers=1)
    try:
        wait_for(
            lambda: set(states(ledger, ids).values()) == {"revoked"},
            timeout=30,
            what="every lease revoked after the restart",
        )
    finally:
        restarted.stop()
        server.stop()
    assert tokens.revoked == dict.fromkeys(references, 1)  # each credential revoked exactly once
    assert tokens.live == set()
    # Asked again (and answered "already gone") only for what the killed workers held: at most
    # two workers with a batch of five each.
    repeats = sum(tokens.revoke_calls.values()) - len(references)
    print(f"revoked before the kill: {done_before}; repeated revoke calls: {repeats}")
    assert repeats <= 10
    with ledger.begin() as conn:
        for item in leases:
            assert [e.action for e in history(conn, item.id)].count("revoked") == 1
    ledger.close()


def test_the_actions_own_client_speaks_to_the_service(running: Running, github: GitHub) -> None:
    """The action's `LeaseClient` and `RunnerOIDC` (a fresh token per call, from the sandbox's
    runner endpoint) against the real service: the contract both sides were built to."""
    claims = github.claims()
    env = github.sandbox.runner_oidc_env(claims)
    oidc = RunnerOIDC(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"], AUDIENCE
    )
    client = LeaseClient(running.served.url, oidc.token)
    items = [github.lease(lifetime=Lifetime.JOB), github.lease(key_name="SECOND")]
    registered = client.register(items)
    assert [(r.id, r.state) for r in registered] == [(i.id, "active") for i in items]
    assert [r.id for r in client.register(items)] == [i.id for i in items]  # a retry: same ids
    client.retire(
        [RetireOutcome(items[0].id, "revoked"), RetireOutcome(items[1].id, "failed", "boom")]
    )
    ledger = Ledger.open(running.ledger_url)
    found = states(ledger, [i.id for i in items])
    with ledger.begin() as conn:
        handed_over = [(e.actor, e.action, e.detail) for e in history(conn, items[1].id)][1]
    ledger.close()
    assert found[items[0].id] == "revoked"
    # The failed one is queued for the worker at once, and this service's embedded worker
    # (polling every 0.1 s) may have retired it already.
    assert found[items[1].id] in ("revoking", "revoked")
    assert handed_over == ("post-step", "queued", "post step could not retire it: boom")
    with pytest.raises(LeaseServiceError) as refused:
        client.register([github.lease(ttl=timedelta(days=3))])
    assert refused.value.status == 422
    assert "ttl_too_long" in refused.value.cause


def test_the_api_body_limit_under_gunicorn(running: Running, github: GitHub) -> None:
    """gunicorn hands a chunked body over decoded, without a length: a /v1 body over
    `RUNKEYS_API_MAX_BYTES` is refused whether it says its length or not, and one within it
    is read whole either way."""
    url = f"{running.served.url}/v1/leases"
    padded = body(github.lease())
    padded["leases"][0]["params"] = {"padding": "p" * 300 * 1024}
    big = json.dumps(padded).encode()
    json_type = {"Content-Type": "application/json"}
    for data in (big, (big[i : i + 65536] for i in range(0, len(big), 65536))):
        answer = requests.post(url, data=data, headers=json_type, timeout=10)
        assert (answer.status_code, answer.json()["error"]) == (413, "request_entity_too_large")
    small = json.dumps(body(github.lease())).encode()
    answer = requests.post(
        url,
        data=(small[i : i + 100] for i in range(0, len(small), 100)),  # chunked
        headers={**json_type, **github.auth(github.claims())},
        timeout=10,
    )
    assert answer.status_code == 201


def test_ctrl_c_is_for_the_master_alone(running: Running) -> None:
    """A terminal's Ctrl-C reaches every process of the group. The workers leave it to the
    master, which tells each of them once: a second quick-shutdown signal could hang a worker
    until the master killed it at the graceful timeout. (`Served.stop` is a Ctrl-C, and fails
    a test whose service takes more than a few seconds to stop.)"""
    workers = running.served.worker_pids()
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGINT)
    sent = time.monotonic()
    for pid in workers:
        _two_turns_after(pid, sent)
        assert not _pending(pid) & (1 << (signal.SIGINT - 1)), "SIGINT still pending"
    assert running.served.worker_pids() == workers  # none stopped, none replaced
    assert requests.get(f"{running.served.url}/readyz", timeout=10).status_code == 200


def _two_turns_after(pid: int, since: float) -> None:
    """Until worker `pid` has gone round its loop twice after `since`. A worker handles a
    signal on its loop's thread before it goes round again: one that would stop it never
    beats twice more."""
    seen = [since]

    def beat_after_last() -> bool:
        beat = _beat(pid)
        assert beat >= 0, f"worker {pid} exited (or holds no heartbeat file)"
        # A heartbeat is a reading of this same monotonic clock, so never ahead of it: the
        # file's mtime has been seen to hold a wall-clock time for a moment.
        if seen[-1] < beat <= time.monotonic():
            seen.append(beat)
            return True
        return False

    wait_for(beat_after_last, what=f"worker {pid}'s heartbeat")
    wait_for(beat_after_last, what=f"worker {pid}'s next heartbeat")


def _beat(pid: int) -> float:
    """A gunicorn worker's last heartbeat: the mtime (its monotonic clock, which is the
    system's) it sets on its unlinked temporary file on every turn of its loop; -1 without one."""
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            if "wgunicorn-" in os.readlink(fd):
                return os.stat(fd).st_mtime
    except FileNotFoundError:
        pass
    return -1.0  # gone, or closing its files on the way out


def _pending(pid: int) -> int:
    """The signals pending for `pid`, to it alone or to its whole thread group."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return functools.reduce(
        operator.or_,
        (int(line.split()[1], 16) for line in status if line.startswith(("SigPnd:", "ShdPnd:"))),
    )


def test_the_metrics_directory_outlives_a_reload(
    sandbox: tuple[Sandbox, App], tmp_path: Path
) -> None:
    """`runkeys serve` makes its metrics directory when none is given; workers replaced on a
    reload (SIGHUP) leave through the same code as the master, and must not remove it."""
    env = make_environ(*sandbox, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    served = Served(env, tmp_path / "service.log", metrics=False)
    try:
        (made,) = tmp_path.glob("runkeys-metrics-*")
        before = served.worker_pids()
        os.kill(served.process.pid, signal.SIGHUP)
        wait_for(lambda: not set(before) & set(served.worker_pids()), what="workers replaced")
        wait_for(lambda: len(served.worker_pids()) == 2, what="new workers")
        assert made.is_dir()
        assert requests.get(f"{served.url}/metrics", timeout=10).status_code == 200
    finally:
        served.stop()
    assert not made.exists()  # the master removes what it made


def _refused_by(directory: Path, pid: int) -> float:
    """Deliveries one worker refused, from its own file alone (prometheus_client's collector
    over a directory holding only that file)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    source = directory / f"counter_{pid}.db"
    if not source.exists():
        return 0.0
    alone = directory.parent / f"alone-{pid}"
    alone.mkdir(exist_ok=True)
    (alone / source.name).write_bytes(source.read_bytes())
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
    value = registry.get_sample_value("runkeys_webhook_signature_failures_total")
    return value or 0.0


def _listening_inode(port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # LISTEN
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _sockets_of(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def test_metrics_on_an_address_of_their_own(sandbox: tuple[Sandbox, App], tmp_path: Path) -> None:
    """RUNKEYS_METRICS_BIND: gunicorn's master answers `/metrics` there, adding up both
    workers' counters and reading the ledger's gauges; the public address answers 404 for it,
    and no worker holds the metrics socket."""
    port = free_port()
    env = {
        **make_environ(*sandbox, f"sqlite:///{tmp_path / 'ledger.sqlite3'}"),
        "RUNKEYS_METRICS_BIND": f"127.0.0.1:{port}",
    }
    served = Served(env, tmp_path / "service.log")
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        public = requests.get(f"{served.url}/metrics", timeout=10)
        assert (public.status_code, public.json()["error"]) == (404, "not_found")
        directory = tmp_path / f"metrics-{served.port}"
        workers = served.worker_pids()
        assert len(workers) == 2
        forged = 0
        # until each worker has refused some: the sum is then over both
        while forged < 400 and not all(_refused_by(directory, pid) for pid in workers):
            answer = requests.post(
                f"{served.url}/webhook",
                data=b'{"zen": "forged"}',
                headers={
                    "X-GitHub-Event": "ping",
                    "X-GitHub-Delivery": str(forged),
                    "X-Hub-Signature-256": "sha256=" + "0" * 64,
                    "Content-Type": "application/json",
                },
                timeout=10,
            )
            assert answer.status_code == 401
            forged += 1
        by_worker = {pid: _refused_by(directory, pid) for pid in workers}
        assert all(by_worker.values()), by_worker
        answer = requests.get(metrics_url, timeout=10)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        (total,) = families["runkeys_webhook_signature_failures"].samples
        assert total.value == forged == sum(by_worker.values())
        leases = {s.labels["state"]: s.value for s in families["runkeys_leases"].samples}
        assert leases == {"active": 0.0, "revoking": 0.0, "revoked": 0.0, "failed": 0.0}
        listening = _listening_inode(port)
        assert listening in _sockets_of(served.process.pid)
        assert not any(listening in _sockets_of(pid) for pid in workers)
        # workers replaced on a reload are forked from the master with the server running
        os.kill(served.process.pid, signal.SIGHUP)
        wait_for(lambda: not set(workers) & set(served.worker_pids()), what="workers replaced")
        wait_for(lambda: len(served.worker_pids()) == 2, what="new workers")
        assert not any(listening in _sockets_of(pid) for pid in served.worker_pids())
        assert requests.get(metrics_url, timeout=10).status_code == 200
        assert requests.get(f"{served.url}/metrics", timeout=10).status_code == 404
    finally:
        served.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(metrics_url, timeout=10)
