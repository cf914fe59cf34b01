"""`runkeys app create` and `runkeys app exchange`: registering the service's GitHub App from
`app-manifest.json`, as GitHub's "Registering a GitHub App from a manifest" describes
(https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest).

`create` writes an HTML page whose form posts the manifest to GitHub (an account's or an
organization's "new App" page, on GITHUB_SERVER_URL); GitHub redirects the browser to the
manifest's `redirect_url` with `?code=…`. `exchange` turns that code (one use, one hour) into
the App through `POST /app-manifests/{code}/conversions` on GITHUB_API_URL, and writes what the
service needs: an env file (`RUNKEYS_APP_ID`, `RUNKEYS_PRIVATE_KEY_FILE`,
`RUNKEYS_WEBHOOK_SECRET`) and the private key, both mode 0600. No secret is printed."""

from __future__ import annotations

import html
import json
import os
import secrets
import shlex
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import requests

from runkeys import versions
from runkeys.errors import ConfigError, GitHubError
from runkeys.github.paths import quote_path
from runkeys.github.session import DEFAULT_API_URL

DEFAULT_SERVER_URL = "https://github.com"
DEFAULT_MANIFEST = "app-manifest.json"
DEFAULT_PAGE = "create-github-app.html"
TIMEOUT = 30.0

PAGE = """\
<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Create the runkeys GitHub App</title>
<p>Creates the GitHub App described by <code>{source}</code> on {where}.
GitHub then sends you to the manifest's <code>redirect_url</code> with <code>?code=…</code>;
exchange that code within an hour: <code>runkeys app exchange CODE --env-file FILE</code>.
Check that the <code>state</code> GitHub sends back is <code>{state}</code>.</p>
<form action="{action}" method="post">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit">Create the GitHub App</button>
</form>
</html>
"""


def register(subparsers: Any) -> None:
    app = subparsers.add_parser(
        "app", help="register the service's GitHub App from app-manifest.json"
    )
    commands = app.add_subparsers(dest="app_command", metavar="COMMAND", required=True)
    create = commands.add_parser(
        "create",
        help="write the HTML form that posts the manifest to GitHub",
        description="Write an HTML page whose form posts the manifest to GitHub's new-App page "
        "(GITHUB_SERVER_URL, default https://github.com). Open it in a browser.",
    )
    create.add_argument("--org", metavar="ORG", help="create the App in this organization")
    create.add_argument("--manifest", default=DEFAULT_MANIFEST, type=Path, metavar="FILE")
    create.add_argument("--out", default=DEFAULT_PAGE, type=Path, metavar="FILE")
    create.add_argument("--webhook-url", metavar="URL", help="set hook_attributes.url")
    create.add_argument("--redirect-url", metavar="URL", help="set redirect_url")
    create.set_defaults(func=create_command)
    exchange = commands.add_parser(
        "exchange",
        help="turn the redirect's code into the App, written to an env file",
        description="Exchange the code GitHub's redirect carried (one use, within an hour) "
        "through GITHUB_API_URL, and write the service's App settings to FILE (mode 0600) and "
        "the private key beside it (mode 0600).",
    )
    exchange.add_argument("code", metavar="CODE")
    exchange.add_argument("--env-file", required=True, type=Path, metavar="FILE")
    exchange.add_argument(
        "--key-file", type=Path, metavar="FILE", help="default: app-<id>.private-key.pem beside it"
    )
    exchange.set_defaults(func=exchange_command)


# -- create ------------------------------------------------------------------------------------


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("--manifest", f"{path} cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError("--manifest", f"{path} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("url"), str):
        raise ConfigError(
            "--manifest", f"{path} is not an App manifest", fix="an object with at least `url`"
        )
    return manifest


def _http_url(setting: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(setting, f"{url!r} is not an http(s) URL")
    return url.rstrip("/")


def new_app_url(server_url: str, org: str | None, state: str) -> str:
    """GitHub's page that takes a manifest: the user's, or the organization's."""
    base = _http_url("GITHUB_SERVER_URL", server_url)
    where = "/settings/apps/new"
    if org is not None:
        where = f"/organizations/{quote_path(org, what='organization')}/settings/apps/new"
    return f"{base}{where}?{urllib.parse.urlencode({'state': state})}"


def manifest_page(manifest: Mapping[str, Any], action: str, *, source: str, where: str) -> str:
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(action).query)["state"][0]
    return PAGE.format(
        source=html.escape(source),
        where=html.escape(where),
        state=html.escape(state),
        action=html.escape(action, quote=True),
        manifest=html.escape(json.dumps(manifest, separators=(",", ":")), quote=True),
    )


