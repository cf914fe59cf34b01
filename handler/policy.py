"""The broker's policy (issue 15): which verified OIDC claims may mint which keys, within what.

Loaded strictly (an invalid file is refused naming its line) and evaluated as a pure function
of (policy, claims, spec, destination): deny by default, explicit `deny` rules win, and every
denial names the rule, the claim or field, and the fix. No Flask, no ledger: `runkeys policy
check` runs it offline. The reference is docs/policy.md."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import yaml

from runkeys.connections import normalize_name
from runkeys.durations import format_duration, parse_duration
from runkeys.errors import ConfigError, ParamError, RunkeysError
from runkeys.leases import Lifetime
from runkeys.providers import PROVIDERS
from runkeys.providers.http_issuer import HttpIssuerProvider
from runkeys.providers.mysql import DATABASE_PRIVILEGES
from runkeys.providers.redis_acl import CATEGORIES
from runkeys.spec import KeySpec, _UniqueKeyLoader

DOCS = "docs/policy.md"
NO_RULE = "no rule matched"
POLICY_SETTING = "RUNKEYS_POLICY_FILE"

# --- patterns -------------------------------------------------------------------------------

# Claim → how many leading `/` segments compare without case. GitHub owner, repository and
# environment names are case-insensitive; refs, paths and event names are not.
FOLDED_SEGMENTS: Mapping[str, int | None] = {
    "repository": None,  # None: the whole value
    "repository_owner": None,
    "environment": None,
    "workflow_ref": 2,  # `owner/repo/.github/workflows/x.yml@ref`: owner and repo only
    "job_workflow_ref": 2,
    "ref": 0,
    "ref_type": 0,
    "event_name": 0,
    "runner_environment": 0,
}
MATCHED_CLAIMS = (
    "repository",
    "repository_owner",
    "repository_id",
    "ref",
    "ref_type",
    "environment",
    "event_name",
    "workflow_ref",
    "job_workflow_ref",
    "runner_environment",
)


def _glob(segment: str) -> str:
    """GitHub's filter syntax, in part: `*` stops at `/` (so `main*` cannot reach
    `main/x`, nor a workflow's `@ref` another path), `**` does not, `?` is one character."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        if segment.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        char = segment[i]
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str, folded: int | None) -> re.Pattern[str]:
    """`pattern` as a regular expression matched against the whole claim; the first `folded`
    segments (all when None) without case."""
    segments = pattern.split("/")
    cut = len(segments) if folded is None else folded
    parts = [f"(?i:{_glob(s)})" if i < cut else _glob(s) for i, s in enumerate(segments)]
    # ASCII: else `i` also matches U+0131 (dotless i) and `s` U+017F (long s), by Unicode folding.
    return re.compile("/".join(parts), re.ASCII)


def matches(claim: str, value: str | None, patterns: Sequence[str]) -> bool:
    """Whether the claim's value matches one of the policy's patterns. The value is only ever
    the subject: a `*` in a token's claim is a literal star."""
    if value is None:
        return False
    if claim == "repository_id":
        return value in patterns
    folded = FOLDED_SEGMENTS[claim]
    return any(compile_pattern(p, folded).fullmatch(value) for p in patterns)


# --- the policy file ------------------------------------------------------------------------

Patterns = str | list[str]


