"""Workflow runs (https://docs.github.com/rest/actions/workflow-runs): get a run, get one attempt,
list with GitHub's filters, download its logs (the latest attempt's, or one attempt's) and
delete them (every attempt's). Their state is what a test set
(`Sandbox.add_workflow_run`, `Sandbox.set_run_status`, `Sandbox.set_run_logs`)."""

from __future__ import annotations

from collections.abc import Callable

from runkeys_sandbox.server.errors import ApiError, not_found
from runkeys_sandbox.server.representations import workflow_run_json
from runkeys_sandbox.server.routing import REPO, Call, Reply, Route, paginate
from runkeys_sandbox.server.runlogs import DOWNLOAD_PATH, download_token
from runkeys_sandbox.server.state import WorkflowRun

_DOCS = "https://docs.github.com/rest/actions/workflow-runs"


def _run(call: Call) -> WorkflowRun:
    return call.numbered(call.repository.runs, "run_id")


def _with_pull_requests(call: Call) -> bool:
    return (call.arg("exclude_pull_requests") or "").lower() != "true"


def get_run(call: Call) -> Reply:
    run = _run(call)
    data = workflow_run_json(
        call.repository,
        run,
        run.latest,
        call.base_url,
        include_pull_requests=_with_pull_requests(call),
    )
    return Reply(200, data)


def get_attempt(call: Call) -> Reply:
    run = _run(call)
    attempt = call.numbered(run.attempts, "attempt_number")
    data = workflow_run_json(
        call.repository,
        run,
        attempt,
        call.base_url,
        include_pull_requests=_with_pull_requests(call),
    )
    return Reply(200, data)


def _matches(call: Call, run: WorkflowRun) -> bool:
    latest = run.latest
    checks: dict[str, Callable[[str], bool]] = {
        "actor": lambda v: run.actor.lower() == v.lower(),
        "branch": lambda v: run.head_branch == v,
        "event": lambda v: run.event == v,
        # `status` filters on a status or a conclusion (GitHub's docs for this parameter).
        "status": lambda v: v in (latest.status, latest.conclusion),
        "head_sha": lambda v: run.head_sha == v,
        "check_suite_id": lambda v: v.isdigit() and int(v) == run.id // 3,
    }
    for name, check in checks.items():
        value = call.arg(name)
        if value is not None and not check(value):
            return False
    return True


def list_runs(call: Call) -> Reply:
    repo = call.repository
    runs = sorted((r for r in repo.runs.values() if _matches(call, r)), key=lambda r: -r.id)
    with_prs = _with_pull_requests(call)
    items = [
        workflow_run_json(repo, r, r.latest, call.base_url, include_pull_requests=with_prs)
        for r in runs
    ]
    return paginate(call, items, key="workflow_runs")


def _logs(call: Call, attempt: int | None) -> tuple[WorkflowRun, int]:
    """The run and the attempt whose logs to serve (the latest when None): 404 when that
    attempt never had logs, 410 once they were deleted."""
    run = _run(call)
    number = run.latest.number if attempt is None else attempt
    logs = run.logs.get(number)
    if logs is None:
        raise not_found()
    if logs.deleted:
        raise ApiError(410, "Gone")
    return run, number


def _redirect(call: Call, attempt: int | None) -> Reply:
    """302 to a short-lived URL of the attempt's archive, as GitHub answers."""
    run, number = _logs(call, attempt)
    token = download_token(call.world, call.repository.id, run.id, number)
    return Reply(302, None, {"Location": f"{call.base_url}{DOWNLOAD_PATH}{token}"})


def download_logs(call: Call) -> Reply:
    """The latest attempt's logs."""
    return _redirect(call, None)


def download_attempt_logs(call: Call) -> Reply:
    run = _run(call)
    return _redirect(call, call.numbered(run.attempts, "attempt_number").number)


def delete_logs(call: Call) -> Reply:
    """Every attempt's logs go: GitHub's DELETE is of the run's logs. 404 when it never had
    any, 410 once they were all deleted."""
    run = _run(call)
    kept = [logs for logs in run.logs.values() if not logs.deleted]
    if not run.logs:
        raise not_found()
    if not kept:
        raise ApiError(410, "Gone")
    for logs in kept:
        logs.deleted = True
    return Reply(204)


_RUNS = "/repos/{owner}/{repo}/actions/runs"

ROUTES = (
    Route("GET", _RUNS, list_runs, REPO, f"{_DOCS}#list-workflow-runs-for-a-repository"),
    Route("GET", f"{_RUNS}/{{run_id}}", get_run, REPO, f"{_DOCS}#get-a-workflow-run"),
    Route(
        "GET",
        f"{_RUNS}/{{run_id}}/attempts/{{attempt_number}}",
        get_attempt,
        REPO,
        f"{_DOCS}#get-a-workflow-run-attempt",
    ),
    Route(
        "GET",
        f"{_RUNS}/{{run_id}}/logs",
        download_logs,
        REPO,
        f"{_DOCS}#download-workflow-run-logs",
    ),
    Route(
        "GET",
        f"{_RUNS}/{{run_id}}/attempts/{{attempt_number}}/logs",
        download_attempt_logs,
        REPO,
        f"{_DOCS}#download-workflow-run-attempt-logs",
    ),
    Route(
        "DELETE", f"{_RUNS}/{{run_id}}/logs", delete_logs, REPO, f"{_DOCS}#delete-workflow-run-logs"
    ),
)
