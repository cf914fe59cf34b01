"""The unit tier keeps its promise: what would reach the network or start a process fails."""

from __future__ import annotations

import socket
import subprocess

import pytest


def test_a_connection_fails_the_test() -> None:
    with pytest.raises(AssertionError, match="may not connect to"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_listening_fails_the_test() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="may not listen on"):
        sock.bind(("127.0.0.1", 0))


def test_a_process_fails_the_test() -> None:
    with pytest.raises(AssertionError, match="may not start a process"):
        subprocess.run(["true"], check=False)


def test_a_local_socket_pair_is_allowed() -> None:
    left, right = socket.socketpair()  # AF_UNIX: no network
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