def _patterns(raw: Patterns | int | list[int | str] | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(str(p) for p in (raw if isinstance(raw, list) else [raw]))


class Match(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Claim → a pattern or a list of them (any may match); every claim named must match."""

    repository: Patterns | None = None
    repository_owner: Patterns | None = None
    repository_id: int | str | list[int | str] | None = None
    ref: Patterns | None = None
    ref_type: Patterns | None = None
    environment: Patterns | None = None
    event_name: Patterns | None = None
    workflow_ref: Patterns | None = None
    job_workflow_ref: Patterns | None = None
    runner_environment: Patterns | None = None

    def __post_init__(self) -> None:
        for claim in MATCHED_CLAIMS:
            raw = getattr(self, claim)
            if raw is not None and not _patterns(raw):
                raise ValueError(f"`{claim}` is an empty list: it could never match; remove it")
            for pattern in _patterns(raw):
                if not pattern.strip():
                    raise ValueError(f"`{claim}` has an empty pattern")
                if claim == "repository_id" and not pattern.isdigit():
                    raise ValueError(f"`{claim}` {pattern!r} is not a repository id (digits)")

    def patterns(self, claim: str) -> tuple[str, ...]:
        return _patterns(getattr(self, claim))

    def named(self) -> list[str]:
        return [claim for claim in MATCHED_CLAIMS if getattr(self, claim) is not None]


class Destinations(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    job: bool = True  # the values reach this job's runner only: the least exposure
    repository_secrets: bool = False
    environments: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if any(not p.strip() for p in self.environments):
            raise ValueError("`environments` has an empty pattern")


class Refusal(msgspec.Struct, frozen=True):
    """Why a key is refused: the claim or field that failed, what, and how to fix it."""

    field: str
    reason: str
    fix: str


DEFAULT_LIFETIMES = [Lifetime.JOB, Lifetime.RUN, Lifetime.PR]  # not `ttl`: it outlives the run


class _Allow(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True, tag_field="provider"
):
    """What one allow entry lets a key be: provider (the tag), connection, TTL, lifetimes."""

    max_ttl: str
    lifetimes: list[Lifetime] = msgspec.field(default_factory=lambda: list(DEFAULT_LIFETIMES))
    connection: str | None = None
    needs_connection: ClassVar[bool] = True

    def __post_init__(self) -> None:
        try:
            parse_duration(self.max_ttl)
        except ValueError as exc:
            raise ValueError(f"`max_ttl` {exc}") from None
        if not self.lifetimes:
            raise ValueError("`lifetimes` is empty: the entry would allow nothing; remove it")
        if self.needs_connection and not (self.connection or "").strip():
            raise ValueError(f"`connection` is missing: a {self.provider} key needs one")
        if not self.needs_connection and self.connection is not None:
            raise ValueError(f"`connection`: a {self.provider} key takes none; remove it")

    @property
    def provider(self) -> str:
        return str(type(self).__struct_config__.tag)

    @property
    def ttl_limit(self) -> timedelta:
        return parse_duration(self.max_ttl)

    def allows_connection(self, connection: str | None) -> bool:
        if self.connection is None:
            return connection is None
        return connection is not None and normalize_name(self.connection) == connection

    def refusal(self, key: KeySpec) -> Refusal | None:
        if key.ttl > self.ttl_limit:
            return Refusal(
                "ttl",
                f"{format_duration(key.ttl)} is longer than the rule's max_ttl of {self.max_ttl}",
                f"set `ttl: {self.max_ttl}` or less on {key.name}",
            )
        if key.lifetime not in self.lifetimes:
            allowed = ", ".join(lt.value for lt in self.lifetimes)
            return Refusal(
                "lifetime",
                f"lifetime {key.lifetime.value!r} is not among the rule's ({allowed})",
                f"use one of: {allowed}",
            )
        return self.bounds(key.params)

    def bounds(self, params: Mapping[str, Any]) -> Refusal | None:
        """The provider's parameters within the entry's lists; None when they are."""
        return None


def _outside(field: str, asked: Sequence[str], allowed: Sequence[str], what: str) -> Refusal | None:
    extra = [name for name in asked if name not in allowed]
    if not extra:
        return None
    listed = ", ".join(allowed) or "none"
    return Refusal(
        field,
        f"{', '.join(map(repr, extra))} not among the {what} the rule allows ({listed})",
        f"ask only for some of: {listed}" if allowed else f"ask for no {what}",
    )


class RandomAllow(_Allow, tag="random", frozen=True):
    needs_connection: ClassVar[bool] = False


class PostgresAllow(_Allow, tag="postgres", frozen=True):
    grant: list[str] = msgspec.field(default_factory=list)  # roles, compared exactly

    def bounds(self, params: Mapping[str, Any]) -> Refusal | None:
        return _outside("grant", [str(r) for r in params.get("grant", [])], self.grant, "roles")


def _privilege(name: str) -> str:
    return " ".join(name.upper().split())  # as the provider grants it: `create  view` → CREATE VIEW


class MysqlAllow(_Allow, tag="mysql", frozen=True):
    privileges: list[str] = msgspec.field(default_factory=list)
    schemas: list[str] = msgspec.field(default_factory=list)  # databases, compared exactly

    def __post_init__(self) -> None:
        super().__post_init__()
        for privilege in self.privileges:
            if _privilege(privilege) not in DATABASE_PRIVILEGES:
                raise ValueError(f"`privileges` {privilege!r} is not one runkeys grants")

    def bounds(self, params: Mapping[str, Any]) -> Refusal | None:
        allowed = [_privilege(p) for p in self.privileges]
        for index, grant in enumerate(params.get("grant", [])):
            where = f"grant[{index}]"
            database = [str(grant.get("database"))]
            if refusal := _outside(f"{where}.database", database, self.schemas, "schemas"):
                return refusal
            asked = [_privilege(str(p)) for p in grant.get("privileges", [])]
            if refusal := _outside(f"{where}.privileges", asked, allowed, "privileges"):
                return refusal
        return None


def _category(name: str) -> str:
    return name.lstrip("+@")  # `@read`, `+@read` and `read` are one category


def _prefix_problem(field: str, prefixes: Sequence[str]) -> None:
    for prefix in prefixes:
        if not prefix or any(c in prefix for c in "*?[]\\"):
            raise ValueError(f"`{field}` {prefix!r} must be a plain, non-empty prefix (no glob)")


def _escapes(field: str, patterns: Sequence[str], prefixes: Sequence[str]) -> Refusal | None:
    """A Redis pattern stays under a prefix when it starts with it literally (prefixes hold
    no glob character, so nothing before the prefix can widen it)."""
    for pattern in patterns:
        if not any(pattern.startswith(prefix) for prefix in prefixes):
            listed = ", ".join(prefixes) or "none"
            return Refusal(
                field,
                f"{pattern!r} is not under a prefix the rule allows ({listed})",
                f"start every pattern with one of: {listed}" if prefixes else f"ask for no {field}",
            )
    return None


class RedisAllow(_Allow, tag="redis", frozen=True):
    categories: list[str] = msgspec.field(default_factory=list)
    commands: list[str] = msgspec.field(default_factory=list)
    key_prefixes: list[str] = msgspec.field(default_factory=list)
    channel_prefixes: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        for category in self.categories:
            if _category(category) not in CATEGORIES:
                raise ValueError(f"`categories` {category!r} is not one runkeys grants")
        _prefix_problem("key_prefixes", self.key_prefixes)
        _prefix_problem("channel_prefixes", self.channel_prefixes)

    def bounds(self, params: Mapping[str, Any]) -> Refusal | None:
        categories = [_category(str(c)) for c in params.get("categories", [])]
        allowed = [_category(c) for c in self.categories]
        # Taking a command away (`-keys`) narrows the key: always allowed.
        commands = [str(c) for c in params.get("commands", []) if not str(c).startswith("-")]
        return (
            _outside("categories", categories, allowed, "categories")
            or _outside("commands", commands, self.commands, "commands")
            or _escapes("keys", [str(p) for p in params.get("keys", [])], self.key_prefixes)
            or _escapes(
                "channels", [str(p) for p in params.get("channels", [])], self.channel_prefixes
            )
        )


class HttpAllow(_Allow, tag="http", frozen=True):
    """The issuer's requests are the policy's: a spec that edits them could send the
    connection's credentials wherever it liked."""

    template: dict[str, Any]

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            HttpIssuerProvider(None).check_params(self.template)
        except ParamError as exc:
            raise ValueError(f"`template` {exc.field}: {exc.cause}") from None

    def bounds(self, params: Mapping[str, Any]) -> Refusal | None:
        for field in sorted(set(params) | set(self.template)):
            if params.get(field) != self.template.get(field):
                return Refusal(
                    field,
                    "differs from the http template the policy fixes",
                    "copy the template from the policy exactly",
                )
        return None


Allow = RandomAllow | PostgresAllow | MysqlAllow | RedisAllow | HttpAllow
BINDING_CLAIMS = ("repository", "repository_owner", "repository_id")


def _binds(claim: str, patterns: Sequence[str]) -> bool:
    """Whether every pattern names its owner literally (a glob owner is anyone's)."""
    owners = [p.split("/")[0] if claim == "repository" else p for p in patterns]
    return bool(owners) and not any(c in owner for owner in owners for c in "*?")


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str
    match: Match
    allow: list[Allow]
    max_keys: Annotated[int, msgspec.Meta(ge=1, le=100)]
    destinations: Destinations = msgspec.field(default_factory=Destinations)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("`name` is empty")
        if not any(_binds(claim, self.match.patterns(claim)) for claim in BINDING_CLAIMS):
            raise ValueError(
                "`match` must name repository (its owner without a glob), repository_owner "
                "(without a glob) or repository_id: a rule for every repository on GitHub "
                "is never meant"
            )
        if not self.allow:
            raise ValueError("`allow` is empty: the rule would allow nothing")


class DenyRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Wins over every allow: the keys it names (all when it names none) are refused."""

    name: str
    reason: str
    match: Match = msgspec.field(default_factory=Match)
    providers: list[str] | None = None
    connections: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.name.strip() or not self.reason.strip():
            raise ValueError("`name` and `reason` must not be empty")
        for provider in self.providers or ():
            if provider not in PROVIDERS:  # a typo would make the rule never deny
                known = ", ".join(sorted(PROVIDERS))
                raise ValueError(f"`providers` {provider!r} is no provider: use one of {known}")

    def covers(self, key: KeySpec) -> bool:
        if self.providers is not None and key.provider not in self.providers:
            return False
        connections = [normalize_name(c) for c in self.connections or ()]
        return self.connections is None or key.connection in connections


class Policy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    version: Literal[1]
    rules: list[Rule] = msgspec.field(default_factory=list)
    deny: list[DenyRule] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in [r.name for r in self.rules] + [d.name for d in self.deny]:
            if name in seen:
                raise ValueError(f"`rules` two rules are named {name!r}: names must be unique")
            seen.add(name)


class PolicyError(RunkeysError):
    title = "Invalid policy"

    def __init__(self, cause: str, *, line: int | None = None, fix: str = "") -> None:
        super().__init__(cause, fix=fix, docs=DOCS)
        self.line = line


_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None


def _key_line(node: yaml.Node, name: str) -> int | None:
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == name:
                return int(key.start_mark.line) + 1
    return None


def _line_of(root: yaml.Node, path: str, message: str) -> int:
    """The line of what msgspec's `$.rules[0].allow[1]` points at, or of the field its
    message names in backticks (an unknown field, a `__post_init__` complaint)."""
    node = root
    for name, index in _PATH_PART.findall(path):
        child = _child(node, name if name else int(index))
        if child is None:
            break
        node = child
    named = _NAMED.search(message)
    line = _key_line(node, named.group(1)) if named else None
    return line if line is not None else int(node.start_mark.line) + 1


def parse_policy(text: str, source: str = "policy") -> Policy:
    """The policy in `text`, checked in full; a PolicyError naming the line otherwise."""
    try:
        loader = _UniqueKeyLoader(text)  # checks every character before the first is parsed
    except yaml.reader.ReaderError as exc:
        at = text.count("\n", 0, exc.position) + 1
        raise PolicyError(
            f"{source}, line {at}: not valid YAML: {str(exc).splitlines()[0]}", line=at
        ) from None
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except (yaml.YAMLError, ValueError, LookupError, AttributeError) as exc:
        # SafeLoader's constructors raise plain ValueError, KeyError or AttributeError, with no
        # mark, for a tagged scalar that is not of its type (`!!int x`, `!!bool x`).
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or (
            f"a `!!` tagged value is not of its type ({type(exc).__name__}: {exc})"
        )
        where = source if line is None else f"{source}, line {line}"
        raise PolicyError(f"{where}: not valid YAML: {problem}", line=line) from None
    finally:
        loader.dispose()
    if root is None or not isinstance(data, dict):
        raise PolicyError(
            f"{source}: expected a mapping with `version: 1` and `rules`", line=1, fix=""
        )
    try:
        return msgspec.convert(data, Policy)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        path = path.rstrip("`")
        line = _line_of(root, path, message)
        where = path.removeprefix("$.") or "(top)"
        raise PolicyError(
            f"{source}, line {line}: {where}: {message}",
            line=line,
            fix=f"correct line {line}; the policy in force (if any) is unchanged",
        ) from None


def load_policy_file(path: str | Path) -> Policy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(
            f"cannot read the policy {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    return parse_policy(text, str(path))


class PolicyStore:
    """The policy in force: loaded at start (an invalid file stops start-up) and reloaded on
    SIGHUP by `reload`, which keeps the old policy when the new file is invalid."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._policy = load_policy_file(self.path)
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        return self._policy

    def reload(self) -> PolicyError | None:
        """The new file's error (the old policy kept), or None once the new one is in force."""
        try:
            policy = load_policy_file(self.path)
        except PolicyError as exc:
            return exc
        with self._lock:
            self._policy = policy
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PolicyStore | None:
        """None without RUNKEYS_POLICY_FILE (no broker); a ConfigError naming the line if bad."""
        path = environ.get(POLICY_SETTING, "").strip()
        if not path:
            return None
        try:
            return cls(path)
        except PolicyError as exc:
            raise ConfigError(POLICY_SETTING, exc.cause, fix=exc.fix, docs=DOCS) from None


# --- claims and destinations ----------------------------------------------------------------


class Claims(msgspec.Struct, kw_only=True, frozen=True):
    """The verified token's claims the policy reads (https://docs.github.com/actions/
    security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect)."""

    repository: str
    repository_id: str
    repository_owner: str
    ref: str
    event_name: str
    run_id: str
    run_attempt: str
    ref_type: str | None = None
    environment: str | None = None
    workflow_ref: str | None = None
    job_workflow_ref: str | None = None
    runner_environment: str | None = None
    actor: str | None = None
    sha: str | None = None


class ClaimsError(RunkeysError):
    title = "Invalid claims"


def claims_from(data: Any) -> Claims:
    """The claims of a decoded token (ids may be numbers or strings, as GitHub varies)."""
    if not isinstance(data, Mapping):
        raise ClaimsError("the claims must be a JSON object", fix="e.g. {repository: …}")
    fields = set(Claims.__struct_fields__)
    known = {
        k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in data.items()
        if k in fields
    }
    if known.get("environment") == "":
        known.pop("environment")  # a job without an environment
    try:
        return msgspec.convert(known, Claims)
    except msgspec.ValidationError as exc:
        raise ClaimsError(
            f"the claims are not a GitHub Actions token's: {exc}",
            fix="use the payload of a verified token (docs/policy.md shows one)",
        ) from None


class Destination(msgspec.Struct, frozen=True):
    """Where the values go: this job only, an environment's secrets, or the repository's."""

    kind: Literal["job", "environment", "repository"] = "job"
    environment: str | None = None

    def describe(self) -> str:
        if self.kind == "environment":
            return f"environment {self.environment!r}"
        return "repository secrets" if self.kind == "repository" else "this job only"


# --- evaluation -----------------------------------------------------------------------------


class KeyDecision(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    provider: str
    connection: str | None
    allowed: bool
    rule: str  # the rule that allowed or denied, or NO_RULE
    field: str | None = None  # the key field, or the claims (", "-joined), that failed
    reason: str = ""
    fix: str = ""


class Decision(msgspec.Struct, frozen=True):
    allowed: bool  # every key allowed: a request is all or nothing
    keys: tuple[KeyDecision, ...]


def _mismatches(match: Match, claims: Claims) -> list[tuple[str, str]]:
    """Each claim the match names that the token fails, and why."""
    found = []
    for claim in match.named():
        value = getattr(claims, claim)
        wanted = match.patterns(claim)
        if not matches(claim, value, wanted):
            has = "has none" if value is None else f"is {value!r}"
            wants = " or ".join(map(repr, wanted))
            found.append((claim, f"the token's {claim} {has}; the rule wants {wants}"))
    return found


def _no_rule(policy: Policy, claims: Claims) -> Refusal:
    """The rule that came closest (fewest claims failed, the first of equals) and every claim
    it failed on: naming only the first, the fix would just meet the next."""
    if not policy.rules:
        return Refusal("rules", "the policy has no rules", "add a rule for this repository")
    failed = [
        (len(found), index, found)
        for index, rule in enumerate(policy.rules)
        if (found := _mismatches(rule.match, claims))
    ]
    _, index, found = min(failed)
    named = [claim for claim, _ in found]
    return Refusal(
        ", ".join(named),
        f"closest is rule {policy.rules[index].name!r}: {'; '.join(why for _, why in found)}",
        f"run from a {' and '.join(named)} the rule names, or add a rule for this one",
    )


def _destination(rule: Rule, destination: Destination) -> Refusal | None:
    allowed = rule.destinations
    if destination.kind == "job" and allowed.job:
        return None
    if destination.kind == "repository" and allowed.repository_secrets:
        return None
    if destination.kind == "environment" and matches(
        "environment", destination.environment, allowed.environments
    ):
        return None
    named = [f"environments {', '.join(allowed.environments)}"] if allowed.environments else []
    named += ["this job only"] if allowed.job else []
    named += ["repository secrets"] if allowed.repository_secrets else []
    listed = "; ".join(named) or "nothing"
    return Refusal(
        "destination",
        f"{destination.describe()} is not a destination the rule allows ({listed})",
        f"write the keys to one of: {listed}",
    )


def _rule_refusal(rule: Rule, key: KeySpec, total: int, destination: Destination) -> Refusal | None:
    if refusal := _destination(rule, destination):
        return refusal
    if total > rule.max_keys:
        return Refusal(
            "max_keys",
            f"{total} keys in this run; the rule allows at most {rule.max_keys}",
            f"mint at most {rule.max_keys} keys per run",
        )
    entries = [e for e in rule.allow if e.provider == key.provider]
    if not entries:
        return Refusal(
            "provider",
            f"the rule allows no {key.provider} key",
            "use a provider the rule names, or add an allow entry for this one",
        )
    entries = [e for e in entries if e.allows_connection(key.connection)]
    if not entries:
        return Refusal(
            "connection",
            f"the rule allows {key.provider} on no connection named {key.connection!r}",
            "use a connection the rule names",
        )
    refusals = [e.refusal(key) for e in entries]
    return None if None in refusals else refusals[0]


def evaluate(
    policy: Policy,
    claims: Claims,
    spec: Sequence[KeySpec],
    destination: Destination,
    *,
    keys_before: int = 0,
) -> Decision:
    """One decision per key. `keys_before`: keys this run was given by earlier requests,
    which count toward `max_keys`."""
    total = keys_before + len(spec)
    matching = [rule for rule in policy.rules if not _mismatches(rule.match, claims)]
    decisions = [
        _decide(policy, matching, claims, key, total=total, destination=destination) for key in spec
    ]
    return Decision(all(d.allowed for d in decisions), tuple(decisions))


def _decide(
    policy: Policy,
    matching: list[Rule],
    claims: Claims,
    key: KeySpec,
    *,
    total: int,
    destination: Destination,
) -> KeyDecision:
    for deny in policy.deny:
        if deny.covers(key) and not _mismatches(deny.match, claims):
            fix = "the policy forbids this explicitly; ask its owners"
            return _decided(key, deny.name, Refusal("deny", deny.reason, fix))
    if not matching:
        return _decided(key, NO_RULE, _no_rule(policy, claims))
    refusals: list[tuple[Rule, Refusal]] = []
    for rule in matching:
        refusal = _rule_refusal(rule, key, total, destination)
        if refusal is None:
            return _decided(key, rule.name, None)
        refusals.append((rule, refusal))
    rule, refusal = refusals[0]  # the first matching rule's reason: the file's order
    return _decided(key, rule.name, refusal)


def _decided(key: KeySpec, rule: str, refusal: Refusal | None) -> KeyDecision:
    return KeyDecision(
        key=key.name,
        provider=key.provider,
        connection=key.connection,
        allowed=refusal is None,
        rule=rule,
        field=refusal.field if refusal else None,
        reason=refusal.reason if refusal else "",
        fix=refusal.fix if refusal else "",
    )


# --- the decision record --------------------------------------------------------------------


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    provider: str
    connection: str | None
    outcome: Literal["allow", "deny"]
    rule: str
    field: str | None
    reason: str


class DecisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What was decided for whom: names and providers of keys, never a value."""

    event: Literal["policy decision"] = "policy decision"
    at: str | None
    outcome: Literal["allow", "deny"]
    rules: list[str]  # the rules that decided: the denying ones on a denial
    repository: str
    repository_id: str
    ref: str
    event_name: str
    workflow: str | None
    job_workflow_ref: str | None
    run_id: str
    run_attempt: str
    actor: str | None
    destination: str
    keys: list[KeyRecord]

    def to_log(self) -> str:
        """One JSON line."""
        return msgspec.json.encode(self).decode()


def record(
    decision: Decision, claims: Claims, destination: Destination, at: datetime | None = None
) -> DecisionRecord:
    deciding = [k for k in decision.keys if k.allowed == decision.allowed]
    return DecisionRecord(
        at=at.isoformat() if at else None,
        outcome="allow" if decision.allowed else "deny",
        rules=sorted({k.rule for k in deciding}),
        repository=claims.repository,
        repository_id=claims.repository_id,
        ref=claims.ref,
        event_name=claims.event_name,
        workflow=claims.workflow_ref,
        job_workflow_ref=claims.job_workflow_ref,
        run_id=claims.run_id,
        run_attempt=claims.run_attempt,
        actor=claims.actor,
        destination=destination.describe(),
        keys=[
            KeyRecord(
                name=k.key,
                provider=k.provider,
                connection=k.connection,
                outcome="allow" if k.allowed else "deny",
                rule=k.rule,
                field=k.field,
                reason=k.reason,
            )
            for k in decision.keys
        ],
    )
