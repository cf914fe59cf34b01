"""Which failures are worth retrying: the generic rule every provider falls back to."""

from __future__ import annotations

import socket

import pytest
import requests

from runkeys.providers.base import http_transient, is_transient


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError("timed out"), True),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), True),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), False),
        (FileNotFoundError(2, "No such file: ca.pem"), False),
        (PermissionError(13, "Permission denied"), False),
        (requests.HTTPError("403 Forbidden"), False),
        (ValueError("bad"), False),
    ],
)
def test_the_generic_rule(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (requests.ConnectionError("refused"), True),
        (requests.ReadTimeout("slow"), True),
        (requests.exceptions.RetryError("too many 502 error responses"), True),
        (requests.exceptions.SSLError("certificate verify failed"), False),
        (requests.HTTPError("404"), False),
        (requests.exceptions.InvalidURL("no host"), False),
    ],
)
def test_the_http_rule(exc: BaseException, transient: bool) -> None:
    assert http_transient(exc) is transient
