"""Finding a job's key values in files before they leave the job (the `scan` sub-action).

The main step leaves a manifest of the job variables that carry each key and its secret parts,
with their fingerprints and never their values; the scan reads each value from its own
environment, checks it against the fingerprint, and looks for every form `runkeys.masking`
masks. Everything here is pure: the caller reads the files and hands over their bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from runkeys.leases import fingerprint
from runkeys.masking import PUBLIC_PARTS, named_encodings

MANIFEST_VERSION = 1
# The job variable the main step appends its manifest's path to (several runkeys steps, one
# list), separated by newlines: a path may hold `:` but not a newline.
MANIFESTS_VARIABLE = "RUNKEYS_SCAN_MANIFESTS"
# A shorter form would match unrelated text (the shortest base64 piece masking keeps).
MIN_FORM = 8
# Lines of a key that every key of its kind has, naming no secret: PEM armour
# (`-----BEGIN OPENSSH PRIVATE KEY-----`) and the first base64 line of an OpenSSH key, which
# encodes only its fixed header (`openssh-key-v1`, no cipher, no KDF, one key, its type).
_SHARED_LINES = re.compile(
    r"-----(BEGIN|END) [A-Z0-9 ]+-----|b3BlbnNzaC1rZXktdjEAAAAABG5vbmUA[A-Za-z0-9+/]*"
)
# Like git: a NUL byte in the first 8000 bytes makes a file binary; line numbers mean nothing.
BINARY_SNIFF = 8000


class Watched(msgspec.Struct, frozen=True):
    """One job variable that carries a key's value or one of its secret parts."""

    key: str
    variable: str
    fingerprint: str


class Manifest(msgspec.Struct, frozen=True):
    version: int
    watched: tuple[Watched, ...]

    def to_text(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_text(cls, text: str | bytes) -> Manifest:
        """Raises ValueError for anything that is not a manifest of this version."""
        manifest = msgspec.json.decode(text, type=cls)  # DecodeError is a ValueError
        if manifest.version != MANIFEST_VERSION:
            raise ValueError(f"manifest version {manifest.version}, not {MANIFEST_VERSION}")
        return manifest


def watch(key: str, variables: Sequence[str], values: Mapping[str, str]) -> list[Watched]:
    """The key's variable and those of its secret parts (`<KEY>_<PART>`, not HOST, PORT or
    DATABASE), fingerprinted from `values`."""
    found = []
    for variable in variables:
        part = variable[len(key) + 1 :] if variable != key else ""
        if part.upper() in PUBLIC_PARTS:
            continue
        found.append(Watched(key, variable, fingerprint(values[variable])))
    return found


@dataclass(frozen=True)
class Needle:
    variable: str
    encoding: str
    form: bytes


def needles(values: Mapping[str, str]) -> list[Needle]:
    """Every form of every value (job variable → value) worth looking for, longest first."""
    found = []
    for variable, value in values.items():
        for form, encoding in named_encodings(value).items():
            if len(form) >= MIN_FORM and not _SHARED_LINES.fullmatch(form):
                found.append(Needle(variable, encoding, form.encode()))
    return sorted(found, key=lambda n: -len(n.form))


@dataclass(frozen=True)
class Hit:
    needle: Needle
    line: int  # 1-based
    offset: int  # of the form's first byte in the file


class Matcher:
    """All needles at once, over a file given as chunks: a form that straddles two chunks is
    found, and each occurrence is found once."""

    def __init__(self, found: Sequence[Needle]) -> None:
        self._by_form: dict[bytes, Needle] = {}
        for needle in found:
            self._by_form.setdefault(needle.form, needle)  # the first, longest-first name wins
        # Longest first: at one position the whole value wins over one of its lines.
        alternatives = sorted(self._by_form, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(f) for f in alternatives) or b"(?!)")
        self._keep = max((len(f) for f in alternatives), default=1) - 1

    def scan(self, chunks: Iterable[bytes]) -> Iterator[Hit]:
        tail = b""
        start = 0  # file offset of tail's first byte
        newlines = 0  # newlines before `start`
        for chunk in chunks:
            if not chunk:
                continue
            buffer = tail + chunk
            for match in self._pattern.finditer(buffer):
                if match.end() <= len(tail):
                    continue  # wholly inside the tail: found with the chunk before
                line = newlines + buffer.count(b"\n", 0, match.start()) + 1
                yield Hit(self._by_form[match.group()], line, start + match.start())
            cut = max(len(buffer) - self._keep, 0)
            newlines += buffer.count(b"\n", 0, cut)
            start += cut
            tail = buffer[cut:]


def is_binary(head: bytes) -> bool:
    return b"\0" in head[:BINARY_SNIFF]


def parse_size(text: str) -> int:
    """`500K`, `100M`, `2G` or a number of bytes (powers of 1024). Raises ValueError."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{text!r} is not a size (a number of bytes, or with K, M or G)")
    multiplier = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(match.group(1)) * multiplier
