"""Almost-right values for the attacks that must fail."""

from __future__ import annotations


def last_char_changed(text: str) -> str:
    """`text` with its last character replaced by another: never `text` itself, whatever the
    random value ended in (appending a fixed character was the same value one time in 36+)."""
    return text[:-1] + ("y" if text[-1] == "x" else "x")
