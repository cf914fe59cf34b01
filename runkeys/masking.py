"""Every form in which a key's value could show up in a log, so that every form can be masked.

The runner masks what it is told with `::add-mask::` (and itself adds base64 shifts and a few
escapes for secrets it knows, but not for values an action mints). A minted value is masked whole,
line by line, and in the encodings a test or a tool is likely to print it in.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping

# A value inside a longer base64 blob (a Basic auth header) starts at any of three byte offsets;
# characters that carry a neighbour's bits are dropped, as actions/runner `Base64ValueEncoder` does.
_SHIFT_DROP = {0: 0, 1: 2, 2: 3}
_MIN_SHIFTED = 8


# Parts of a key that say where it logs in, not how: not masked, since masking `5432` or
# `localhost` would blank every log line that names them (the value, a URL, is masked whole).
PUBLIC_PARTS = frozenset({"HOST", "PORT", "DATABASE"})


def secret_parts(parts: Mapping[str, str]) -> list[str]:
    return [value for name, value in parts.items() if name.upper() not in PUBLIC_PARTS]


def _base64_forms(raw: bytes) -> dict[str, str]:
    forms: dict[str, str] = {}
    for encoder, name in ((base64.b64encode, "base64"), (base64.urlsafe_b64encode, "base64url")):
        full = encoder(raw).decode()
        forms.setdefault(full, name)
        forms.setdefault(full.rstrip("="), f"{name} without padding")
        for shift, drop in _SHIFT_DROP.items():
            encoded = encoder(b"\0" * shift + raw).decode().rstrip("=")
            if (shift + len(raw)) % 3:
                encoded = encoded[:-1]  # the last character also carries padding bits
            inner = encoded[drop:]
            if len(inner) >= _MIN_SHIFTED:
                forms.setdefault(inner, f"{name} inside a longer blob")
    return forms


def named_encodings(value: str) -> dict[str, str]:
    """Every form of `encodings`, each with the name of the first encoding that makes it (the
    value itself is `raw`, so a token that encodes to itself is named `raw`)."""
    forms: dict[str, str] = {value: "raw"}
    for line in value.splitlines():
        forms.setdefault(line.strip(), "a line of it")
    for form, name in _base64_forms(value.encode()).items():
        forms.setdefault(form, name)
    forms.setdefault(urllib.parse.quote(value, safe=""), "URL-encoded")
    forms.setdefault(urllib.parse.quote_plus(value, safe=""), "URL-encoded (form)")
    forms.setdefault(json.dumps(value)[1:-1], "JSON-escaped")
    forms.pop("", None)
    return forms


def encodings(value: str) -> list[str]:
    """The value, each of its lines, and its base64, base64url, URL-encoded and JSON-escaped
    forms; deduplicated, longest first, empty forms dropped."""
    return sorted(named_encodings(value), key=lambda f: (-len(f), f))
