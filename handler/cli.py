# ruff: noqa: PLC0415 (imports inside commands: `runkeys --help` must not load Flask or the ledger)
"""`runkeys serve | worker | sweep | leases | revoke | audit | status | policy check`: the
service's commands.

Each reads only the settings it needs from the environment (`runkeys leases` needs a database,
not the App's key) and imports the heavy parts only when run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from runkeys import ids
from runkeys.leases import LeaseState, Lifetime

if TYPE_CHECKING:
    from handler.ledger import Ledger


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the webhook service under gunicorn")
    serve.add_argument("--bind", default=os.environ.get("RUNKEYS_BIND", "127.0.0.1:8080"))
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes (RUNKEYS_WEB_WORKERS; default: 1 on SQLite, 2 on PostgreSQL)",
    )
    serve.add_argument("--threads", type=int, default=4, help="threads per worker process")
    serve.add_argument(
        "--timeout", type=int, default=30, help="seconds before a stuck request is killed"
    )
    serve.set_defaults(func=serve_command)

    worker = subparsers.add_parser("worker", help="run the revocation worker (and the sweeper)")
    worker.add_argument("--once", action="store_true", help="work until nothing is due, then exit")
    worker.add_argument("--no-sweep", action="store_true", help="leave sweeping to others")
    worker.set_defaults(func=worker_command)

    sweep = subparsers.add_parser("sweep", help="one sweep: TTL expiry, reconcile runs, cleanup")
    sweep.add_argument("--no-reconcile", action="store_true", help="do not ask GitHub about runs")
    sweep.set_defaults(func=sweep_command)

    leases = subparsers.add_parser("leases", help="list leases in the ledger")
    leases.add_argument("--state", action="append", choices=[s.value for s in LeaseState])
    leases.add_argument("--repository", type=_repository, help="owner/name or repository id")
    leases.add_argument("--run", type=_number("run id"), help="workflow run id")
    leases.add_argument("--pr", type=_number("pull request number", ids.MAX_NUMBER))
    leases.add_argument("--lifetime", choices=[lt.value for lt in Lifetime])
    leases.add_argument("--provider")
    leases.add_argument("--lease", help="one lease id (shows its history)")
    leases.add_argument("--limit", type=_number("limit", ids.MAX_NUMBER), default=100)
    leases.add_argument("--json", action="store_true", help="one JSON object per line")
    leases.set_defaults(func=leases_command)

    revoke = subparsers.add_parser("revoke", help="queue leases for retirement now")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--lease", action="append", help="a lease id (repeatable)")
    target.add_argument("--run", type=_number("run id"), help="every run/job lease of this run")
    target.add_argument(
        "--pr",
        type=_number("pull request number", ids.MAX_NUMBER),
        help="every pr lease of this pull request",
    )
    target.add_argument("--all", action="store_true", help="every lease of --repository")
    revoke.add_argument(
        "--repository", type=_repository, help="owner/name or id (needed with --run, --pr, --all)"
    )
    revoke.add_argument("--reason", default="", help="recorded in each lease's history")
    revoke.add_argument(
        "--as",
        dest="operator",
        metavar="NAME",
        help="who you are, for the history (default: RUNKEYS_OPERATOR, else your OS user)",
    )
    revoke.set_defaults(func=revoke_command)

    _register_audit(subparsers)

    _register_status(subparsers)

    policy = subparsers.add_parser("policy", help="the broker's policy (docs/policy.md)")
    policy_commands = policy.add_subparsers(title="commands", metavar="COMMAND", required=True)
    check = policy_commands.add_parser(
        "check", help="evaluate a policy offline: claims and keys → allow or deny, per key"
    )
    check.add_argument("--policy", required=True, metavar="FILE", help="the policy (YAML)")
    check.add_argument(
        "--claims", required=True, metavar="CLAIMS.json", help="a verified token's claims"
    )
    check.add_argument("--keys", required=True, metavar="KEYS.yml", help="the `keys` spec")
    where = check.add_mutually_exclusive_group()
    where.add_argument("--environment", metavar="NAME", help="the keys go to this environment")
    where.add_argument(
        "--repository-secrets", action="store_true", help="the keys go to repository secrets"
    )
    check.add_argument(
        "--max-ttl",
        default="24h",
        help="the service's RUNKEYS_MAX_TTL, which caps every key besides the policy",
    )
    check.add_argument("--json", action="store_true", help="also print the decision record")
    check.set_defaults(func=policy_check_command)


def _register_status(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="the retirement backlog per installation; exit 1 when one is behind"
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument(
        "--metrics",
        metavar="URL",
        help="also GitHub's limits per installation, from the service's /metrics at URL",
    )
    status.set_defaults(func=status_command)


def _register_audit(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit", help="the broker's policy decisions, newest first (no values are kept)"
    )
    audit.add_argument("--repository", type=_repository, help="owner/name or repository id")
    audit.add_argument("--denied", action="store_true", help="denials only")
    audit.add_argument("--limit", type=_number("limit", ids.MAX_NUMBER), default=100)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=audit_command)


def _number(what: str, maximum: int = ids.MAX_ID) -> Callable[[str], int]:
    """An argument the ledger can compare with its columns: argparse says what is wrong with
    one out of range, where the database would have failed with a traceback."""

    def parse(text: str) -> int:
        value = ids.parse(text, maximum)
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}: {ids.describe(maximum)}")
        return value

    return parse


def _repository(text: str) -> str:
    if text.isascii() and text.isdigit():
        _number("repository id")(text)
    return text


def serve_command(args: argparse.Namespace) -> int:
    from handler.serve import prepare_metrics_dir

    args.workers = _web_workers(args.workers)
    made_by = os.getpid() if os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None else None
    apart = bool(os.environ.get("RUNKEYS_METRICS_BIND", "").strip())
    metrics_dir = prepare_metrics_dir(args.workers, apart=apart)  # before prometheus_client
    try:
        return _serve(args)
    finally:
        # Forked workers leave through here too: only the master, which made the directory,
        # removes it (also when a bad setting stopped start-up).
        if made_by == os.getpid() and metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def _web_workers(given: int | None) -> int:
    """SQLite has one writer at a time: one process, whose threads queue for its connection,
    and whose embedded worker is the only one. PostgreSQL is the way to scale out."""
    from handler.config import database_url

    if given is not None:
        return given
    configured = os.environ.get("RUNKEYS_WEB_WORKERS", "").strip()
    if configured:
        return int(configured)
    return 1 if database_url(os.environ).startswith("sqlite") else 2


def _serve(args: argparse.Namespace) -> int:
    from handler import logs
    from handler.config import ServiceConfig
    from handler.ledger import Ledger
    from handler.serve import (
        PolicySnapshot,
        ServiceApplication,
        default_options,
        serve_metrics_apart,
    )

    config = ServiceConfig.from_env(os.environ)  # refuse to start on a bad setting, here
    logs.configure(config.log_level)
    Ledger.open(config.database_url).close()  # migrate once, before the workers start
    if config.metrics_bind is not None:
        serve_metrics_apart(config.metrics_bind, args.bind, config.database_url)
    options = default_options(
        bind=args.bind,
        workers=args.workers,
        threads=args.threads,
        timeout=args.timeout,
        log_level=config.log_level,
    )
    policy = PolicySnapshot(config.policy_file) if config.policy_file else None
    if policy is not None:
        os.environ["RUNKEYS_POLICY_FILE"] = str(policy.path)  # what the workers load
    try:
        ServiceApplication(options, policy).run()
    finally:
        if policy is not None:
            policy.remove()
    return 0


def worker_command(args: argparse.Namespace) -> int:
    from handler import logs
    from handler.background import WorkLoop
    from handler.config import ServiceConfig
    from handler.service import Service

    config = ServiceConfig.for_worker(os.environ)
    logs.configure(config.log_level)
    service = Service(
        config, ledger=_existing_ledger(config.database_url, migrate_older=True, logged=True)
    )
    loop = WorkLoop(service, sweep=not args.no_sweep)
    if args.once:
        done = loop.worker.drain()
        print(json.dumps({"retired_or_attempted": done}))
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop())
    loop.run()
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    from handler import logs
    from handler.config import ServiceConfig
    from handler.service import Service
    from handler.sweeper import Sweeper

    environ = os.environ
    config = (
        ServiceConfig.for_ledger(environ)
        if args.no_reconcile
        else ServiceConfig.for_worker(environ)
    )
    logs.configure(config.log_level)
    ledger = _existing_ledger(config.database_url, migrate_older=True, logged=True)
    report = Sweeper(Service(config, ledger=ledger)).sweep(reconcile=not args.no_reconcile)
    print(json.dumps(report.__dict__))
    return 1 if report.errors else 0


def leases_command(args: argparse.Namespace) -> int:
    from handler.config import ServiceConfig
    from handler.ledger.history import history
    from handler.ledger.leases import LeaseFilter, find

    ledger = _existing_ledger(ServiceConfig.for_ledger(os.environ).database_url)
    where = LeaseFilter(
        states=tuple(LeaseState(s) for s in args.state or ()),
        repository=args.repository,
        run_id=args.run,
        pr_number=args.pr,
        lifetime=Lifetime(args.lifetime) if args.lifetime else None,
        provider=args.provider,
        lease_id=args.lease,
        limit=args.limit,
    )
    with ledger.begin() as conn:
        found = find(conn, where)
        events = history(conn, args.lease) if args.lease else []
    if args.json:
        for lease in found:
            data = lease.to_json()
            if args.lease:
                data["events"] = [
                    {
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "detail": e.detail,
                    }
                    for e in events
                ]
            print(json.dumps(data))
        return 0
    _print_table(found)
    for e in events:
        at = e.at.isoformat(timespec="seconds")
        actor, action, detail = escaped(e.actor), escaped(e.action), escaped(e.detail)
        print(f"  {at}  {actor:<10} {action:<15} {detail}")
    return 0


def audit_command(args: argparse.Namespace) -> int:
    from handler.config import ServiceConfig
    from handler.ledger.broker import list_decisions

    ledger = _existing_ledger(ServiceConfig.for_ledger(os.environ).database_url)
    with ledger.begin() as conn:
        found = list_decisions(
            conn, repository=args.repository, denied=args.denied, limit=args.limit
        )
    ledger.close()
    if args.json:
        for decision in found:
            print(json.dumps(decision))
        return 0
    for d in found:
        at = d["at"][:19]
        who = f"{d['repository']} {d['ref']} run {d['run_id']}/{d['run_attempt']}"
        print(escaped(f"{at}  {d['outcome'].upper():<5} {','.join(d['rules'])}  {who}"))
        print(escaped(f"    actor {d['actor']}  workflow {d['workflow']}  to {d['destination']}"))
        for key in d["keys"]:
            why = f"  {key['field']}: {key['reason']}" if key["outcome"] == "deny" else ""
            line = f"    {key['outcome']:<5} {key['name']} ({key['provider']}) by {key['rule']}"
            print(escaped(line + why))
    return 0


def status_command(args: argparse.Namespace) -> int:
    from handler.config import ServiceConfig, worker_settings
    from handler.status import as_json, as_text, github_limits, read_status

    warn_after = worker_settings(os.environ).backlog_warn_after.total_seconds()
    limits = github_limits(args.metrics) if args.metrics else None
    ledger = _existing_ledger(ServiceConfig.for_ledger(os.environ).database_url)
    status = read_status(ledger, datetime.now(UTC), warn_after)
    ledger.close()
    print(as_json(status, limits) if args.json else "\n".join(as_text(status, limits)))
    return 1 if any(status.behind(b) for b in status.installations) else 0


def _print_table(leases: list[Any]) -> None:
    header = ("ID", "STATE", "LIFETIME", "KEY", "PROVIDER", "REPOSITORY", "RUN", "EXPIRES")
    rows = [
        tuple(
            escaped(str(cell))
            for cell in (
                lease.id,
                lease.state.value,
                lease.lifetime.value,
                lease.key_name,
                lease.provider,
                lease.repository,
                f"{lease.run_id}/{lease.run_attempt}",
                lease.expires_at.isoformat(timespec="minutes"),
            )
        )
        for lease in leases
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if not rows:
        print("(no leases)", file=sys.stderr)


def revoke_command(args: argparse.Namespace) -> int:
    from handler.config import ServiceConfig
    from handler.operator import check_target, matches_any, not_queued, operator, revoke

    lease_ids = tuple(args.lease or ())
    target = {
        "repository": args.repository,
        "run_id": args.run,
        "pr_number": args.pr,
    }
    check_target(lease_ids=lease_ids, everything=args.all, **target)
    who = operator(args.operator, os.environ)  # a bad name stops here, before any change
    ledger = _existing_ledger(ServiceConfig.for_ledger(os.environ).database_url)
    queued = revoke(
        ledger,
        lease_ids=lease_ids,
        everything=args.all,
        operator=who.describe(),
        reason=args.reason,
        **target,
    )
    print(json.dumps({"queued": queued}))
    if lease_ids:
        left = not_queued(ledger, lease_ids, queued)
        unknown = [lease_id for lease_id, state in left.items() if state == "unknown"]
        for lease_id, state in left.items():
            if state != "unknown":
                print(escaped(f"runkeys: {lease_id} is {state}: not queued"), file=sys.stderr)
        if unknown:
            names = ", ".join(escaped(lease_id) for lease_id in unknown)
            print(f"runkeys: no lease with id {names} in this ledger", file=sys.stderr)
            return 1
    elif not queued and not matches_any(ledger, **target):
        print("runkeys: no lease in this ledger matches; nothing was queued", file=sys.stderr)
        return 1
    return 0


def policy_check_command(args: argparse.Namespace) -> int:
    """Exit 0 when every key is allowed, 1 on any denial, 2 when an input is unusable."""
    from handler import policy as rules
    from runkeys.errors import RunkeysError
    from runkeys.spec import SpecRules, parse_keys

    try:
        policy = rules.load_policy_file(args.policy)
        claims = rules.claims_from(json.loads(_read(args.claims, "claims")))
        pull_request = claims.event_name.startswith("pull_request")
        checks = SpecRules(max_ttl=_max_ttl(args.max_ttl), pull_request=pull_request)
        spec = parse_keys(_read(args.keys, "keys"), checks)
    except RunkeysError as exc:
        text = f"runkeys policy check: {exc.title}: {exc.explain()}"
        print("\n".join(escaped(line) for line in text.splitlines()), file=sys.stderr)
        return 2
    except ValueError as exc:  # the claims file is not JSON
        print(escaped(f"runkeys policy check: {args.claims}: not JSON: {exc}"), file=sys.stderr)
        return 2
    if args.environment:
        destination = rules.Destination("environment", args.environment)
    else:
        destination = rules.Destination("repository" if args.repository_secrets else "job")
    decision = rules.evaluate(policy, claims, spec, destination)
    for key in decision.keys:
        what = key.provider + (f" on {key.connection}" if key.connection else "")
        rule = key.rule if key.rule == rules.NO_RULE else f"rule {key.rule!r}"
        line = f"{'allow' if key.allowed else 'deny '}  {key.key} ({what}): {rule}"
        if not key.allowed:
            line += f"; {key.field}: {key.reason}; fix: {key.fix}"
        print(escaped(line))
    denied = sum(not key.allowed for key in decision.keys)
    print(f"{len(decision.keys) - denied} allowed, {denied} denied, to {destination.describe()}")
    if args.json:
        print(rules.record(decision, claims, destination).to_log())
    return 1 if denied else 0


def _max_ttl(text: str) -> timedelta:
    from runkeys.durations import parse_duration
    from runkeys.errors import ConfigError

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError("--max-ttl", str(exc)) from None


def _read(path: str, what: str) -> str:
    from runkeys.errors import ConfigError

    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        cause = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"--{what}", f"cannot read {path}: {cause}") from None


def _existing_ledger(url: str, *, migrate_older: bool = False, logged: bool = False) -> Ledger:
    """The ledger the service made, never a new one (see `open_existing`), said on stderr:
    a line for a person, or with `logged` a JSON log line among the command's others."""
    from handler import logs
    from handler.ledger.existing import open_existing, shown

    ledger = open_existing(url, migrate_older=migrate_older)
    if logged:
        logs.event(logs.logger("cli"), "ledger opened", ledger=shown(url))
    else:
        print(escaped(f"runkeys: ledger {shown(url)}"), file=sys.stderr)
    return ledger


def escaped(text: str) -> str:
    """`text` with every character a terminal could act on written as an escape (`\\x1b`):
    ledger strings come from jobs and are printed to an operator's terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
