"""The outside world the entry points hand to the core: GitHub, the lease service, the job."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from action_src.inputs import GitHubSettings, Retries, ServiceSettings
from action_src.report import STATE_NAME, PostState, keys_json, scan_manifest
from action_src.workflow import Workflow
from runkeys import http_session
from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.issuance import IssuedKey, SecretScope
from runkeys.lease_client import RETRY_AFTER_CAP, LeaseClient
from runkeys.leases import LeaseRequest
from runkeys.oidc import RunnerOIDC
from runkeys.providers import provider_class


def permissions_for(scope: SecretScope | None, providers: Iterable[str] = ()) -> dict[str, str]:
    """The App permissions a step needs, and no more: the installation token is narrowed to
    them (GitHub's table: `runkeys/github/app_permissions.json`). A provider that works on
    GitHub says what it needs in `github_permissions` (deploy keys: Administration: write)."""
    needs: dict[str, str] = {}
    if scope is not None:
        needs["secrets"] = "write"
    if scope is not None and scope.environment is not None:
        # Environment secrets need Environments besides Secrets:
        # https://docs.github.com/rest/authentication/permissions-required-for-github-apps
        needs["environments"] = "write"
        needs["actions"] = "read"  # GET an environment
        needs["administration"] = "write"  # create (and, for rollback, delete) an environment
    for provider in providers:
        for name, level in provider_class(provider).github_permissions.items():
            if needs.get(name) != "write":
                needs[name] = level
    return needs


def github_session(
    settings: GitHubSettings,
    scope: SecretScope | None,
    retries: Retries,
    providers: Iterable[str] = (),
) -> GitHubSession:
    """PyGithub as the App (an installation token narrowed to this repository and the
    permissions the scope needs) or with the token given; retries as configured."""
    config = GitHubConfig(
        api_url=settings.api_url,
        app=AppCredentials(settings.app_id, settings.private_key) if settings.app_id else None,
        token=settings.token or None,
        retries=retries.github_retries,
        backoff_factor=retries.backoff,
        secondary_rate_wait=retries.secondary_rate_wait,
    )
    return GitHubSession(config, permissions=permissions_for(scope, providers) or None)


def lease_client(service: ServiceSettings, workflow: Workflow, retries: Retries) -> LeaseClient:
    """A client of the service whose OIDC tokens are masked the moment they exist."""
    retry = http_session.backoff(4, factor=retries.backoff, cap=RETRY_AFTER_CAP)
    oidc = RunnerOIDC(
        service.request_url,
        service.request_token,
        service.audience,
        on_token=workflow.mask,
        retry=retry,
    )
    return LeaseClient(service.url, oidc.token, retry=retry)


class ActionJob:
    """The job as issuance sees it (`runkeys.issuance.JobOutput`), over workflow commands."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    def mask(self, form: str) -> None:
        self.workflow.mask(form)

    def progress(self, message: str) -> None:
        self.workflow.progress(message)

    def warning(self, message: str) -> None:
        self.workflow.warning(message)

    def remember(self, leases: Sequence[LeaseRequest], created_environment: str | None) -> None:
        state = PostState(tuple(leases), created_environment)
        self.workflow.save_state(STATE_NAME, state.to_text())

    def deliver(self, variables: Mapping[str, str], keys: Sequence[IssuedKey]) -> None:
        outputs = {**variables, "keys-json": keys_json(keys)}
        self.workflow.deliver_files(variables, outputs)
        names = {key.lease.key_name: key.variables for key in keys}
        self.workflow.leave_for_scan(scan_manifest(names, variables))

    def withdraw(self) -> None:
        self.workflow.withdraw()
