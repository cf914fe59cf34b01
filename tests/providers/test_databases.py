"""What the database providers promise beyond the conformance suite: the key's value is a URL
drivers take (with its parts), the backend's own limits are set, what a role created is kept,
and the password travels as a hash where the server allows it."""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest
import redis
from psycopg import sql

from runkeys.connections import Connection
from runkeys.errors import ProviderError
from runkeys.providers.base import DatabaseAccount, MintRequest
from runkeys.providers.postgres import _create_role
from tests.providers.harness import EXPIRES_AT, Harness
from tests.providers.harness_mysql import MysqlHarness, connect_url
from tests.providers.harness_postgres import PostgresHarness
from tests.providers.harness_redis import NO_RETRY, RedisHarness, command

pytestmark = pytest.mark.services


# -- the value -------------------------------------------------------------------------------


def test_a_value_url_escapes_what_needs_it_and_drivers_read_it_back() -> None:
    account = DatabaseAccount("rk_a", "p@ss:w/rd?#%", "/var/run/postgresql", 5432, "my db")
    url = account.url("postgresql", {"sslmode": "require"})
    assert url == (
        "postgresql://rk_a:p%40ss%3Aw%2Frd%3F%23%25@%2Fvar%2Frun%2Fpostgresql:5432/my%20db"
        "?sslmode=require"
    )
    parsed = psycopg.conninfo.conninfo_to_dict(url)
    assert parsed["password"] == "p@ss:w/rd?#%"
    assert parsed["host"] == "/var/run/postgresql"
    assert parsed["dbname"] == "my db"
    spaced = psycopg.conninfo.conninfo_to_dict(account.url("postgresql", {"options": "-c a=b"}))
    assert spaced["options"] == "-c a=b"
    ipv6 = DatabaseAccount("u", "p", "::1", 6379, "0").url("redis")
    assert ipv6 == "redis://u:p@[::1]:6379/0"
    minted = account.minted("postgresql", reference="rk_a", expires_at=EXPIRES_AT)
    assert minted.parts["PASSWORD"] == "p@ss:w/rd?#%"
    assert minted.parts["PORT"] == "5432"


def test_postgres_value_and_parts(postgres: PostgresHarness) -> None:
    minted = postgres.mint()
    parsed = psycopg.conninfo.conninfo_to_dict(minted.value)
    assert minted.value.startswith("postgresql://")
    assert parsed["user"] == minted.parts["USER"] == minted.reference
    assert parsed["password"] == minted.parts["PASSWORD"]
    assert (parsed["host"], parsed["port"]) == ("127.0.0.1", "5432")
    assert parsed["dbname"] == minted.parts["DATABASE"] == "test"
    assert parsed["sslmode"] == "disable"  # the connection's settings come along
    assert "password" not in repr(minted).lower()


def test_mysql_value_and_parts(mysql: MysqlHarness) -> None:
    minted = mysql.mint()
    parts = urllib.parse.urlsplit(minted.value)
    assert parts.scheme == "mysql"
    assert parts.username == minted.parts["USER"] == minted.reference.partition("@")[0]
    assert parts.password == minted.parts["PASSWORD"]
    assert parts.path == "/" + mysql.database == "/" + minted.parts["DATABASE"]


def test_redis_value_and_parts(redis_acl: RedisHarness) -> None:
    minted = redis_acl.mint()
    parts = urllib.parse.urlsplit(minted.value)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "redis",
        "127.0.0.1",
        6379,
        "/0",
    )
    assert parts.username == minted.parts["USER"] == minted.reference
    assert minted.parts["DATABASE"] == "0"


# -- postgres --------------------------------------------------------------------------------


def test_postgres_sends_a_verifier_never_the_password(postgres: PostgresHarness) -> None:
    request = MintRequest("K", postgres.params, EXPIRES_AT, "rk_x")
    with psycopg.connect(postgres.super_url) as conn:
        verifier = conn.pgconn.encrypt_password(b"the-password", b"rk_x", None).decode()
        statement = _create_role("rk_x", verifier, request).as_string(conn)
    assert "the-password" not in statement
    assert verifier in statement
    assert f"VALID UNTIL '{EXPIRES_AT.isoformat()}'" in statement
    assert statement.endswith(f'CONNECTION LIMIT 3 IN ROLE "{postgres.group}"')


def test_postgres_hands_what_the_role_created_to_the_admin(postgres: PostgresHarness) -> None:
    minted = postgres.mint()
    postgres.use(minted)  # creates a table
    assert postgres.owner_of_mine() == minted.reference
    postgres.revoke(minted)
    assert postgres.owner_of_mine() == postgres.admin


def test_postgres_a_naive_expiry_is_taken_as_utc(postgres: PostgresHarness) -> None:
    naive = datetime(2031, 1, 2, 3, 4, 5)
    minted = postgres.provider.mint(
        MintRequest("K", {}, naive, postgres.label(), postgres.connection)
    )
    stored = postgres.stored(minted.reference)
    assert stored is not None
    assert stored[1] == naive.replace(tzinfo=UTC)


def test_postgres_a_malformed_dsn_is_not_retryable(postgres: PostgresHarness) -> None:
    broken = Connection("CI_DB", "host=127.0.0.1 port=5432 dbname")
    with pytest.raises(ProviderError) as caught:
        postgres.mint(connection=broken)
    assert not caught.value.retryable
    assert "RUNKEYS_CONNECTION_CI_DB" in caught.value.fix


