"""Encryption of stored registry credentials (Fernet, with key rotation).

``REGFLOW_SECRET_KEYS`` holds one or more comma-separated Fernet keys. The first
encrypts; every key decrypts, so a key is rotated by putting a new one first,
re-encrypting, and then dropping the old one. There is no unencrypted mode and no
built-in key: a process that stores or reads credentials refuses to start
without a key. Generate one with ``python -m regflow.registries``.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from regflow.registries.errors import SecretDecryptionError, SecretKeyError

KEYS_VARIABLE = "REGFLOW_SECRET_KEYS"
# Ends every key error, so whoever reads one knows how to make a good key.
GENERATE_HINT = "generate one with `python -m regflow.registries`"


class SecretBox:
    """Symmetric authenticated encryption of small secrets.

    Tokens carry their creation time and an HMAC, so a changed or truncated
    token fails to decrypt instead of yielding garbage.
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        """Build from Fernet keys, newest (the encrypting one) first.

        Raises:
            SecretKeyError: no key, or a value that is not a Fernet key (the
                message gives its position, never the value).
        """
        if not keys:
            raise SecretKeyError(
                f"{KEYS_VARIABLE} is empty: give at least one Fernet key "
                f"({GENERATE_HINT})"
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError) as exc:
                raise SecretKeyError(
                    f"key {position} of {KEYS_VARIABLE} is not a Fernet key "
                    f"(32 url-safe base64-encoded bytes; {GENERATE_HINT})"
                ) from exc
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, value: SecretStr | str) -> SecretBox:
        """Build from the comma-separated ``REGFLOW_SECRET_KEYS`` value."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return cls([part.strip() for part in text.split(",") if part.strip()])

    @staticmethod
    def generate_key() -> str:
        """A new random key, for a key list or a test."""
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt with the first key."""
        return self._fernet.encrypt(plaintext)

    def decrypt(self, token: bytes) -> bytes:
        """Decrypt with whichever key fits.

        Raises:
            SecretDecryptionError: no configured key decrypts the token.
        """
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise SecretDecryptionError(
                f"no key in {KEYS_VARIABLE} decrypts this value"
            ) from exc

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` with the first key (same errors as decrypt)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise SecretDecryptionError(
                f"no key in {KEYS_VARIABLE} decrypts this value"
            ) from exc
