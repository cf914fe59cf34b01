"""The action benchmark's baseline: what a naive script does with PyGithub to put N fresh keys
into a new environment's secrets, `Environment.create_secret` per key, as the GitHub App.

    NAIVE_KEYS=10 NAIVE_ENVIRONMENT=ci-run-1 GITHUB_REPOSITORY=octo/app GITHUB_API_URL=… \\
    NAIVE_APP_ID=… NAIVE_PRIVATE_KEY=… python -m bench.naive_action

PyGithub's pacing is off, as runkeys has it, so the two differ only in the calls they make."""

from __future__ import annotations

import os
import secrets
import sys

from github import Auth, Github, GithubIntegration


def main() -> int:
    environ = os.environ
    keys = int(environ["NAIVE_KEYS"])
    owner, name = environ["GITHUB_REPOSITORY"].split("/")
    pacing = {"seconds_between_requests": None, "seconds_between_writes": None}
    base_url = environ["GITHUB_API_URL"]
    app = Auth.AppAuth(environ["NAIVE_APP_ID"], environ["NAIVE_PRIVATE_KEY"])
    integration = GithubIntegration(auth=app, base_url=base_url, **pacing)  # type: ignore[arg-type]
    installation = integration.get_repo_installation(owner, name)
    token = integration.get_access_token(installation.id).token
    github = Github(auth=Auth.Token(token), base_url=base_url, **pacing)  # type: ignore[arg-type]
    repository = github.get_repo(f"{owner}/{name}")
    environment = repository.create_environment(environ["NAIVE_ENVIRONMENT"])
    for index in range(keys):
        environment.create_secret(f"KEY_{index}", secrets.token_urlsafe(32))
    print(f"wrote {keys} secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
