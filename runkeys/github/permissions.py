"""Which GitHub App permission each endpoint needs, from GitHub's own table
(github/docs `server-to-server-permissions.json`, copied beside this module), so a 403 can say
which permission to grant, and the sandbox can refuse what GitHub would refuse."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Requirement:
    permission: str  # e.g. "secrets", "environments", "administration", "actions"
    access: str  # "read" | "write"

    def label(self) -> str:
        return f"{self.permission.replace('_', ' ').title()}: {self.access}"


@cache
def _table() -> tuple[tuple[str, re.Pattern[str], Requirement], ...]:
    raw = json.loads(resources.files("runkeys.github").joinpath("app_permissions.json").read_text())
    rows = []
    for entry in raw["entries"]:
        if not entry.get("server-to-server"):
            continue
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(entry["requestPath"]))
        rows.append(
            (
                entry["verb"].upper(),
                re.compile(f"^{pattern}$"),
                Requirement(entry["permission"], entry["access"]),
            )
        )
    return tuple(rows)


def required(method: str, path: str) -> tuple[Requirement, ...]:
    """Every permission GitHub lists for `method path` (a template or a concrete path)."""
    path = path.split("?", 1)[0]
    found = [req for verb, rx, req in _table() if verb == method.upper() and rx.match(path)]
    return tuple(dict.fromkeys(found))
