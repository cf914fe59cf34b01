"""The NaCl key pair behind a secrets scope (a repository, an environment, an organization), as
GitHub keeps one: the public half is handed out with a `key_id`; values sealed to it are opened
here so tests can read back what was stored."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox


def _new_key_id() -> str:
    # GitHub's key ids are large decimal numbers sent as strings, e.g. "3380204578043523366".
    return str(secrets.randbelow(9 * 10**18) + 10**18)


@dataclass
class SealingKey:
    private_key: PrivateKey = field(default_factory=PrivateKey.generate, repr=False)
    key_id: str = field(default_factory=_new_key_id)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(bytes(self.private_key.public_key)).decode()

    def unseal(self, encrypted_value: str) -> bytes | None:
        """The plaintext of a base64 sealed box made for this key, or None if it is not one."""
        try:
            sealed = base64.b64decode(encrypted_value, validate=True)
            return bytes(SealedBox(self.private_key).decrypt(sealed))
        except (binascii.Error, ValueError, CryptoError):
            return None


def seal(public_key_b64: str, value: str | bytes) -> str:
    """What a client does (PyGithub's `encrypt`): for tests and the CLI."""
    raw = value.encode() if isinstance(value, str) else value
    box = SealedBox(PublicKey(base64.b64decode(public_key_b64)))
    return base64.b64encode(box.encrypt(raw)).decode()
