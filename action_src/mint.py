"""The main step's work, once `plan_step` has checked everything: build the collaborators
(GitHub, the lease service, the job) and hand them to `runkeys.issuance.issue`."""

from __future__ import annotations

from action_src.collaborators import ActionJob, github_session, lease_client, permissions_for
from action_src.plan import APP_FIX, StepPlan
from action_src.report import summary
from action_src.workflow import Workflow
from runkeys.errors import GitHubError, RunkeysError
from runkeys.github.secrets import SecretStore
from runkeys.issuance import Collaborators, SecretScope, issue
from runkeys.providers import ProviderDeps, Registry


def scope_of(plan: StepPlan) -> SecretScope | None:
    if plan.environment is not None:
        return SecretScope(plan.run.repository, plan.environment)
    return SecretScope(plan.run.repository) if plan.repository_secrets else None


def mint(plan: StepPlan, workflow: Workflow) -> int:
    scope = scope_of(plan)
    leases = lease_client(plan.service, workflow, plan.retries) if plan.service else None
    providers = [spec.provider for spec in plan.specs]
    session = github_session(plan.github, scope, plan.retries, providers) if plan.github else None
    store = SecretStore(session, plan.run.repository) if session and scope else None
    deps = Collaborators(
        registry=Registry(ProviderDeps(github=session)),
        connections=plan.connections,
        job=ActionJob(workflow),
        secrets=store,
        leases=leases,
    )
    try:
        issued = issue(plan.specs, scope, deps)
    except GitHubError as exc:
        raise _explained(exc, plan, scope) from None
    service_url = plan.service.url if plan.service else None
    try:
        workflow.summary(summary(issued, service_url=service_url))
    except RunkeysError as exc:  # the keys are out; a missing summary only deserves a warning
        workflow.warning(exc.explain())
    return 0


def _explained(exc: GitHubError, plan: StepPlan, scope: SecretScope | None) -> GitHubError:
    """GitHub's refusals, said in terms of this step's inputs."""
    token_only = plan.github is not None and not plan.github.app_id
    wanted = ", ".join(
        f"{k}: {v}" for k, v in permissions_for(scope, [s.provider for s in plan.specs]).items()
    )
    if token_only and exc.status in (401, 403, 404):
        return GitHubError(
            exc.cause,
            status=exc.status,
            fix="a workflow's GITHUB_TOKEN cannot write secrets or create environments, "
            f"whatever the job's `permissions:` say. Instead, {APP_FIX}. (A fine-grained "
            f"personal access token would need {wanted} on {plan.run.repository}.)",
            docs=exc.docs,
        )
    if exc.status == 422 and "installation token" in exc.cause:
        return GitHubError(
            exc.cause,
            status=exc.status,
            fix=f"this step asks the App's installation for {wanted or 'no permissions'} on "
            f"{plan.run.repository}: grant those repository permissions in the App's settings, "
            "accept them on the installation, and make sure the repository is installed",
            docs=exc.docs,
        )
    return exc
