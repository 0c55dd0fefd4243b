"""Sealed files: a file encrypted and authenticated in chunks, to a file, in constant memory.

``seal(src, dst, key)`` and ``unseal(src, dst, key)``; ``key`` is 32 bytes the caller keeps
(never logged, never in a message). Format, version 1 (big-endian integers)::

    header   magic "SHIPSEAL" (8) | version 1 (1) | reserved 0 (1) | chunk size (4)
             | salt (32) | nonce prefix (7) | header MAC (32)             = 85 bytes
    chunks   AES-256-GCM(chunk) | tag (16), each chunk ``chunk size`` bytes of plaintext
             except the last (0..chunk size bytes; an empty file is one empty last chunk)

* keys: HKDF-SHA256(key, salt) gives the file's AES-256 key and its HMAC key; the salt and the
  nonce prefix are random per file, so one key can seal any number of files;
* the header MAC (HMAC-SHA256 of the 53 bytes before it) commits to the key: a wrong key is
  told apart from a damaged chunk before anything is decrypted;
* chunk ``i``'s nonce is prefix (7) | i (4) | last (1: 1 for the last chunk, else 0), and the
  whole header is its associated data: a chunk modified, moved, taken from another file, a file
  cut short (its last chunk is not marked last) or extended after its last chunk all fail;
* the output is written to a temporary file beside ``dst`` (mode 0600) and renamed over it
  only when complete and authenticated; on any failure it is removed, so ``unseal`` never
  leaves partial plaintext behind and ``dst`` is either the old file or the whole new one.

Errors: :class:`SealError` (a RuntimeFailure) with ``fields["reason"]`` one of ``not_sealed``,
``unsupported_version``, ``wrong_key``, ``truncated``, ``tampered``, ``io``; ValueError for a
key that is not 32 bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shipyard.errors import RuntimeFailure

MAGIC = b"SHIPSEAL"
VERSION = 1
KEY_BYTES = 32
CHUNK_SIZE = 1024 * 1024  # plaintext bytes per chunk: 1 MiB, ~2 MiB of memory while working
MAX_CHUNK_SIZE = 16 * 1024 * 1024
TAG_BYTES = 16
SALT_BYTES = 32
PREFIX_BYTES = 7
MAX_CHUNKS = 2**32
_FIXED = struct.Struct(">8sBBI")  # magic, version, reserved, chunk size
_HEAD_BYTES = _FIXED.size + SALT_BYTES + PREFIX_BYTES  # what the header MAC covers
HEADER_BYTES = _HEAD_BYTES + 32
_HKDF_INFO = b"shipyard sealed file v1: aes-256-gcm key, hmac-sha256 key"


class SealError(RuntimeFailure):
    """A sealed file could not be sealed or unsealed; ``fields["reason"]`` says why."""


@dataclass(frozen=True)
class SealedFile:
    """What went through: the plaintext's size and SHA-256, the sealed file's size."""

    plain_bytes: int
    plain_sha256: str
    sealed_bytes: int


def seal(src: Path, dst: Path, key: bytes, *, chunk_size: int = CHUNK_SIZE) -> SealedFile:
    """Encrypt ``src`` into ``dst`` (replaced atomically when complete)."""
    _check_key(key)
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE}, got {chunk_size}")
    salt, prefix = secrets.token_bytes(SALT_BYTES), secrets.token_bytes(PREFIX_BYTES)
    head = _FIXED.pack(MAGIC, VERSION, 0, chunk_size) + salt + prefix
    aes, mac_key = _derive(key, salt)
    header = head + hmac.new(mac_key, head, hashlib.sha256).digest()
    digest, total = hashlib.sha256(), 0
    try:
        with open(src, "rb") as reader, _atomic_output(dst) as writer:
            writer.write(header)
            for index, chunk, last in _chunks(reader, chunk_size):
                digest.update(chunk)
                total += len(chunk)
                writer.write(aes.encrypt(_nonce(prefix, index, last), chunk, header))
            sealed = writer.tell()
    except OSError as exc:
        raise _io_error("seal", src, dst, exc) from None
    return SealedFile(total, digest.hexdigest(), sealed)


def unseal(src: Path, dst: Path, key: bytes) -> SealedFile:
    """Decrypt ``src`` into ``dst`` (replaced atomically, only once every chunk is
    authenticated). SealError for a wrong key or a damaged, truncated or reordered file."""
    _check_key(key)
    digest, total = hashlib.sha256(), 0
    try:
        with open(src, "rb") as reader, _atomic_output(dst) as writer:
            header = reader.read(HEADER_BYTES)
            chunk_size, salt, prefix = _parse_header(header, src)
            aes, mac_key = _derive(key, salt)
            expected = hmac.new(mac_key, header[:_HEAD_BYTES], hashlib.sha256).digest()
            if not hmac.compare_digest(expected, header[_HEAD_BYTES:]):
                raise _failure(
                    src, "wrong_key",
                    "wrong key (or its header was modified): its key check does not match",
                )  # fmt: skip
            for index, block, last in _chunks(reader, chunk_size + TAG_BYTES):
                plain = _open_chunk(aes, (prefix, header), index, block, last, src, chunk_size)
                digest.update(plain)
                total += len(plain)
                writer.write(plain)
            sealed = reader.tell()
    except OSError as exc:
        raise _io_error("unseal", src, dst, exc) from None
    return SealedFile(total, digest.hexdigest(), sealed)


# -- format ----------------------------------------------------------------------------------


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise ValueError(f"a sealing key is {KEY_BYTES} bytes, got {size}")


def _derive(key: bytes, salt: bytes) -> tuple[AESGCM, bytes]:
    material = HKDF(hashes.SHA256(), 64, salt, _HKDF_INFO).derive(bytes(key))
    return AESGCM(material[:32]), material[32:]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_CHUNKS:
        raise ValueError(f"a sealed file holds at most {MAX_CHUNKS} chunks")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _parse_header(header: bytes, src: Path) -> tuple[int, bytes, bytes]:
    """(chunk size, salt, nonce prefix) of a header; SealError for anything but a version-1
    sealed file."""
    if len(header) < _FIXED.size or not header.startswith(MAGIC):
        raise _failure(src, "not_sealed", "not a sealed file (no SHIPSEAL header)")
    _, version, reserved, chunk_size = _FIXED.unpack_from(header)
    if version != VERSION:
        raise _failure(
            src, "unsupported_version",
            f"sealed with format version {version}; this Shipyard reads version {VERSION}",
        )  # fmt: skip
    if len(header) < HEADER_BYTES:
        raise _failure(src, "truncated", "truncated: the header is incomplete")
    if reserved != 0 or not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise _failure(src, "tampered", "damaged header (invalid chunk size or flags)")
    salt = header[_FIXED.size : _FIXED.size + SALT_BYTES]
    return chunk_size, salt, header[_FIXED.size + SALT_BYTES : _HEAD_BYTES]


def _chunks(reader: BinaryIO, size: int) -> Iterator[tuple[int, bytes, bool]]:
    """(index, block, is_last) for each ``size``-byte block of ``reader``, one block of
    lookahead; an empty stream is one empty last block."""
    current = reader.read(size)
    index = 0
    while True:
        following = reader.read(size) if len(current) == size else b""
        last = not following
        yield index, current, last
        if last:
            return
        current, index = following, index + 1


def _open_chunk(
    aes: AESGCM,
    file_ids: tuple[bytes, bytes],
    index: int,
    block: bytes,
    last: bool,
    src: Path,
    chunk_size: int,
) -> bytes:
    """Chunk ``index`` decrypted (``file_ids``: the nonce prefix and the header); SealError
    saying how the file is damaged."""
    prefix, header = file_ids
    if len(block) < TAG_BYTES:
        raise _failure(src, "truncated", f"truncated: chunk {index} is incomplete")
    try:
        return aes.decrypt(_nonce(prefix, index, last), block, header)
    except InvalidTag:
        pass
    # Tell the reader what happened: a last block that is a valid middle chunk means the
    # rest of the file is missing; a middle block that is a valid last chunk, data appended.
    with contextlib.suppress(InvalidTag):
        aes.decrypt(_nonce(prefix, index, not last), block, header)
        if last:
            raise _failure(src, "truncated", f"truncated: it ends after chunk {index}")
        raise _failure(src, "tampered", f"data was appended after its last chunk ({index})")
    raise _failure(
        src, "tampered",
        f"chunk {index} (at byte {HEADER_BYTES + index * (chunk_size + TAG_BYTES)}) fails "
        "authentication: modified, moved, taken from another file or cut short",
    )  # fmt: skip


# -- files -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_output(dst: Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``dst`` (0600), renamed over ``dst`` when the block succeeds,
    removed when it fails."""
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as writer:
            yield writer
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _failure(src: Path, reason: str, what: str) -> SealError:
    return SealError(f"sealed file {src}: {what}", fields={"path": str(src), "reason": reason})


def _io_error(action: str, src: Path, dst: Path, exc: OSError) -> SealError:
    where = exc.filename or src
    return SealError(
        f"could not {action} {src} into {dst}: {exc.strerror or exc} ({where})",
        fields={"path": str(src), "dst": str(dst), "reason": "io"},
    )
