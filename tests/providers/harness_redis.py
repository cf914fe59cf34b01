"""Redis for the conformance suite.

The default user here is open (`nopass`), which does not weaken the checks: the minted user is
used through its own URL (redis-py sends `AUTH user password` on connect), a wrong password is
refused, and a command or key outside its rules answers NOPERM — which the open default user
would never do, so the commands really ran as the minted user. The provider's admin is an ACL
user with only the commands it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from runkeys.connections import Connection
from runkeys.providers.base import Minted
from runkeys.providers.redis_acl import RedisAclProvider
from tests.providers.harness import Harness
from tests.services import need, unique

ADMIN_PASSWORD = "redis-admin-Secr3t"
NO_RETRY = Retry(NoBackoff(), 0)  # redis-py would retry a refused password for seconds
ADMIN_RULES = ("+acl|setuser", "+acl|deluser", "+acl|getuser", "+client|kill", "+multi", "+exec")


def command(client: redis.Redis, *args: Any) -> Any:
    """A raw command (redis-py's `execute_command` has no annotations)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class RedisHarness(Harness):
    def __init__(self) -> None:
        super().__init__()
        self.root = redis.Redis.from_url(need("redis"))
        self.base = unique("rk_t")
        self.admin = f"{self.base}_adm"
        self.provider = RedisAclProvider()
        self.connection = Connection(
            "CI_CACHE", f"redis://{self.admin}:{ADMIN_PASSWORD}@127.0.0.1:6379/0"
        )
        self.params = {
            "keys": [f"{self.base}:*"],
            "channels": [f"{self.base}:events"],
            "categories": ["read", "write", "connection"],
        }

    def setup(self) -> None:
        command(
            self.root,
            "ACL",
            "SETUSER",
            self.admin,
            "reset",
            "on",
            f">{ADMIN_PASSWORD}",
            *ADMIN_RULES,
        )

    def use(self, minted: Minted) -> None:
        client = redis.Redis.from_url(minted.value, retry=NO_RETRY)
        client.set(f"{self.base}:greeting", "hello")
        assert client.get(f"{self.base}:greeting") == b"hello"
        for refused in (("SET", "elsewhere", "1"), ("FLUSHALL",), ("CONFIG", "SET", "x", "y")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                command(client, *refused)
        wrong = redis.Redis(
            port=6379, username=minted.parts["USER"], password="wrong-password", retry=NO_RETRY
        )
        with pytest.raises(redis.exceptions.AuthenticationError):
            wrong.ping()
        client.close()

    def refused(self, minted: Minted) -> None:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(minted.value, retry=NO_RETRY).ping()

    def hold(self, minted: Minted) -> Callable[[], bool]:
        # No reconnect: a killed connection must show as dead, not be silently replaced.
        session = redis.Redis.from_url(minted.value, retry=NO_RETRY, single_connection_client=True)
        session.ping()

        def alive() -> bool:
            try:
                session.ping()
            except redis.exceptions.ConnectionError:
                return False
            return True

        return alive

    def leftovers(self, reference: str) -> list[str]:
        users = [str(u) for u in self.root.acl_list() if str(u).startswith(f"user {reference} ")]
        clients = [f"client {c['id']}" for c in self.root.client_list() if c["user"] == reference]
        return users + clients

    def injections(self) -> list[dict[str, Any]]:
        return [
            {"keys": ["app:* allkeys"]},
            {"keys": ["app:*", "* +@all"]},
            {"keys": ["app:*\n+@all"]},
            {"keys": ['app"']},
            {"channels": ["x &*"]},
            {"categories": ["all"]},
            {"categories": ["admin"]},
            {"categories": ["dangerous"]},
            {"categories": ["read +@all"]},
            {"commands": ["+@all"]},
            {"commands": ["config"]},
            {"commands": ["config|set"]},
            {"commands": ["acl"]},
            {"commands": ["flushall"]},
            {"commands": ["client"]},
            {"commands": ["get >newpassword"]},
            {"commands": ["function|delete"]},
            {"commands": ["script"]},
            {"commands": ["scan"]},
            {"password": "x"},
        ]

    def backend_refusal(self) -> dict[str, Any]:
        return {**self.params, "commands": ["nosuchcommand"]}

    def cleanup(self) -> None:
        for user in [*self.labels, self.admin]:
            command(self.root, "ACL", "DELUSER", user)
        keys = list(self.root.scan_iter(f"{self.base}:*"))
        if keys:
            self.root.delete(*keys)
        self.root.close()
