"""What in a connection string is secret, and which URLs clients would read differently."""

from __future__ import annotations

import pytest

from runkeys.connection_strings import secret_forms, url_problem
from runkeys.connections import Connection, connection_secrets, load_connections
from runkeys.errors import ConfigError
from runkeys.scrub import described


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Percent-encoded as it should be: as written and decoded, the password and `user:password`.
        (
            "postgresql://adm:s%40cret-9@db:5432/app",
            (
                "postgresql://adm:s%40cret-9@db:5432/app",
                "adm:s%40cret-9",
                "adm:s@cret-9",
                "s%40cret-9",
                "s@cret-9",
            ),
        ),
        # A raw `@`: libpq takes `p` for the password and `ssw0rdX@127.0.0.1` for the host.
        (
            "postgresql://u:p@ssw0rdX@127.0.0.1/test",
            ("postgresql://u:p@ssw0rdX@127.0.0.1/test", "u:p@ssw0rdX", "p@ssw0rdX", "ssw0rdX"),
        ),
        (
            "redis://:p@ssword@host:6379/0",
            ("redis://:p@ssword@host:6379/0", ":p@ssword", "p@ssword", "ssword"),
        ),
        # A raw `/` or `#`: Python's reading ends the host at it and takes the start for a port.
        (
            "postgresql://u:p:a/ssword@host/db",
            (
                "postgresql://u:p:a/ssword@host/db",
                "u:p:a/ssword",
                "p:a/ssword",
                "a/ssword",
                "ssword",
            ),
        ),
        (
            "mysql://u:pass#xsecret@host/db",
            ("mysql://u:pass#xsecret@host/db", "u:pass#xsecret", "pass#xsecret", "xsecret", "pass"),
        ),
        # A `%` that is no escape stays as it is when decoded.
        ("postgresql://u:p%zzss@h/db", ("postgresql://u:p%zzss@h/db", "u:p%zzss", "p%zzss")),
        # A password in the query (libpq reads it there too).
        (
            "postgresql://h/db?sslmode=disable&password=se%20cret-7",
            ("postgresql://h/db?sslmode=disable&password=se%20cret-7", "se%20cret-7", "se cret-7"),
        ),
        # libpq's key=value DSN, quoted with an escaped quote.
        (
            "host=db user=u password='p w\\'x-9' dbname=app",
            (
                "host=db user=u password='p w\\'x-9' dbname=app",
                "'p w\\'x-9'",
                "p w\\'x-9",
                "p w'x-9",
            ),
        ),
        ("host=db password=plain-Secret dbname=app", None),
        # No password: nothing is secret, and a user name alone is not masked.
        ("postgresql://postgres@127.0.0.1:5432/test", ()),
        ("redis://127.0.0.1:6379/0", ()),
        ("host=db user=postgres dbname=app", ()),
    ],
)
def test_secret_forms(url: str, expected: tuple[str, ...] | None) -> None:
    if expected is None:
        expected = (url, "plain-Secret")
    assert secret_forms(url) == expected
    assert Connection("CI_DB", url).secrets() == expected


def test_short_pieces_are_not_masked_on_their_own() -> None:
    """`p` of `p@ssw0rdX` would blank every `p` of the job's log."""
    assert "p" not in secret_forms("postgresql://u:p@ssw0rdX@127.0.0.1/test")
    assert "ss" not in secret_forms("postgresql://u:p@ss@127.0.0.1/test")
    assert "p@ss" in secret_forms("postgresql://u:p@ss@127.0.0.1/test")  # the password itself


@pytest.mark.parametrize(
    "text",
    ["", "://", "x://", "http://[", "http://u:[@h", "password='unterminated", "a://@@@", "%", "\n"],
)
def test_secret_forms_never_raise(text: str) -> None:
    secret_forms(text)
    url_problem(text)