def create_command(args: Any) -> int:
    return create(
        os.environ,
        manifest_path=args.manifest,
        out=args.out,
        org=args.org,
        webhook_url=args.webhook_url,
        redirect_url=args.redirect_url,
        stdout=sys.stdout,
    )


def create(
    environ: Mapping[str, str],
    *,
    manifest_path: Path,
    out: Path,
    org: str | None,
    webhook_url: str | None,
    redirect_url: str | None,
    stdout: TextIO,
) -> int:
    manifest = load_manifest(manifest_path)
    if webhook_url is not None:
        hook = dict(manifest.get("hook_attributes") or {})
        manifest["hook_attributes"] = {**hook, "url": _http_url("--webhook-url", webhook_url)}
    if redirect_url is not None:
        manifest["redirect_url"] = _http_url("--redirect-url", redirect_url)
    server = environ.get("GITHUB_SERVER_URL", "").strip() or DEFAULT_SERVER_URL
    state = secrets.token_urlsafe(16)
    action = new_app_url(server, org, state)
    where = f"organization {org}" if org else "your account"
    out.write_text(manifest_page(manifest, action, source=str(manifest_path), where=where))
    print(f"Wrote {out}: open it in a browser and press the button ({where}).", file=stdout)
    print(
        f"GitHub will check the manifest, then send you to {manifest.get('redirect_url')}",
        file=stdout,
    )
    print(f"with ?code=CODE&state={state}. Within an hour:", file=stdout)
    print("  runkeys app exchange CODE --env-file runkeys-app.env", file=stdout)
    return 0


# -- exchange ----------------------------------------------------------------------------------


def exchange_command(args: Any) -> int:
    return exchange(os.environ, args.code, args.env_file, args.key_file, sys.stdout)


def exchange(
    environ: Mapping[str, str], code: str, env_file: Path, key_file: Path | None, stdout: TextIO
) -> int:
    api = _http_url("GITHUB_API_URL", environ.get("GITHUB_API_URL", "").strip() or DEFAULT_API_URL)
    # A code works once: nothing may stop the answer from being written once it is spent.
    if env_file.exists():
        raise ConfigError("--env-file", f"{env_file} exists", fix="name a new file")
    if not env_file.parent.is_dir():
        raise ConfigError("--env-file", f"{env_file.parent} is not a directory")
    if key_file is not None and key_file.exists():
        raise ConfigError("--key-file", f"{key_file} exists", fix="name a new file")
    app = _convert(api, code)
    ident = app.get("id")
    pem, webhook_secret = app.get("pem"), app.get("webhook_secret")
    if not isinstance(ident, int) or not isinstance(pem, str):
        raise GitHubError("GitHub's answer holds no App id or private key", fix="create it again")
    key_path = key_file or env_file.parent / f"app-{ident}.private-key.pem"
    _write_private(key_path, pem)
    settings = {"RUNKEYS_APP_ID": str(ident), "RUNKEYS_PRIVATE_KEY_FILE": str(key_path.resolve())}
    if isinstance(webhook_secret, str) and webhook_secret:
        settings["RUNKEYS_WEBHOOK_SECRET"] = webhook_secret
    if api != DEFAULT_API_URL:
        settings["GITHUB_API_URL"] = api
    lines = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items())
    _write_private(env_file, lines)
    slug = app.get("slug", "?")
    print(f"Created GitHub App {slug} (id {ident}).", file=stdout)
    print(f"Wrote {env_file} and {key_path} (mode 0600): {', '.join(settings)}.", file=stdout)
    if "RUNKEYS_WEBHOOK_SECRET" not in settings:
        print("The App has no webhook secret: set one in its settings, and", file=stdout)
        print("RUNKEYS_WEBHOOK_SECRET to it; the service refuses to start without.", file=stdout)
    if isinstance(app.get("html_url"), str):
        print(f"Now install it: {app['html_url']}/installations/new", file=stdout)
    return 0


def _convert(api: str, code: str) -> dict[str, Any]:
    url = f"{api}/app-manifests/{quote_path(code, what='code')}/conversions"
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": versions.USER_AGENT,
    }
    try:
        answer = requests.post(url, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise GitHubError(f"{api} could not be reached ({type(exc).__name__})") from None
    if answer.status_code == 404:
        raise GitHubError(
            "GitHub does not know this code: it works once, for an hour",
            fix="runkeys app create, and create the App again",
        )
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 201 or not isinstance(body, dict):
        message = body.get("message") if isinstance(body, dict) else None
        raise GitHubError(f"the exchange answered {answer.status_code}: {message or 'no JSON'}")
    return body


def _write_private(path: Path, text: str) -> None:
    """A new file only its owner reads; never an existing one, nor through a symlink."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be created ({exc.strerror})") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
