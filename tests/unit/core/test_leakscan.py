"""The log scan's extraction (`runkeys.leakscan`): every value and part each provider mints is
found in every form a step may print it in, by fingerprint; near-misses are not. The oracles are
written here with the standard library: the fingerprint is SHA-256 of the value, and each form
is made by hand, not by the module under test."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.parse
from datetime import UTC, datetime

import pytest

from runkeys.leakscan import Found, Hit, fingerprints_in, scan_line, scan_lines
from runkeys.providers.base import DatabaseAccount, MintRequest
from runkeys.providers.random_value import RandomProvider
from tests.almost import last_char_changed

STAMP = "2026-12-07T04:59:01.1234567Z "  # GitHub starts each log line with its time


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def random_values() -> list[str]:
    """One value of each format the random provider makes, through the provider itself."""
    provider = RandomProvider()
    made = []
    for fmt in ("hex", "base64url", "alphanumeric", "token"):
        for nbytes in (16, 32):
            request = MintRequest(
                key_name="K",
                params={"format": fmt, "bytes": nbytes},
                expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                label="rk_0123456789abcdef_k",
            )
            made.append(provider.mint(request).value)
    return made


def database_key() -> tuple[str, str]:
    """A database key's value (the URL) and its password, as the providers make them."""
    password = secrets.token_urlsafe(24)
    account = DatabaseAccount("rk_0123456789abcdef_db", password, "127.0.0.1", 5432, "test")
    return account.url("postgresql", {"sslmode": "disable"}), password


def printed(value: str) -> dict[str, str]:
    """How a step might print `value`, by the form the scanner should report."""
    raw = value.encode()
    return {
        "as is": f"token is {value}",
        "base64": f"echo {base64.b64encode(raw).decode()}",
        "base64 (url-safe, unpadded)": f"x={base64.urlsafe_b64encode(raw).decode().rstrip('=')}",
        "basic auth": "Authorization: Basic " + base64.b64encode(b"someone:" + raw).decode(),
        "URL-encoded": f"GET /?q={urllib.parse.quote(value, safe='')}&x=1",
        "JSON-escaped": json.dumps({"k": value}).replace("/", "\\/"),
        "hex": f"dump {raw.hex()}",
    }


@pytest.mark.parametrize("value", random_values())
def test_every_random_format_is_found_in_every_form(value: str) -> None:
    for how, line in printed(value).items():
        assert sha(value) in [h.fingerprint for h in scan_line(STAMP + line, {sha(value)})], how


def test_a_database_url_and_its_password_are_found() -> None:
    url, password = database_key()
    wanted = {sha(url), sha(password)}
    found = scan_line(f"{STAMP}connecting to {url}.", wanted)
    assert {
        h.fingerprint for h in found
    } == wanted  # the URL (a full stop after it) and its password
    alone = scan_line(f"{STAMP}PGPASSWORD={password}", wanted)
    assert alone == [Hit(sha(password), "as is")]
    encoded = base64.b64encode(password.encode()).decode()
    assert scan_line(f"{STAMP}{encoded}", wanted) == [Hit(sha(password), "base64")]


def test_lines_are_numbered_from_one() -> None:
    value = random_values()[-1]
    lines = ["starting", "nothing here", base64.b64encode(value.encode()).decode(), "done"]
    assert list(scan_lines(lines, {sha(value)})) == [Found(3, Hit(sha(value), "base64"))]


def test_near_misses_are_not_found() -> None:
    url, password = database_key()
    token = random_values()[-1]
    wanted = {sha(url), sha(password), sha(token)}
    last = "A" if token[-1] != "A" else "B"
    near = [
        token[:-1] + last,  # wrong in its last character
        token[:-1],  # one short
        token + "x",  # one long: a longer run is another string
        "x" + token,
        password[:-1] + ("A" if password[-1] != "A" else "B"),
        base64.b64encode((token[:-1] + last).encode()).decode(),
        urllib.parse.quote(password[:-1], safe=""),
        "rk_" + "0" * 40,
        "",
        "=" * 30,
        "%" * 30 + "\\" * 30,
    ]
    for line in near:
        assert scan_line(STAMP + line, wanted) == [], line
    # Another user in the URL: not the key's value; its password still is the key's part.
    other = url.replace("rk_0123456789abcdef_db", "rk_0123456789abcdef_dc")
    assert [h.fingerprint for h in scan_line(other, wanted)] == [sha(password)]


def test_clean_log_lines_find_nothing() -> None:
    """What a runner prints around a run, with the values masked (`***`)."""
    lines = [
        "##[group]Run make e2e",
        "shell: /usr/bin/bash -e {0}",
        "env:",
        "  DATABASE_URL: ***",
        "Post job cleanup.",
        "/usr/bin/git version 2.47.1 sha 8f0e4b3a9c1d2e5f60718293a4b5c6d7e8f90123",
        "Cache restored from key: Linux-pip-3f1c0d9c0e6f5d6c0e7c2ad6f1a7b2c1a9e4d0e3c2b1a0f9",
        "dG90YWxseSBpbm5vY2VudCBiYXNlNjQgdGV4dCBoZXJl",
    ]
    url, password = database_key()
    wanted = {sha(url), sha(password), sha(random_values()[-1])}
    assert list(scan_lines([STAMP + line for line in lines], wanted)) == []


def test_bad_input_is_no_error() -> None:
    for line in ["\\u12", "%zz%", "\\", "postgresql://rk_a:b@[::1", "QUJD" * 2000, "\x00\xff"]:
        assert scan_line(line, {sha("x")}) == []


def test_what_an_alert_found_is_fingerprinted_whole_and_cut() -> None:
    """A secret scanning alert's value: its own fingerprint, and its candidates' (the password
    of a connection string of any shape); not a password wrong in its last character."""
    url, password = database_key()
    for found in (url, password, f"Server=db;User Id=app;Password={password};"):
        prints = fingerprints_in(found)
        assert sha(found) in prints
        assert sha(password) in prints
    assert sha(password) not in fingerprints_in(last_char_changed(password))
    assert sha(url) not in fingerprints_in(password)


def test_every_line_a_value_is_on_is_found_in_line_order() -> None:
    """Each occurrence's line, the first at the very start of the text; findings in the order
    of the lines whatever their fingerprints (the larger one printed first)."""
    one, two = sorted((secrets.token_urlsafe(24), secrets.token_urlsafe(24)), key=sha)[::-1]
    text = f"{one}\n{one} again\n{two}\nnothing\n{one}"
    assert [
        (f.line, f.hit.fingerprint) for f in scan_lines(text.split("\n"), {sha(one), sha(two)})
    ] == [
        (1, sha(one)),
        (2, sha(one)),
        (3, sha(two)),
        (5, sha(one)),
    ]
    assert [f.line for f in scan_lines(["", "", one], {sha(one)})] == [3]
