"""The leak detectors the end-to-end tests rely on find what they must, and only that."""

from __future__ import annotations

import base64
import secrets
import urllib.parse

from runkeys.providers.random_value import make_token
from tests.e2e.commands import leaked
from tests.e2e.leaks import Scanner, Secret

PASSWORD = secrets.token_urlsafe(24)
DSN = f"postgresql://rk_0123abcd_db:{PASSWORD}@127.0.0.1:5432/test"
TOKEN = make_token("Q" * 10 + secrets.token_hex(12))


def scanner() -> Scanner:
    carriers = {"DB": DSN, "DB_PASSWORD": PASSWORD}
    return Scanner(
        [
            Secret("DB", DSN, carriers),
            Secret("DB password", PASSWORD, carriers),
            Secret("TOKEN", TOKEN, {"TOKEN": TOKEN}),
        ]
    )


def test_every_encoding_of_a_value_is_found_anywhere_but_a_mask_line() -> None:
    scan = scanner()
    for form in (
        PASSWORD,
        base64.b64encode(DSN.encode()).decode(),
        urllib.parse.quote(DSN, safe=""),
        base64.b64encode(b"user:" + PASSWORD.encode()).decode(),  # inside a Basic auth header
    ):
        problems = scan.text("log", f"line one\nauth {form} here\n")
        assert problems, form
        assert all(problem.startswith("log, line 2: ") for problem in problems)
        assert scan.data("db", b"\x00\x01" + form.encode() + b"\x02")
    assert scan.text("log", f"::add-mask::{PASSWORD}", masks_allowed=True) == []
    assert scan.text("log", f"::add-mask::{PASSWORD}") != []
    assert scan.text("log", "nothing to see: rk_0123abcd_db at 127.0.0.1:5432") == []


def test_job_files_carry_values_only_in_their_own_entries() -> None:
    scan = scanner()
    good = f"DB<<ghadelim_1\n{DSN}\nghadelim_1\nDB_PASSWORD<<d2\n{PASSWORD}\nd2\nOTHER<<d3\nx\nd3\n"
    assert scan.job_file("env", good) == []
    assert scan.job_file("env", f"TOKEN<<d\n{TOKEN}\nd\n") == []
    wrong_entry = f"DEBUG<<d\n{PASSWORD}\nd\n"
    assert scan.job_file("env", wrong_entry) == ["env: DB password in the entry 'DEBUG'"]
    smuggled = f"DB<<d\n{DSN} and more\nd\n"
    assert scan.job_file("env", smuggled) != []
    outside = f"keys-json={TOKEN}\n"
    assert scan.job_file("out", outside) != []


def test_the_command_output_check_finds_values_not_prose() -> None:
    assert TOKEN in leaked(f"minted {TOKEN}.")
    assert leaked(f"connect to {DSN}") != []
    assert leaked(f"hidden: {base64.b64encode(PASSWORD.encode()).decode()}") != []
    prose = (
        "1. A GitHub stand-in (the sandbox) listens at http://127.0.0.1:40511.\n"
        "   PUT    /repos/octo/app/environments/ci-pr-7/secrets/DATABASE_URL  201\n"
        "   RUNKEYS_CONNECTION_DEMO_DB: ${{ secrets.DEMO_DB_URL }}, workflow run 16000000130,\n"
        "   expires 2026-11-28T21:23:00+00:00, /tmp/runkeys-demo-cmoii97n is removed\n"
    )
    assert leaked(prose) == []


def test_a_value_with_a_space_plus_slash_percent_and_newline_is_found_in_each_form() -> None:
    """Each form written out by hand: the scanner's list of forms is the tests' own."""
    scan = Scanner([Secret("ODD", "rk+Q/7 ~~~???50%\nsecond line:9Xz")])
    for form in (
        "rk+Q/7 ~~~???50%",
        "second line:9Xz",
        "rk+Q/7 ~~~???50%\\nsecond line:9Xz",
        "cmsrUS83IH5+fj8/PzUwJQpzZWNvbmQgbGluZTo5WHo=",
        "cmsrUS83IH5-fj8_PzUwJQpzZWNvbmQgbGluZTo5WHo",
        "rk%2BQ%2F7%20~~~%3F%3F%3F50%25%0Asecond%20line%3A9Xz",
        "rk%2BQ%2F7+~~~%3F%3F%3F50%25%0Asecond+line%3A9Xz",
        base64.b64encode(b"user:rk+Q/7 ~~~???50%\nsecond line:9Xz").decode(),  # Basic auth
    ):
        assert scan.text("log", f"line one\nsent {form} here\n") == ["log, line 2: ODD"], form
