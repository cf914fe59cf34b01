"""Every form of a key's value a log could show, written with the standard library alone: the
tests' own list of what must be masked and scanned for, so that a form the product stops
making fails a test instead of leaving the tests' list along with it.

The forms: the value, each of its lines, its base64 and base64url (with and without padding,
and inside a longer blob such as `user:password` in a Basic auth header), URL-encoded (`quote`,
and `quote_plus` as form bodies and query strings write it) and JSON-escaped.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable

# A piece of a longer blob shorter than this would match unrelated text.
MIN_INSIDE = 8


def inside_a_longer_blob(raw: bytes, encode: Callable[[bytes], bytes]) -> set[str]:
    """The characters of `encode(prefix + raw + suffix)` that carry bits of `raw` only, for a
    prefix of 0, 1 or 2 bytes: base64 puts 6 bits in a character, so character i holds bits
    6i to 6i+6, and those wholly within raw's bits read the same whatever surrounds raw."""
    forms = set()
    for offset in (0, 1, 2):
        encoded = encode(b"\0" * offset + raw).decode()
        first = -(-8 * offset // 6)  # the first character that starts inside raw
        end = 8 * (offset + len(raw)) // 6  # past the last character that ends inside raw
        if end - first >= MIN_INSIDE:
            forms.add(encoded[first:end])
    return forms


def encoded_forms(value: str) -> set[str]:
    """The forms of `value` that must be masked and must not leak; empty ones left out."""
    raw = value.encode()
    forms = {value, *(line.strip() for line in value.splitlines())}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        padded = encode(raw).decode()
        forms |= {padded, padded.rstrip("=")}
        forms |= inside_a_longer_blob(raw, encode)
    forms.add(urllib.parse.quote(value, safe=""))
    forms.add(urllib.parse.quote_plus(value, safe=""))
    forms.add(json.dumps(value)[1:-1])
    return {form for form in forms if form}
