"""Encryption at rest for env snapshots, generated values, operator-set env values and
datastore secrets (Fernet, keys in SHIPYARD_HOME/secret.key).

The key file is created once with mode 0600. Its lines: the current key first, then keys being
retired (during a rotation), and ``mac:<key>``, the key of the keyed digests that stored specs
hold (kept across rotations, so a rotation changes no digest and no plan). A file of one bare
key is the original format: its digest key is derived from that key, as before.

Rotation (`shipyard secrets rotate-key`) never leaves a value undecryptable, whenever it is
interrupted: the new key is first added in front of the old one (both decrypt), then every
stored value is re-encrypted with it in one transaction, then the old key is dropped. Values
are never logged; API responses list env keys only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shipyard.errors import ShipyardError

MAC_PREFIX = "mac:"


class SecretBox:
    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._load(_load_or_create(key_path))

    def _load(self, lines: list[str]) -> None:
        keys = [line for line in lines if not line.startswith(MAC_PREFIX)]
        macs = [line[len(MAC_PREFIX) :] for line in lines if line.startswith(MAC_PREFIX)]
        self._keys = keys
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        if macs:
            self._mac_key = base64.urlsafe_b64decode(macs[0])
        else:  # the original one-key file
            self._mac_key = hashlib.sha256(b"shipyard-digest:" + keys[-1].encode()).digest()

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

    def rotate(self, reencrypt: Callable[[Callable[[bytes], bytes]], int]) -> int:
        """A new key: added first (the old one still decrypts), every value re-encrypted with
        it by ``reencrypt`` (given the function that re-encrypts one token; one transaction,
        returns how many), then the old keys dropped. Returns the number of values."""
        mac = MAC_PREFIX + base64.urlsafe_b64encode(self._mac_key).decode()
        new = Fernet.generate_key().decode()
        _write(self.key_path, [new, *self._keys, mac])
        self._load([new, *self._keys, mac])
        count = reencrypt(self._fernet.rotate)
        _write(self.key_path, [new, mac])
        self._load([new, mac])
        return count


def _load_or_create(path: Path) -> list[str]:
    if path.exists():
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            return lines
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return [key.decode()]


def _write(path: Path, lines: list[str]) -> None:
    """Replace the key file atomically (0600), durably."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