BAD_URLS = [
    ("postgresql://u:pct%zz-Secret9@h/db", "does not start a percent-escape"),
    ("postgresql://u:pct%4-Secret9@h/db", "does not start a percent-escape"),  # one digit short
    ("postgresql://u:nul%00-Secret9@h/db", "%00"),
    ("postgresql://u:at@Fragment-42x@h/db", "raw '@'"),
    ("redis://:at@Fragment-42x@h:6379/0", "raw '@'"),
    ("postgresql://u:sl/ash-Secret/77@h/db", "host and port cannot be read"),
    ("mysql://u:ha#sh-Secret#88@h/db", "host and port cannot be read"),
    ("mysql://u:qu?ery-Secret@h/db", "host and port cannot be read"),
    ("postgresql://u:1234/5678-Secret@h/db", "an '@' after the host part"),  # digits: a port
    ("postgresql://u:pw-Secret@h/db?options=a@b", "an '@' after the host part"),
    ("postgresql://u:sp ace-Secret@h/db", "a space or a control character"),
    ("postgresql://u:ta\tb-Secret@h/db", "a space or a control character"),
    ("postgresql://[::1@h/db", "host and port cannot be read"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_URLS)
def test_a_url_clients_would_read_differently_is_refused(url: str, problem: str) -> None:
    found = url_problem(url)
    assert found is not None
    assert problem in found
    with pytest.raises(ConfigError) as caught:
        load_connections({"RUNKEYS_CONNECTION_CI_DB": url})
    text = caught.value.explain()
    assert text.startswith("RUNKEYS_CONNECTION_CI_DB: could not be parsed as a URL: ")
    assert "@ as %40" in text
    assert "Secret" not in text
    assert "Fragment" not in text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:at%40Fragment-42x@h/db",  # the same passwords, percent-encoded
        "postgresql://u:pct%25zz-Secret9@h/db",
        "mysql://u:ha%23sh-Secret%2388@h:3306/db",
        "postgresql://u:sl%2Fash-Secret%2F77@h/db",
        "postgresql://u:co:lon:Secret-42@h/db",  # a `:` is fine in a password
        "postgresql://u:pw-Secret@h/db?options=a%40b",
        "postgresql://u:pw@[::1]:5432/db",
        "postgresql://u:pw@h",
        "host=db user=u password='a b@c#d' dbname=app",  # a DSN is no URL
        "postgresql:///app?host=/var/run/postgresql",
    ],
)
def test_almost_the_same_urls_are_accepted(url: str) -> None:
    assert url_problem(url) is None
    assert list(load_connections({"RUNKEYS_CONNECTION_CI_DB": url})) == ["CI_DB"]


def test_every_connection_variable_is_read_for_masking_even_a_refused_one() -> None:
    environ = {
        "RUNKEYS_CONNECTION_CI_DB": " postgresql://u:at@Fragment-42x@h/db ",
        "runkeys_connection_cache": "redis://:cache-Secret@h:6379/0",
        "RUNKEYS_CONNECTION_": "host=db password=no-name-Secret",
        "OTHER_URL": "postgresql://u:not-a-connection@h/db",
    }
    found = connection_secrets(environ)
    for form in ("at@Fragment-42x", "Fragment-42x", "cache-Secret", "no-name-Secret"):
        assert form in found
    assert "not-a-connection" not in found


def test_a_driver_message_is_scrubbed_of_every_form() -> None:
    """libpq's answer to a raw `@`, and Python's to a raw `#`, through the providers' scrub."""
    at = Connection("CI_DB", "postgresql://u:at@Fragment-42x@127.0.0.1:5432/test")
    libpq = OSError("failed to resolve host 'Fragment-42x@127.0.0.1': Name or service not known")
    assert "Fragment" not in described(libpq, at.secrets())
    hashed = Connection("CI_DB", "mysql://u:hashSecret#88@127.0.0.1/test")
    python = ValueError("Port could not be cast to integer value as 'hashSecret'")
    assert "hashSecret" not in described(python, hashed.secrets())
