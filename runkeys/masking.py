"""Every form in which a key's value could show up in a log, so that every form can be masked.

The runner masks what it is told with `::add-mask::` (and itself adds base64 shifts and a few
escapes for secrets it knows, but not for values an action mints). A minted value is masked whole,
line by line, and in the encodings a test or a tool is likely to print it in.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

# A value inside a longer base64 blob (a Basic auth header) starts at any of three byte offsets;
# characters that carry a neighbour's bits are dropped, as actions/runner `Base64ValueEncoder` does.
_SHIFT_DROP = {0: 0, 1: 2, 2: 3}
_MIN_SHIFTED = 8


def _base64_forms(raw: bytes) -> set[str]:
    forms: set[str] = set()
    for encoder in (base64.b64encode, base64.urlsafe_b64encode):
        full = encoder(raw).decode()
        forms.add(full)
        forms.add(full.rstrip("="))
        for shift, drop in _SHIFT_DROP.items():
            encoded = encoder(b"\0" * shift + raw).decode().rstrip("=")
            if (shift + len(raw)) % 3:
                encoded = encoded[:-1]  # the last character also carries padding bits
            inner = encoded[drop:]
            if len(inner) >= _MIN_SHIFTED:
                forms.add(inner)
    return forms


def encodings(value: str) -> list[str]:
    """The value, each of its lines, and its base64, base64url, URL-encoded and JSON-escaped
    forms; deduplicated, longest first, empty forms dropped."""
    forms: set[str] = {value}
    forms.update(line.strip() for line in value.splitlines())
    raw = value.encode()
    forms.update(_base64_forms(raw))
    forms.add(urllib.parse.quote(value, safe=""))
    forms.add(urllib.parse.quote_plus(value, safe=""))
    forms.add(json.dumps(value)[1:-1])
    return sorted((f for f in forms if f), key=lambda f: (-len(f), f))
