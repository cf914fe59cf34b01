"""`runkeys app create` and `runkeys app exchange` against the stand-in: the page's form posts
the project's `app-manifest.json` where GitHub takes it, the browser's part is played by the
stand-in's control API, and the code becomes an env file the service starts from."""

from __future__ import annotations

import json
import shlex
import stat
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from github import Auth, GithubIntegration

from handler.config import ServiceConfig
from runkeys_sandbox.server.sandbox import Sandbox
from tests.service.kit import run_cli

MANIFEST = Path(__file__).resolve().parents[2] / "app-manifest.json"


class Form(HTMLParser):
    """The form's action and fields, as a browser would post them."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.method = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action, self.method = found["action"], found["method"]
        elif tag == "input":
            self.fields[found["name"]] = found["value"]


def posted(page: Path) -> Form:
    form = Form()
    form.feed(page.read_text())
    return form


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as started:
        yield started


def _browser_creates(sandbox: Sandbox, form: Form, owner: str) -> str:
    """What GitHub does between the form and the redirect: the App is made; a code comes back."""
    answer = requests.post(
        f"{sandbox.url}/_sandbox/app-manifests",
        json={"manifest": json.loads(form.fields["manifest"]), "owner": owner},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    code: str = answer.json()["code"]
    return code


def _sourced(env_file: Path) -> dict[str, str]:
    found = {}
    for line in env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = shlex.split(value)[0]
    return found


def test_the_page_posts_the_manifest_to_githubs_new_app_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    page = tmp_path / "page.html"
    code, out, err = run_cli(
        capsys, "app", "create", "--manifest", str(MANIFEST), "--out", str(page)
    )
    assert code == 0, err
    form = posted(page)
    action = urllib.parse.urlsplit(form.action)
    assert (action.scheme, action.netloc, action.path) == (
        "https",
        "github.com",
        "/settings/apps/new",
    )
    state = urllib.parse.parse_qs(action.query)["state"][0]
    assert len(state) >= 16
    assert f"state={state}" in out  # so the user can check the redirect's
    assert form.method == "post"
    assert json.loads(form.fields["manifest"]) == json.loads(MANIFEST.read_text())

    # An organization's page, on GHES; the webhook and redirect URLs set for this service.
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://ghe.example.com/")
    code, _, err = run_cli(
        capsys,
        "app",
        "create",
        "--org",
        "octo org",
        "--manifest",
        str(MANIFEST),
        "--out",
        str(page),
        "--webhook-url",
        "https://keys.example.com/webhook",
        "--redirect-url",
        "https://keys.example.com/created",
    )
    assert code == 0, err
    form = posted(page)
    action = urllib.parse.urlsplit(form.action)
    assert (action.netloc, action.path) == (
        "ghe.example.com",
        "/organizations/octo%20org/settings/apps/new",
    )
    manifest = json.loads(form.fields["manifest"])
    assert manifest["hook_attributes"] == {
        "url": "https://keys.example.com/webhook",
        "active": True,
    }
    assert manifest["redirect_url"] == "https://keys.example.com/created"
    assert (
        manifest["default_permissions"] == json.loads(MANIFEST.read_text())["default_permissions"]
    )


def test_the_code_becomes_the_services_env_file(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page, env_file = tmp_path / "page.html", tmp_path / "runkeys-app.env"
    code, _, err = run_cli(capsys, "app", "create", "--manifest", str(MANIFEST), "--out", str(page))
    assert code == 0, err
    grant = _browser_creates(sandbox, posted(page), owner="octo")
    monkeypatch.setenv("GITHUB_API_URL", sandbox.url)

    code, out, err = run_cli(capsys, "app", "exchange", grant, "--env-file", str(env_file))
    assert code == 0, err
    settings = _sourced(env_file)
    key_file = Path(settings["RUNKEYS_PRIVATE_KEY_FILE"])
    assert key_file.parent == tmp_path
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    app = sandbox.world.apps[int(settings["RUNKEYS_APP_ID"])]
    assert settings["RUNKEYS_WEBHOOK_SECRET"] == app.webhook_secret
    assert key_file.read_text() == app.private_key_pem
    assert settings["GITHUB_API_URL"] == sandbox.url  # not api.github.com: said in the file
    # Nothing secret was printed: only names and paths.
    for secret in (app.webhook_secret, app.client_secret, *app.private_key_pem.splitlines()[1:-1]):
        assert secret not in out + err

    # The App is the manifest's, and the key in the file is the App's.
    manifest = json.loads(MANIFEST.read_text())
    integration = GithubIntegration(
        base_url=sandbox.url, auth=Auth.AppAuth(app.id, key_file.read_text())
    )
    made = integration.get_app()
    assert made.name == manifest["name"]
    assert getattr(made.owner, "login", None) == "octo"
    assert dict(made.permissions) == manifest["default_permissions"]
    assert sorted(made.events) == sorted(manifest["default_events"])

    # The service starts from the file (with its own audience and ledger).
    environ = {**settings, "RUNKEYS_OIDC_AUDIENCE": "https://keys.example.com"}
    config = ServiceConfig.from_env(environ)
    assert config.webhook_secret == app.webhook_secret
    assert config.github is not None
    assert config.github.app is not None
    assert config.github.app.app_id == str(app.id)

    # A code works once.
    code, _, err = run_cli(
        capsys, "app", "exchange", grant, "--env-file", str(tmp_path / "again.env")
    )
    assert code == 1
    assert "it works once, for an hour" in err
    assert not (tmp_path / "again.env").exists()


def test_nothing_is_overwritten_and_the_code_is_not_spent(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", sandbox.url)
    grant = sandbox.manifest_code(json.loads(MANIFEST.read_text()), owner="octo")
    taken = tmp_path / "taken.env"
    taken.write_text("export RUNKEYS_APP_ID=1\n")
    code, _, err = run_cli(capsys, "app", "exchange", grant, "--env-file", str(taken))
    assert code == 1
    assert "exists" in err
    assert taken.read_text() == "export RUNKEYS_APP_ID=1\n"
    assert grant in sandbox.world.manifest_codes  # refused before anything was sent
    code, _, err = run_cli(capsys, "app", "exchange", grant, "--env-file", str(tmp_path / "a.env"))
    assert code == 0, err


def test_an_hour_old_code_is_refused(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", sandbox.url)
    grant = sandbox.manifest_code(json.loads(MANIFEST.read_text()))
    sandbox.advance_clock(3601)
    code, _, err = run_cli(capsys, "app", "exchange", grant, "--env-file", str(tmp_path / "a.env"))
    assert code == 1
    assert "GitHub does not know this code" in err
