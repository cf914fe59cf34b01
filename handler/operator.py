"""An operator's `runkeys revoke`: queue leases by id, run, pull request or repository. The
worker retires them as it would after a webhook; each lease's history names the operator."""

from __future__ import annotations

import getpass

from handler.ledger import Ledger
from handler.ledger.leases import LeaseFilter, find
from handler.ledger.queue import LeasesById, queue
from handler.service import utc_now
from runkeys.errors import RunkeysError
from runkeys.leases import LeaseState

EVERY = 1_000_000


def revoke(
    ledger: Ledger,
    *,
    lease_ids: tuple[str, ...] = (),
    repository: str | None = None,
    run_id: int | None = None,
    pr_number: int | None = None,
    everything: bool = False,
    reason: str = "",
) -> list[str]:
    """Queue the matching `active` leases; returns their ids."""
    check_target(
        lease_ids=lease_ids,
        repository=repository,
        run_id=run_id,
        pr_number=pr_number,
        everything=everything,
    )
    who = _operator()
    detail = f"operator {who}" + (f": {reason}" if reason else "")
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
        return queue(conn, LeasesById(ids), actor="operator", reason=detail, now=now)


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


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
