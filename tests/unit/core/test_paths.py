"""The one builder of the path segments runkeys sends to GitHub, over hostile names.
Expected answers are written out here, never computed by the code tested."""

from __future__ import annotations

import pytest

from runkeys.github.paths import (
    UnsafePathSegment,
    environment_path,
    quote_path,
    repository_path,
)

# segment → what goes on the wire
SAFE_SEGMENTS = [
    ("ci-pr-12", "ci-pr-12"),
    ("a/b", "a%2Fb"),
    ("staging deploy", "staging%20deploy"),
    ("préprod", "pr%C3%A9prod"),
    ("100%", "100%25"),
    ("a?b#c", "a%3Fb%23c"),
    ("%2F", "%252F"),  # a name that holds an escape is sent as that text
    ("a%2Fb", "a%252Fb"),
    ("...", "..."),  # three dots are no dot segment
    (".github", ".github"),
    ("a\\b", "a%5Cb"),
    ("ci\nprod", "ci%0Aprod"),
    ("API_KEY", "API_KEY"),
]


@pytest.mark.parametrize(("segment", "sent"), SAFE_SEGMENTS)
def test_a_segment_is_percent_encoded_whole(segment: str, sent: str) -> None:
    assert quote_path(segment) == sent


# Each would be resolved against the path around it, by the client, the server or a proxy
# that decodes once more than it should.
UNSAFE_SEGMENTS = [
    "",
    ".",
    "..",
    "../..",
    "a/../b",
    "./a",
    "a/..",
    "..\\a",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e",
    "..%2F",
    "a%2F..%2Fb",
    "%252e%252e",  # `..` after two decodings
    "%25252e%25252e",
    "%2525252e",
]


@pytest.mark.parametrize("segment", UNSAFE_SEGMENTS)
def test_a_dot_segment_is_refused_before_anything_is_sent(segment: str) -> None:
    with pytest.raises(UnsafePathSegment) as refused:
        quote_path(segment, what="environment")
    assert refused.value.explain().startswith(f"refusing to send environment {segment!r}")
    assert "How to fix: rename the environment" in refused.value.explain()


def test_repository_and_environment_paths() -> None:
    assert repository_path("octo/app") == "/repos/octo/app"
    assert repository_path("octo/.github") == "/repos/octo/.github"
    assert environment_path("octo/app", "a/b") == "/repos/octo/app/environments/a%2Fb"
    assert environment_path("octo/app", "ci pr") == "/repos/octo/app/environments/ci%20pr"


@pytest.mark.parametrize("full_name", ["octo/..", "../app", "octo/.", "./app", "octo/%2e%2e"])
def test_a_repository_of_dot_segments_is_refused(full_name: str) -> None:
    with pytest.raises(UnsafePathSegment):
        repository_path(full_name)


@pytest.mark.parametrize("full_name", ["octo", "octo/", "/app", "octo/app/x", ""])
def test_a_repository_that_is_not_owner_slash_name_is_refused(full_name: str) -> None:
    with pytest.raises(ValueError, match="is not an owner/name repository"):
        repository_path(full_name)


@pytest.mark.parametrize("name", ["..", ".", "a/../b"])
def test_an_environment_of_dot_segments_has_no_path(name: str) -> None:
    with pytest.raises(UnsafePathSegment):
        environment_path("octo/app", name)
