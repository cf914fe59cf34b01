"""An operator's `runkeys revoke`: queue leases by id, run, pull request or repository. The
worker retires them as it would after a webhook; each lease's history names the operator."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass

from handler.ledger import Ledger
from handler.ledger.leases import LeaseFilter, find, get
from handler.ledger.queue import LeasesById, queue, retry_failed_now
from handler.service import utc_now
from runkeys.errors import RunkeysError
from runkeys.leases import LeaseState

EVERY = 1_000_000
OPERATOR_SETTING = "RUNKEYS_OPERATOR"
NAME_LIMIT = 64  # the history's detail keeps 500 characters, the reason comes after the name


def revoke(
    ledger: Ledger,
    *,
    lease_ids: tuple[str, ...] = (),
    repository: str | None = None,
    run_id: int | None = None,
    pr_number: int | None = None,
    everything: bool = False,
    operator: str,
    reason: str = "",
) -> list[str]:
    """Queue the matching `active` leases, and the `failed` ones named by id; returns their
    ids. `operator` is who asked, as `Operator.describe` says it."""
    check_target(
        lease_ids=lease_ids,
        repository=repository,
        run_id=run_id,
        pr_number=pr_number,
        everything=everything,
    )
    detail = f"operator {operator}" + (f": {reason}" if reason else "")
    now = utc_now()
    with ledger.begin() as conn:
        if lease_ids:
            ids = lease_ids
        else:
            where = LeaseFilter(
                states=(LeaseState.ACTIVE,),
                repository=repository,
                run_id=run_id,
                pr_number=pr_number,
                limit=EVERY,
            )
            ids = tuple(lease.id for lease in find(conn, where))
        if not ids:
            return []
        queued = queue(conn, LeasesById(ids), actor="operator", reason=detail, now=now)
        if lease_ids:  # named one by one: a `failed` one is tried again now, not in hours
            queued += retry_failed_now(conn, ids, actor="operator", reason=detail, now=now)
        return queued


def check_target(
    *,
    lease_ids: tuple[str, ...] = (),
    repository: str | None = None,
    run_id: int | None = None,
    pr_number: int | None = None,
    everything: bool = False,
) -> None:
    """Refuse an ambiguous or empty target before the ledger is opened."""
    if (pr_number is not None or everything) and not repository:
        raise RunkeysError(
            "--pr and --all need --repository", fix="add --repository owner/name (or its id)"
        )
    if not (lease_ids or run_id is not None or pr_number is not None or everything):
        raise RunkeysError("Nothing to revoke was named", fix="give --lease, --run, --pr or --all")


def not_queued(ledger: Ledger, lease_ids: tuple[str, ...], queued: list[str]) -> dict[str, str]:
    """The named leases `revoke` left alone, each with its state, or `unknown` for an id the
    ledger does not hold."""
    left = [lease_id for lease_id in dict.fromkeys(lease_ids) if lease_id not in queued]
    with ledger.begin() as conn:
        found = {lease_id: get(conn, lease_id) for lease_id in left}
    return {
        lease_id: "unknown" if lease is None else lease.state.value
        for lease_id, lease in found.items()
    }


def matches_any(
    ledger: Ledger,
    *,
    repository: str | None = None,
    run_id: int | None = None,
    pr_number: int | None = None,
) -> bool:
    """Whether the ledger holds any lease, in any state, of this run, pull request or
    repository: a target that matches none is more likely a typo than work already done."""
    where = LeaseFilter(repository=repository, run_id=run_id, pr_number=pr_number, limit=1)
    with ledger.begin() as conn:
        return bool(find(conn, where))


@dataclass(frozen=True)
class Operator:
    """Who runs an operator's command, for the leases' history."""

    name: str
    given: bool  # by `--as` or RUNKEYS_OPERATOR; else the OS user, which anyone can set

    def describe(self) -> str:
        if self.given:
            return self.name
        return f"{self.name} (OS user; no --as or {OPERATOR_SETTING} given)"


def operator(given: str | None, environ: Mapping[str, str]) -> Operator:
    """`--as NAME`, else RUNKEYS_OPERATOR, else the OS user; each checked, as `runkeys leases`
    prints it back to a terminal."""
    if given is not None:
        return Operator(_checked_name(given, "--as"), given=True)
    if environ.get(OPERATOR_SETTING, "").strip():
        return Operator(_checked_name(environ[OPERATOR_SETTING], OPERATOR_SETTING), given=True)
    try:
        user = getpass.getuser()  # LOGNAME, USER, … before the password database
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return Operator(_checked_name(user, "the OS user name"), given=False)


def _checked_name(raw: str, source: str) -> str:
    name = raw.strip()
    if name and len(name) <= NAME_LIMIT and name.isprintable():
        return name
    # ascii(): the refused name may hold the very control characters it is refused for
    raise RunkeysError(
        f"{source} is not a name to record: {raw[: NAME_LIMIT * 2]!a}",
        fix=f"give a printable name of at most {NAME_LIMIT} characters, "
        f"with --as NAME or {OPERATOR_SETTING}",
    )
