"""Whether a secret or an environment in GitHub is runkeys' own to delete, by GitHub's word.

A lease's claims come from a job anyone who can push a workflow can edit, and the service deletes
with its own App, so it acts on them only where GitHub's timestamps and protection rules agree.
Pure: the caller reads the facts (`runkeys.github.secrets.SecretStore`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from runkeys.github.secrets import EnvironmentFacts

# GitHub's clock and the service's may disagree a little; a value written within this of the
# registration still counts as written after it.
CLOCK_SKEW = timedelta(minutes=1)


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def secret_kept_because(written_at: datetime | None, registered_at: datetime) -> str | None:
    """Why the secret must not be deleted, or None (delete it; None too when it is gone)."""
    if written_at is None or written_at >= registered_at - CLOCK_SKEW:
        return None
    return (
        f"GitHub says it was last written at {_at(written_at)}, before this lease was "
        f"registered at {_at(registered_at)}: not a value runkeys wrote"
    )


def environment_kept_because(facts: EnvironmentFacts, named_at: datetime | None) -> str | None:
    """Why the environment must not be deleted, or None (delete it)."""
    if named_at is None:
        return "no record of when a lease first named it"
    if facts.created_at < named_at - CLOCK_SKEW:
        return (
            f"GitHub says it was created at {_at(facts.created_at)}, before the first lease "
            f"naming it was registered at {_at(named_at)}: runkeys did not create it"
        )
    if facts.protections:
        return (
            f"it has {', '.join(facts.protections)}: runkeys deletes only environments "
            "without protection"
        )
    return None
