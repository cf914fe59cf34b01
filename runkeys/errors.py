"""One error tree. Every error runkeys raises on purpose says what happened, how to fix it, and
where to read more, written once (as pypa/gh-action-pypi-publish does) and rendered by one exit
path: `action_src.workflow.die`, the service's error handlers."""

from __future__ import annotations

from dataclasses import dataclass


class RunkeysError(Exception):
    """Base of every error runkeys raises on purpose."""

    title = "runkeys failed"

    def __init__(self, cause: str, *, fix: str = "", docs: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix
        self.docs = docs

    def explain(self) -> str:
        """Cause, fix and reference as plain text, one paragraph each."""
        parts = [self.cause]
        if self.fix:
            parts.append(f"How to fix: {self.fix}")
        if self.docs:
            parts.append(f"See {self.docs}")
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.cause if not self.fix else f"{self.cause} ({self.fix})"


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with the `keys` input: which key, which field, what, and how to fix it."""

    key: str | None
    field: str | None
    message: str
    fix: str = ""

    def where(self) -> str:
        if self.key and self.field:
            return f"keys.{self.key}.{self.field}"
        if self.key:
            return f"keys.{self.key}"
        return "keys"

    def __str__(self) -> str:
        text = f"{self.where()}: {self.message}"
        return f"{text} — {self.fix}" if self.fix else text


class SpecError(RunkeysError):
    """The key spec is wrong. Raised before any side effect; carries every problem found."""

    title = "Invalid key spec"

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = tuple(problems)
        summary = "; ".join(str(p) for p in self.problems)
        super().__init__(
            f"The `keys` input has {len(self.problems)} problem(s): {summary}",
            fix="Correct the fields named above; nothing was minted.",
            docs="the README, section 'The keys input'",
        )


class ParamError(RunkeysError):
    """A provider parameter is wrong. Providers raise it from `check_params`; the spec parser turns
    it into a `SpecProblem` naming the key."""

    title = "Invalid provider parameter"

    def __init__(self, field: str, message: str, *, fix: str = "") -> None:
        super().__init__(message, fix=fix)
        self.field = field


class ConfigError(RunkeysError):
    """A setting (environment variable, action input) is missing or malformed."""

    title = "Invalid configuration"

    def __init__(self, setting: str, message: str, *, fix: str = "", docs: str = "") -> None:
        super().__init__(f"{setting}: {message}", fix=fix, docs=docs)
        self.setting = setting


class ProviderError(RunkeysError):
    """A provider could not mint or revoke. `retryable` says whether trying again later may work
    (backend down, timeout) or not (refused, misconfigured). Messages are scrubbed of values."""

    title = "Provider failed"

    def __init__(
        self, provider: str, cause: str, *, retryable: bool, fix: str = "", docs: str = ""
    ) -> None:
        super().__init__(f"{provider}: {cause}", fix=fix, docs=docs)
        self.provider = provider
        self.retryable = retryable


class GitHubError(RunkeysError):
    """GitHub refused or failed a request; the fix names the permission or setting involved."""

    title = "GitHub API error"

    def __init__(
        self,
        cause: str,
        *,
        status: int | None = None,
        fix: str = "",
        docs: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(cause, fix=fix, docs=docs)
        self.status = status
        # Seconds GitHub asked to wait (its last answer's `Retry-After`), carried to the worker
        # so that its next attempt is not sooner.
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in (403, 429)


class LeaseServiceError(RunkeysError):
    """The lease service refused or could not be reached."""

    title = "Lease service error"

    def __init__(
        self,
        cause: str,
        *,
        status: int | None = None,
        code: str = "",
        fix: str = "",
        docs: str = "",
    ) -> None:
        super().__init__(cause, fix=fix, docs=docs)
        self.status = status
        self.code = code  # the service's `error` field, e.g. `lease_not_found`


class AuthError(RunkeysError):
    """A credential presented to runkeys is not valid: an OIDC token, an App JWT, a signature.
    The message is safe to return to the caller; it never quotes the credential."""

    title = "Authentication failed"
