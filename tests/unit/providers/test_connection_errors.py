"""A connection string the driver cannot read gives runkeys' own message, naming the variable,
never the driver's (which quotes what it could not read: a password, or its start). Each
connection here is made directly, as a caller that skips `load_connections` would; no server
is reached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runkeys.connections import Connection
from runkeys.errors import ProviderError
from runkeys.providers.base import MintRequest, Provider, RevokeRequest
from runkeys.providers.mysql import MysqlProvider
from runkeys.providers.postgres import PostgresProvider
from runkeys.providers.redis_acl import RedisAclProvider

EXPIRES_AT = datetime.now(UTC) + timedelta(hours=1)

UNREADABLE = [
    # libpq: `invalid percent-encoded token: "pct%zz-Secret9"`
    (PostgresProvider, "postgresql://u:pct%zz-Secret9@127.0.0.1:5432/test", "pct%zz-Secret9"),
    # libpq: `missing "=" after "secretpart" in connection info string`
    (PostgresProvider, "host=127.0.0.1 password=x secretpart", "secretpart"),
    # Python: `Port could not be cast to integer value as 'hashSecret'`
    (MysqlProvider, "mysql://u:hashSecret#88@127.0.0.1:3306/test", "hashSecret"),
    (RedisAclProvider, "redis://u:hashSecret#88@127.0.0.1:6379/0", "hashSecret"),
    (RedisAclProvider, "redis://u:slashSecret/88@127.0.0.1:6379/0", "slashSecret"),
]


@pytest.mark.parametrize(("provider", "url", "secret"), UNREADABLE)
def test_an_unreadable_connection_is_named_not_quoted(
    provider: type[Provider], url: str, secret: str
) -> None:
    connection = Connection("CI_DB", url)
    mint = MintRequest("DB", {}, EXPIRES_AT, "rk_0123456789abcdef_db", connection)
    revoke = RevokeRequest("rk_0123456789abcdef_db", {}, connection)
    for call in (lambda: provider().mint(mint), lambda: provider().revoke(revoke)):
        with pytest.raises(ProviderError) as caught:
            call()
        text = caught.value.explain()
        assert "the URL" in text
        assert "in RUNKEYS_CONNECTION_CI_DB could not be parsed" in text
        assert "percent-encode" in text
        assert secret not in text
        assert not caught.value.retryable
