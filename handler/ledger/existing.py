"""Opening a ledger that must exist already: the operator's commands never make one. Only
`runkeys serve` creates a ledger; an operator's typo in `RUNKEYS_DATABASE_URL` (or a command run
in the wrong directory, with the relative SQLite default) must not silently start an empty one.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from handler.ledger import Ledger
from handler.ledger.migrations import HEAD, current_version
from runkeys.errors import RunkeysError

FIX = (
    "start `runkeys serve` once to create the ledger, or set RUNKEYS_DATABASE_URL to the "
    "ledger the service uses"
)
DOCS = "docs/service.md, section 'Operations'"


class LedgerUnusable(RunkeysError):
    title = "Cannot use the ledger"


def shown(url: str) -> str:
    """The URL as it may be printed: no password, no query values (a password can hide there
    too), and a relative SQLite path made absolute (which directory is the question)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        parsed = parsed.set(database=str(Path(parsed.database).resolve()))
    text = parsed.set(query={}).render_as_string(hide_password=True)
    if parsed.query:
        text += "?" + "&".join(f"{name}=***" for name in parsed.query)
    return text


def open_existing(url: str, *, migrate_older: bool) -> Ledger:
    """The ledger at `url`, refused unless it exists and carries runkeys' schema. With
    `migrate_older`, an older schema is brought up to date (the worker's commands, which run
    the service's code against it); without, it is refused (a read must not change a schema
    the running service may not expect yet)."""
    where = shown(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not path.is_file():
            raise LedgerUnusable(f"There is no ledger at {where}: no such file", fix=FIX, docs=DOCS)
    # A bare engine, without the ledger's own (which sets WAL mode on a SQLite file on
    # connect): a file that is not a ledger is left as it was.
    probe = create_engine(url, poolclass=NullPool)
    try:
        with probe.connect() as conn:
            version = current_version(conn)
    except SQLAlchemyError as exc:
        # Never the driver's message: it may quote the connection string.
        raise LedgerUnusable(
            f"The ledger at {where} cannot be opened ({type(exc).__name__})", fix=FIX, docs=DOCS
        ) from None
    finally:
        probe.dispose()
    if version == 0:
        raise LedgerUnusable(
            f"The database at {where} holds no runkeys ledger (no schema)", fix=FIX, docs=DOCS
        )
    if version < HEAD and not migrate_older:
        raise LedgerUnusable(
            f"The ledger at {where} has schema version {version}; this runkeys needs {HEAD}",
            fix="upgrade the service (`runkeys serve` or `runkeys worker` of this version "
            "migrates the ledger at start), or use the runkeys version the service runs",
            docs=DOCS,
        )
    return Ledger.open(url, migrate_schema=migrate_older)
