"""`http_paths` on its own: which values make one path segment, and which URLs are inside a
connection's base. Each refusal beside the case that is almost the same and allowed."""

from __future__ import annotations

import pytest

from runkeys.providers.http_paths import UnsafeRequest, check_target, path_problem, segment

BASE = "http://issuer.test/api"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("v1.2", "v1.2"),
        ("..a", "..a"),
        ("...", "..."),
        ("a b", "a%20b"),
        ("50%off", "50%25off"),
        ("a?b#c", "a%3Fb%23c"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00%3A00%3A00Z"),
        ("%41", "%2541"),  # decodes to `A`: harmless, and still sent as it was given
    ],
)
def test_a_value_is_one_encoded_segment(value: str, encoded: str) -> None:
    assert segment("reference", value) == encoded


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        (".", "is a dot segment"),
        ("..", "is a dot segment"),
        ("%2e", "is a dot segment"),
        ("%2E%2e", "is a dot segment"),
        ("%252e%252e", "is a dot segment"),
        ("a/b", "holds a slash"),
        ("a%2Fb", "holds a slash"),
        ("a%252Fb", "holds a slash"),
        ("a\\b", "holds a slash or a backslash"),
        ("a%5Cb", "holds a slash or a backslash"),
        ("a\nb", "holds a control character"),
        ("a%0Ab", "holds a control character"),
        ("%25252525252e", "percent-encoded too many times"),
    ],
)
def test_a_value_that_is_not_one_segment_is_refused(value: str, problem: str) -> None:
    with pytest.raises(UnsafeRequest, match=problem) as caught:
        segment("reference", value)
    assert "{reference}" in str(caught.value)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/v1/tokens", None),
        ("/v1/tokens/", None),
        ("/v1.2/x", None),
        ("/v1//tokens", None),
        ("/v%2E1/x", None),  # an encoded dot inside a segment is not a dot segment
        ("v1/tokens", "must start with exactly one /"),
        ("//elsewhere.example/x", "must start with exactly one /"),
        ("/v1/../admin", "has a segment '..' that is a dot segment"),
        ("/./v1", "has a segment '.' that is a dot segment"),
        ("/v1/%2e%2E/admin", "has a segment '%2e%2E' that is a dot segment once percent-decoded"),
        (
            "/v1/a%2fb",
            "has a segment 'a%2fb' that holds a slash or a backslash once percent-decoded",
        ),
    ],
)
def test_a_templates_path(path: str, problem: str | None) -> None:
    assert path_problem(path) == problem


@pytest.mark.parametrize(
    "url",
    [
        "http://issuer.test/api/v1/tokens",
        "http://issuer.test/api/",
        "http://issuer.test:80/api/v1/tokens",
        "http://ISSUER.test/api/v1/tokens",
        "http://issuer.test/api/v1.2/a%20b",
        "http://issuer.test/api/v1/tokens?next=../..&x=a%2Fb",
    ],
)
def test_a_url_below_the_base_passes(url: str) -> None:
    check_target(url, BASE)
    check_target(url, BASE + "/")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://issuer.test/api-admin/v1/tokens", "leaves the connection's base path /api"),
        ("http://issuer.test/apiv1/tokens", "leaves the connection's base path /api"),
        ("http://issuer.test/api", "leaves the connection's base path /api"),
        ("http://issuer.test/admin/users/1/delete", "leaves the connection's base path /api"),
        ("http://issuer.test/Api/v1", "leaves the connection's base path /api"),
        ("http://issuer.test/api/../admin", "'..' that is a dot segment"),
        ("http://issuer.test/api/v1/./x", "'.' that is a dot segment"),
        ("http://issuer.test/api/%2e%2e/admin", "'%2e%2e' that is a dot segment"),
        ("http://issuer.test/api/.%2E/admin", "'.%2E' that is a dot segment"),
        ("http://issuer.test/api/a%2F..%2Fadmin", "holds a slash"),
        ("http://issuer.test/api/a%5C..%5Cadmin", "holds a slash or a backslash"),
        ("https://issuer.test/api/v1", "is not the connection's 'http://issuer.test'"),
        ("http://issuer.test:8080/api/v1", "is not the connection's"),
        ("http://issuer.test.example/api/v1", "is not the connection's"),
        ("http://elsewhere.test/api/v1", "is not the connection's"),
        ("http://issuer.test@elsewhere.test/api/v1", "is not the connection's"),
        ("http://user@issuer.test/api/v1", "is not the connection's"),
        ("http://issuer.test/api/v1#x", "has a fragment"),
    ],
)
def test_a_url_outside_the_base_is_refused(url: str, problem: str) -> None:
    with pytest.raises(UnsafeRequest, match=problem.replace(".", r"\.")):
        check_target(url, BASE)


def test_a_base_at_the_root_admits_any_clean_path_on_its_host() -> None:
    check_target("http://issuer.test/v1/tokens", "http://issuer.test")
    check_target("http://issuer.test/v1/tokens", "http://issuer.test/")
    with pytest.raises(UnsafeRequest, match="dot segment"):
        check_target("http://issuer.test/%2e%2e/x", "http://issuer.test")


def test_an_encoded_slash_in_the_base_itself_is_the_operators_choice() -> None:
    """A base like GitLab's `/api/v4/projects/group%2Fapp` is configured, not filled in: only
    what is below it is checked."""
    base = "http://issuer.test/api/v4/projects/group%2Fapp"
    check_target(base + "/tokens/7", base)
    with pytest.raises(UnsafeRequest, match="holds a slash"):
        check_target(base + "/tokens/a%2Fb", base)
