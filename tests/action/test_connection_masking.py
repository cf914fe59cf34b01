"""A connection's password never reaches the job's log, annotations, summary or files.

For PostgreSQL, MariaDB and Redis, an admin account is created for real with a password holding
`%`, `@`, `:`, `/`, `#` or a literal `%40`, and the real entry points run with its URL twice:
percent-encoded (the step mints, the post step revokes) and written raw, as a careless user
would (the step fails, or logs in with what the URL decodes to). Each time every form of the
password (as written, percent-decoded, percent-encoded, base64, the whole `user:password`, and
what a client that cuts the password at an `@`, `/` or `#` prints) must be masked before any
other line, and appear in no other line, in stderr, or in any file the step wrote.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from action_src.report import PostState
from tests.action.harness import MASK, Run, Step, unescape
from tests.providers.harness_mysql import connect_url
from tests.providers.harness_redis import ADMIN_RULES, command
from tests.services import need, unique

VARIABLE = "RUNKEYS_CONNECTION_CI_DB"


@dataclass(frozen=True)
class Password:
    name: str
    raw: str
    encoded: str  # as it belongs in a URL's user part
    refused_raw: bool  # written raw in a URL, runkeys refuses the URL
    # What a client cutting the raw URL's password at an `@`, `/` or `#` may take for a host
    # or a database name, and print.
    fragments: tuple[str, ...] = ()
    decoded_raw: str | None = None  # what the raw URL's password decodes to, if it differs


PASSWORDS = [
    Password("percent", "pct%zz-Secret9", "pct%25zz-Secret9", refused_raw=True),
    Password(
        "at", "at@Fragment-42x", "at%40Fragment-42x", refused_raw=True, fragments=("Fragment-42x",)
    ),
    Password("colon", "co:lon:Secret-42", "co%3Alon%3ASecret-42", refused_raw=False),
    Password(
        "slash",
        "sl/ash-Secret/77",
        "sl%2Fash-Secret%2F77",
        refused_raw=True,
        fragments=("ash-Secret/77",),
    ),
    Password(
        "hash",
        "ha#sh-Secret#88",
        "ha%23sh-Secret%2388",
        refused_raw=True,
        fragments=("sh-Secret#88",),
    ),
    Password(
        "percent40",
        "enc%40oded-Secret",
        "enc%2540oded-Secret",
        refused_raw=False,
        decoded_raw="enc@oded-Secret",
    ),
]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def forms(user: str, password: Password, *, raw_url: bool) -> dict[str, str]:
    """Label → every form of the password that must be masked and printed nowhere."""
    found = {
        "password": password.raw,
        "percent-encoded": password.encoded,
        "base64": b64(password.raw),
        "user:password": f"{user}:{password.raw}",
        "user:password base64": b64(f"{user}:{password.raw}"),
    }
    if not raw_url:
        found["user:password as written"] = f"{user}:{password.encoded}"
    else:
        found |= {f"fragment {i}": fragment for i, fragment in enumerate(password.fragments)}
        if password.decoded_raw:
            found["decoded"] = password.decoded_raw
    return found


def assert_masked_first_and_nowhere(run: Run, secret: dict[str, str], tmp: Path) -> None:
    others = [i for i, line in enumerate(run.lines) if not line.startswith(MASK)]
    assert others, "the step printed nothing but masks"
    masked_first = {unescape(line[len(MASK) :]) for line in run.lines[: others[0]]}
    for label, form in secret.items():
        assert form in masked_first, f"{label} is not masked before the first other line"
    for number in others:
        line = run.lines[number]
        for label, form in secret.items():
            assert form not in line, f"{label} in line {number}"
            assert form not in unescape(line), f"{label} in line {number}, unescaped"
    places = {"stderr": run.stderr}
    places |= {str(path): path.read_text() for path in tmp.rglob("*") if path.is_file()}
    assert any(places.values()), "the step wrote nothing"
    for where, text in places.items():
        for label, form in secret.items():
            assert form not in text, f"{label} in {where}"


# --- the backends: an admin account with the password, and what the step minted dropped ---------


@dataclass
class Backend:
    provider: str
    admin: str
    url: Callable[[str], str]  # the URL with this user part
    drop: Callable[[str], None]  # a reference the step minted, if it is still there


@contextmanager
def _postgres(password: str) -> Iterator[Backend]:
    admin = unique("rk_t") + "_adm"

    def superuser(statement: sql.Composed) -> None:
        with psycopg.connect(need("postgres"), autocommit=True) as conn:
            conn.execute(statement)

    superuser(
        sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
            sql.Identifier(admin), sql.Literal(password)
        )
    )
    try:
        yield Backend(
            "postgres",
            admin,
            lambda userinfo: f"postgresql://{userinfo}@127.0.0.1:5432/test?sslmode=disable",
            lambda role: superuser(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role))),
        )
    finally:
        superuser(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(admin)))


@contextmanager
def _mysql(password: str) -> Iterator[Backend]:
    admin = unique("rk_t") + "_adm"

    def root(statement: str, *args: Any) -> None:
        with connect_url(need("mysql")) as conn, conn.cursor() as cursor:
            cursor.execute(statement, args or None)

    root("CREATE USER %s@'%%' IDENTIFIED BY %s", admin, password)
    try:
        root("GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %s@'%%'", admin)
        yield Backend(
            "mysql",
            admin,
            lambda userinfo: f"mysql://{userinfo}@127.0.0.1:3306",
            lambda reference: root("DROP USER IF EXISTS %s@%s", *reference.split("@")),
        )
    finally:
        root("DROP USER IF EXISTS %s@'%%'", admin)


@contextmanager
def _redis(password: str) -> Iterator[Backend]:
    admin = unique("rk_t") + "_adm"
    client = redis.Redis.from_url(need("redis"))
    command(client, "ACL", "SETUSER", admin, "reset", "on", f">{password}", *ADMIN_RULES)
    try:
        yield Backend(
            "redis",
            admin,
            lambda userinfo: f"redis://{userinfo}@127.0.0.1:6379/0",
            lambda user: command(client, "ACL", "DELUSER", user),
        )
    finally:
        command(client, "ACL", "DELUSER", admin)
        client.close()


BACKENDS = {"postgres": _postgres, "mysql": _mysql, "redis": _redis}


def run_step(step: Step, backend: Backend, url: str) -> tuple[Run, Run | None]:
    """The main step with one key on the connection, then (if it minted) the post step."""
    keys = f"DB: {{provider: {backend.provider}, connection: ci_db, ttl: 10m, lifetime: job}}"
    main = step.run({"keys": keys}, extra_env={VARIABLE: url})
    if "leases" not in main.state:
        return main, None
    references = [lease.reference for lease in PostState.from_text(main.state["leases"]).leases]
    try:
        post = step.run({}, post=True, extra_env={VARIABLE: url, **step.post_env(main)})
    finally:
        for reference in references:
            backend.drop(reference)
    return main, post


@pytest.mark.parametrize("password", PASSWORDS, ids=[p.name for p in PASSWORDS])
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_a_percent_encoded_password_works_and_is_masked_everywhere(
    tmp_path: Path, kind: str, password: Password
) -> None:
    step = Step(tmp_path / "step")
    with BACKENDS[kind](password.raw) as backend:
        main, post = run_step(step, backend, backend.url(f"{backend.admin}:{password.encoded}"))
        assert main.returncode == 0, main.annotations("error")
        assert main.env["DB"].startswith(("postgresql://rk_", "mysql://rk_", "redis://rk_"))
        assert post is not None
        assert post.annotations("warning") == []
        assert any(line == "DB: revoked." for line in post.lines), post.lines
        secret = forms(backend.admin, password, raw_url=False)
        assert_masked_first_and_nowhere(main, secret, tmp_path)
        assert_masked_first_and_nowhere(post, secret, tmp_path)


@pytest.mark.parametrize("password", PASSWORDS, ids=[p.name for p in PASSWORDS])
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_a_password_written_raw_is_refused_or_fails_without_a_trace(
    tmp_path: Path, kind: str, password: Password
) -> None:
    step = Step(tmp_path / "step")
    with BACKENDS[kind](password.raw) as backend:
        main, post = run_step(step, backend, backend.url(f"{backend.admin}:{password.raw}"))
        secret = forms(backend.admin, password, raw_url=True)
        assert_masked_first_and_nowhere(main, secret, tmp_path)
        if post is not None:
            assert_masked_first_and_nowhere(post, secret, tmp_path)
        if password.refused_raw:
            assert main.returncode == 1
            ((title, message),) = main.annotations("error")
            assert title == "runkeys: Invalid configuration"
            assert message.startswith(f"{VARIABLE}: could not be parsed as a URL: ")
            assert "percent-encode" in message
            assert main.env == {}
            assert post is None
        elif password.decoded_raw is None:  # a raw `:` is fine in a password
            assert main.returncode == 0, main.annotations("error")
        elif kind != "postgres":  # this server's PostgreSQL trusts loopback logins
            # `%40` is read as `@`: another password, which the server refuses.
            assert main.returncode == 1
            ((title, _message),) = main.annotations("error")
            assert title == "runkeys: Provider failed"


def test_a_libpq_key_value_dsn_password_is_masked_as_written_and_as_read(tmp_path: Path) -> None:
    step = Step(tmp_path / "step")
    password = "p w'x@Dsn-Secret#9"
    written = "'p w\\'x@Dsn-Secret#9'"  # quoted, the quote escaped, as libpq wants it
    with _postgres(password) as backend:
        dsn = f"host=127.0.0.1 port=5432 dbname=test user={backend.admin} password={written}"
        main, post = run_step(step, backend, dsn)
        assert main.returncode == 0, main.annotations("error")
        assert post is not None
        assert "DB: revoked." in post.lines
        secret = {"password": password, "as written": written, "base64": b64(password)}
        assert_masked_first_and_nowhere(main, secret, tmp_path)
        assert_masked_first_and_nowhere(post, secret, tmp_path)
