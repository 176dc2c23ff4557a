"""Tokens at rest: MultiFernet, first key encrypts, every key decrypts (so keys can be rotated)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class VaultError(Exception):
    """The blob cannot be opened with any configured key; the message never holds key or blob."""


class TokenVault:
    def __init__(self, keys: str) -> None:
        key_list = [key.strip() for key in keys.split(",") if key.strip()]
        if not key_list:
            raise VaultError("no token key configured")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in key_list])
        except (ValueError, TypeError) as error:
            raise VaultError("a token key is not a valid Fernet key (32 url-safe base64 bytes)") from error

    def seal(self, payload: Mapping[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(dict(payload), separators=(",", ":")).encode())

    def open(self, blob: bytes) -> dict[str, Any]:
        try:
            opened = json.loads(self._fernet.decrypt(blob))
        except InvalidToken as error:
            raise VaultError("token blob cannot be decrypted with the configured keys") from error
        if not isinstance(opened, dict):
            raise VaultError("token blob holds no object")
        return opened

    def reseal(self, blob: bytes) -> bytes:
        """The same secret sealed under the first key (``MultiFernet.rotate``), for key retirement."""
        try:
            return self._fernet.rotate(blob)
        except InvalidToken as error:
            raise VaultError("blob cannot be decrypted with the configured keys") from error

    def seal_text(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def open_text(self, blob: bytes) -> str:
        try:
            return self._fernet.decrypt(blob).decode()
        except InvalidToken as error:
            raise VaultError("blob cannot be decrypted with the configured keys") from error


def new_key() -> str:
    return Fernet.generate_key().decode()
