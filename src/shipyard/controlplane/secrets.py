"""Encryption at rest for env snapshots and generated values (Fernet, key in SHIPYARD_HOME).

The key file is created once with mode 0600. Values are never logged; API responses list env
keys only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from shipyard.errors import ShipyardError


class SecretBox:
    def __init__(self, key_path: Path) -> None:
        key = _load_or_create_key(key_path)
        self._fernet = Fernet(key)
        self._mac_key = hashlib.sha256(b"shipyard-digest:" + key).digest()

    def digest(self, text: str) -> str:
        """A keyed digest (HMAC-SHA256): tells whether a value changed without letting anyone
        holding the state file test guesses against it."""
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise ShipyardError(
                "An encrypted value could not be decrypted: the key in SHIPYARD_HOME/secret.key "
                "does not match the one it was written with."
            ) from exc

    def encrypt_env(self, env: dict[str, str]) -> bytes:
        return self.encrypt(json.dumps(env, sort_keys=True))

    def decrypt_env(self, token: bytes) -> dict[str, str]:
        data = json.loads(self.decrypt(token))
        return {str(k): str(v) for k, v in data.items()}


def _load_or_create_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
