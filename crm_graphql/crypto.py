"""Encryption of sensitive values at rest: AES-256-GCM with named, rotatable keys.

A ciphertext reads ``v1:<kid>:<base64(nonce || ciphertext || tag)>``. The key id travels
with every value, so a keyring of several keys (the current one first) reads values
written under any of them while new values use the current key; `crm-graphql
rotate-encryption-key` re-encrypts old values until an old key can be dropped.

The keyring is built once from the configuration (``Settings.encryption_keys``), kept in
``AppState`` and attached to every session the app opens (``session.info``), so a service
reaches it through the session it already receives instead of a global.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models.base import load_json

FORMAT = "v1"
NONCE_BYTES = 12
KEYRING_INFO_KEY = "crm_keyring"
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class KeyringError(ValueError):
    """A key entry of the configuration is malformed."""


class DecryptionError(ValueError):
    """A value cannot be decrypted: unknown key id, wrong key or tampered bytes."""


class Keyring:
    """AES-256-GCM keys by id; the first one encrypts, all of them decrypt."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyringError("at least one encryption key is needed")
        self._keys: dict[str, AESGCM] = {}
        for kid, key in keys:
            if not _KID.match(kid):
                raise KeyringError(f"key id {kid!r}: use 1-32 letters, digits, '-' or '_'")
            if len(key) != 32:
                raise KeyringError(f"key {kid!r} must be 32 bytes (base64 of 32 random bytes)")
            if kid in self._keys:
                raise KeyringError(f"key id {kid!r} is listed twice")
            self._keys[kid] = AESGCM(key)
        self.current_kid = keys[0][0]

    @classmethod
    def from_entries(cls, entries: Sequence[str]) -> Keyring:
        """From ``kid:base64key`` entries (``CRM_ENCRYPTION_KEYS``), current first."""
        keys: list[tuple[str, bytes]] = []
        for entry in entries:
            kid, separator, encoded = entry.strip().partition(":")
            if not separator:
                raise KeyringError("an encryption key entry reads `kid:base64key`")
            try:
                key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_")
            except (binascii.Error, ValueError) as exc:
                raise KeyringError(f"key {kid!r} is not valid base64") from exc
            keys.append((kid, key))
        return cls(keys)

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def encrypt(self, plaintext: str) -> str:
        """The value encrypted under the current key (a fresh random nonce each time)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current_kid].encrypt(nonce, plaintext.encode(), None)
        encoded = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{FORMAT}:{self.current_kid}:{encoded}"

    def decrypt(self, token: str) -> str:
        """The plaintext of a value written by ``encrypt`` under any key of the ring."""
        kid = key_id(token)
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptionError(
                f"value encrypted with key {kid!r}, which is not in CRM_ENCRYPTION_KEYS"
            )
        encoded = token.split(":", 2)[2]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None).decode()
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise DecryptionError(f"value under key {kid!r} does not decrypt") from exc

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def decrypt_json(self, token: str) -> Any:
        return load_json(self.decrypt(token))

    def is_current(self, token: str) -> bool:
        """Whether the value is already under the current key (rotation skips it)."""
        return key_id(token) == self.current_kid

    def reencrypt(self, token: str) -> str:
        """The same plaintext under the current key; unchanged if already current."""
        return token if self.is_current(token) else self.encrypt(self.decrypt(token))


def key_id(token: str) -> str:
    """The key id a ciphertext names, or ``DecryptionError`` for a foreign string."""
    parts = token.split(":", 2)
    if len(parts) != 3 or parts[0] != FORMAT:
        raise DecryptionError("not an encrypted value")
    return parts[1]


def attach(sessionmaker: async_sessionmaker[AsyncSession], keyring: Keyring) -> None:
    """Give every session of ``sessionmaker`` the keyring (read with ``keyring_of``)."""
    info = dict(sessionmaker.kw.get("info") or {})
    info[KEYRING_INFO_KEY] = keyring
    sessionmaker.configure(info=info)


def keyring_of(session: AsyncSession) -> Keyring:
    """The keyring the session was opened with; a configuration error without one."""
    keyring = session.info.get(KEYRING_INFO_KEY)
    if not isinstance(keyring, Keyring):
        raise RuntimeError("this session has no encryption keyring (crypto.attach)")
    return keyring
