"""The action and its sub-actions as actionlint sees local actions: copied into a checkout and
named `./` and `./<sub>`, so every `with:` input of a workflow is checked against the
action.yml it names."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USES = "uses: OWNER/runkeys@v1"
# `uses: OWNER/runkeys/<sub>@v1`: <sub>/action.yml, read by action_src/<sub>.py.
SUB_ACTIONS = sorted(path.parent.name for path in ROOT.glob("*/action.yml"))


def copy_actions(checkout: Path) -> None:
    for name in ("action.yml", "Dockerfile", *(f"{sub}/action.yml" for sub in SUB_ACTIONS)):
        (checkout / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, checkout / name)


def as_local(workflow: str) -> str:
    workflow = workflow.replace(USES, "uses: ./")
    for sub in SUB_ACTIONS:
        workflow = workflow.replace(f"uses: OWNER/runkeys/{sub}@v1", f"uses: ./{sub}")
    return workflow
