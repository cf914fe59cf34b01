"""Which GitHub App permission each endpoint needs: the stand-in's own copy of GitHub's table
(github/docs, `src/github-apps/data/fpt-2022-11-28/server-to-server-permissions.json`, the
entries in `app_permissions.json` beside this module), published as
https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps.
Not the product's copy, so that a wrong entry there fails a test here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Requirement:
    permission: str  # e.g. "secrets", "environments", "administration", "actions"
    access: str  # "read" | "write"

    def label(self) -> str:
        return f"{self.permission.replace('_', ' ').title()}: {self.access}"


Template = tuple[str | None, ...]  # a path's segments; None where GitHub's path has `{name}`


@cache
def _table() -> dict[tuple[str, int], list[tuple[Template, Requirement]]]:
    text = resources.files("runkeys_sandbox.server").joinpath("app_permissions.json").read_text()
    table: dict[tuple[str, int], list[tuple[Template, Requirement]]] = {}
    for entry in json.loads(text)["entries"]:
        if entry.get("server-to-server"):
            template = tuple(
                None if s.startswith("{") and s.endswith("}") else s
                for s in entry["requestPath"].strip("/").split("/")
            )
            row = (template, Requirement(entry["permission"], entry["access"]))
            table.setdefault((entry["verb"].upper(), len(template)), []).append(row)
    return table


def required(method: str, path: str) -> tuple[Requirement, ...]:
    """Every permission GitHub lists for `method path` (a template or a concrete path)."""
    segments = path.split("?", 1)[0].strip("/").split("/")
    found = [
        need
        for template, need in _table().get((method.upper(), len(segments)), [])
        if all(s if t is None else t == s for t, s in zip(template, segments, strict=True))
    ]
    return tuple(dict.fromkeys(found))