def test_postgres_refuses_a_reference_that_is_not_a_role_name(postgres: PostgresHarness) -> None:
    with pytest.raises(ProviderError, match="not a valid account name") as caught:
        postgres.revoke('x"; DROP ROLE postgres; --')
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("make", "reference"),
    [
        (PostgresHarness, "postgres"),
        (PostgresHarness, "app_owner"),
        (MysqlHarness, "root@localhost"),
        (MysqlHarness, "app@%"),
        (RedisHarness, "default"),
    ],
)
def test_revoke_refuses_an_account_runkeys_did_not_make(
    make: Callable[[], Harness], reference: str
) -> None:
    """Whatever a ledger row says: refused before anything connects (this harness's admin
    account does not even exist), and not retried as if the server were down."""
    harness = make()
    with pytest.raises(ProviderError, match="not an account runkeys makes") as caught:
        harness.revoke(reference)
    assert not caught.value.retryable


def test_postgres_an_admin_at_its_connection_limit_is_retryable(postgres: PostgresHarness) -> None:
    with psycopg.connect(postgres.super_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} CONNECTION LIMIT 1").format(sql.Identifier(postgres.admin))
        )
    assert postgres.connection is not None
    with psycopg.connect(postgres.connection.url), pytest.raises(ProviderError) as caught:
        postgres.mint()
    assert caught.value.retryable, caught.value
    assert "too many connections" in str(caught.value)


# -- mysql -----------------------------------------------------------------------------------


def test_mysql_table_grant_host_and_connection_limit(mysql: MysqlHarness) -> None:
    params = {
        "host": "127.0.0.1",
        "connection_limit": 2,
        "grant": [{"database": mysql.database, "table": "items", "privileges": ["select"]}],
    }
    minted = mysql.mint(params)
    assert minted.reference.endswith("@127.0.0.1")
    user = minted.parts["USER"]
    rows = mysql.root(
        "SELECT host, max_user_connections FROM mysql.user WHERE user = %s", args=(user,)
    )
    assert rows == [("127.0.0.1", 2)]
    with connect_url(minted.value) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM `{mysql.database}`.items")
    mysql.revoke(minted, params=params)
    assert mysql.leftovers(minted.reference) == []


def test_mysql_stores_the_password_only_as_its_hash(mysql: MysqlHarness) -> None:
    minted = mysql.mint()
    user = minted.parts["USER"]
    (grants,) = mysql.root(f"SHOW CREATE USER `{user}`@`%`")
    inner = hashlib.sha1(minted.parts["PASSWORD"].encode()).digest()
    assert "*" + hashlib.sha1(inner).hexdigest().upper() in grants[0]


def test_mysql_an_admin_at_its_connection_limit_is_retryable(mysql: MysqlHarness) -> None:
    mysql.root(f"ALTER USER '{mysql.admin}'@'%' WITH MAX_USER_CONNECTIONS 1")
    assert mysql.connection is not None
    with connect_url(mysql.connection.url), pytest.raises(ProviderError) as caught:
        mysql.mint()
    assert caught.value.retryable, caught.value
    assert "1226" in str(caught.value)


def test_mysql_refuses_a_url_setting_it_does_not_know(mysql: MysqlHarness) -> None:
    assert mysql.connection is not None
    odd = Connection("CI_DB", mysql.connection.url + "?init_command=DROP+TABLE+x")
    with pytest.raises(ProviderError, match="init_command") as caught:
        mysql.mint(connection=odd)
    assert not caught.value.retryable
    assert_no_user = mysql.leftovers(mysql.labels[-1])
    assert assert_no_user == []


# -- redis -----------------------------------------------------------------------------------


def test_redis_keeps_only_a_hash_of_the_password(redis_acl: RedisHarness) -> None:
    minted = redis_acl.mint()
    user = command(redis_acl.root, "ACL", "GETUSER", minted.reference)
    digest = hashlib.sha256(minted.parts["PASSWORD"].encode()).hexdigest()
    assert user[b"passwords"] == [digest.encode()]
    assert minted.parts["PASSWORD"] not in str(redis_acl.root.acl_list())


def test_redis_channels_and_commands_named_one_by_one(redis_acl: RedisHarness) -> None:
    base = redis_acl.base
    params = {**redis_acl.params, "categories": ["read", "write", "pubsub"], "commands": ["sort"]}
    client = redis.Redis.from_url(redis_acl.mint(params).value, retry=NO_RETRY)
    client.rpush(f"{base}:list", "2", "1")
    assert client.sort(f"{base}:list") == [b"1", b"2"]
    assert client.publish(f"{base}:events", "hi") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.publish("elsewhere", "hi")
    without_sort = redis.Redis.from_url(redis_acl.mint().value, retry=NO_RETRY)
    with pytest.raises(redis.exceptions.NoPermissionError):
        without_sort.sort(f"{base}:list")  # SORT is @dangerous: only when named


def test_redis_on_another_database_may_select_it(redis_acl: RedisHarness) -> None:
    assert redis_acl.connection is not None
    on_db_3 = Connection("CI_CACHE", redis_acl.connection.url.replace("/0", "/3"))
    minted = redis_acl.mint(connection=on_db_3)
    assert minted.value.endswith("/3")
    client = redis.Redis.from_url(minted.value, retry=NO_RETRY)  # sends SELECT 3 first
    client.set(f"{redis_acl.base}:on3", "x")
    assert redis_acl.root.get(f"{redis_acl.base}:on3") is None  # it went to database 3
    client.delete(f"{redis_acl.base}:on3")
    redis_acl.revoke(minted, connection=on_db_3)


def test_redis_refuses_a_url_that_is_not_redis(redis_acl: RedisHarness) -> None:
    with pytest.raises(ProviderError, match="not a Redis URL") as caught:
        redis_acl.mint(connection=Connection("CI_CACHE", "http://127.0.0.1:6379/x"))
    assert not caught.value.retryable
