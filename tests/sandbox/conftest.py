"""A seeded sandbox (a repository, an App installed on it), clients for it, and a webhook
endpoint that keeps what it is sent."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github
from werkzeug.wrappers import Request, Response

from runkeys_sandbox.launch import ThreadServer
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Installation, Repository


@dataclass
class Seeded:
    sb: Sandbox
    repo: Repository
    app: App
    installation: Installation
    session: requests.Session = field(default_factory=requests.Session)

    def token(self, **kwargs: Any) -> str:
        return self.sb.create_installation_token(self.installation, **kwargs)

    def github(self, token: str | None = None, **kwargs: Any) -> Github:
        return github(self.sb, token or self.token(), **kwargs)

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """A raw request, as a client that is not PyGithub would send it."""
        headers = {"Accept": "application/vnd.github+json", **kwargs.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(
            method, self.sb.url + path, headers=headers, timeout=10, **kwargs
        )


def github(sb: Sandbox, token: str, **kwargs: Any) -> Github:
    """PyGithub against the sandbox, without its pacing (a second between writes) or retries."""
    options: dict[str, Any] = {
        "base_url": sb.url,
        "seconds_between_requests": None,
        "seconds_between_writes": None,
        "retry": None,
        "lazy": True,
    }
    options.update(kwargs)
    return Github(auth=Auth.Token(token), **options)


@pytest.fixture(scope="session")
def app_key() -> str:
    """One App key for the whole session: generating RSA keys is the slow part of set-up."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def seeded(sandbox: Sandbox, app_key: str) -> Seeded:
    repo = sandbox.add_repository("octo/app")
    app = sandbox.add_app(private_key_pem=app_key)
    return Seeded(sandbox, repo, app, sandbox.install(app, [repo]))


class Receiver:
    """A webhook endpoint on a loopback port that keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self.server = ThreadServer(self)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self._lock:
            self.received.append((dict(request.headers.items()), request.get_data()))
        return Response(b"", status=202)(environ, start_response)

    @property
    def url(self) -> str:
        return f"{self.server.url}/webhook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.server.stop()
