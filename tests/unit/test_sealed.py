"""Sealed files: round trips of every size around the chunk boundaries, the header, and every
way a file can be wrong (key, bytes, truncation, order, appended data, version), each with its
own error; the output never partial, memory constant."""

from __future__ import annotations

import hashlib
import os
import secrets
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.drivers.local.sealed import (
    CHUNK_SIZE,
    HEADER_BYTES,
    MAGIC,
    TAG_BYTES,
    SealError,
    seal,
    unseal,
)

KEY = bytes(range(32))
CHUNK = 64  # small chunks: many of them in a few bytes
BLOCK = CHUNK + TAG_BYTES


def sealed_file(tmp_path: Path, data: bytes, chunk_size: int = CHUNK, key: bytes = KEY) -> Path:
    src, dst = tmp_path / "plain", tmp_path / "sealed"
    src.write_bytes(data)
    seal(src, dst, key, chunk_size=chunk_size)
    return dst


def unseal_error(tmp_path: Path, sealed: bytes | Path, key: bytes = KEY) -> SealError:
    """The SealError unsealing ``sealed`` raises; checks nothing was left behind."""
    src = sealed if isinstance(sealed, Path) else tmp_path / "broken"
    if not isinstance(sealed, Path):
        src.write_bytes(sealed)
    out = tmp_path / "out" / "restored"
    out.parent.mkdir(exist_ok=True)
    with pytest.raises(SealError) as caught:
        unseal(src, out, key)
    assert list(out.parent.iterdir()) == []  # no output, no temporary file
    assert KEY.hex() not in caught.value.message and repr(KEY) not in caught.value.message
    return caught.value


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 7])
def test_round_trip_around_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = secrets.token_bytes(size)
    dst = sealed_file(tmp_path, data)
    chunks = max(1, -(-size // CHUNK))
    assert dst.stat().st_size == HEADER_BYTES + size + chunks * TAG_BYTES
    out = tmp_path / "out"
    result = unseal(dst, out, KEY)
    assert out.read_bytes() == data
    assert result.plain_bytes == size
    assert result.plain_sha256 == hashlib.sha256(data).hexdigest()
    assert result.sealed_bytes == dst.stat().st_size


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=600), chunk_size=st.integers(1, 80))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                             chunk_size: int) -> None:  # fmt: skip
    where = tmp_path_factory.mktemp("prop")
    dst = sealed_file(where, data, chunk_size)
    assert unseal(dst, where / "out", KEY).plain_bytes == len(data)
    assert (where / "out").read_bytes() == data


def test_default_chunks_and_what_seal_returns(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 12345)
    src, dst = tmp_path / "plain", tmp_path / "sealed"
    src.write_bytes(data)
    result = seal(src, dst, KEY)
    assert result.plain_bytes == len(data)
    assert result.plain_sha256 == hashlib.sha256(data).hexdigest()
    assert result.sealed_bytes == dst.stat().st_size == HEADER_BYTES + len(data) + 3 * TAG_BYTES
    assert unseal(dst, tmp_path / "out", KEY) == result
    assert (tmp_path / "out").read_bytes() == data


def test_header_and_ciphertext(tmp_path: Path) -> None:
    data = b"REDIS0010" + b"very secret value " * 20
    dst = sealed_file(tmp_path, data)
    sealed = dst.read_bytes()
    assert sealed.startswith(MAGIC + b"\x01\x00" + CHUNK.to_bytes(4, "big"))
    assert b"REDIS" not in sealed and b"secret" not in sealed
    assert dst.stat().st_mode & 0o777 == 0o600
    again = sealed_file(tmp_path, data).read_bytes()
    assert again != sealed  # salt and nonce prefix are random per file
    assert sorted(tmp_path.iterdir()) == [tmp_path / "plain", dst]  # no temporary file left


def test_wrong_key(tmp_path: Path) -> None:
    dst = sealed_file(tmp_path, b"x" * 300)
    error = unseal_error(tmp_path, dst, key=bytes(32))
    assert error.fields == {"path": str(dst), "reason": "wrong_key"}
    assert error.message == (
        f"sealed file {dst}: wrong key (or its header was modified): its key check does not match"
    )


def test_flipped_byte_in_a_chunk(tmp_path: Path) -> None:
    sealed = bytearray(sealed_file(tmp_path, os.urandom(4 * CHUNK)).read_bytes())
    sealed[HEADER_BYTES + 2 * BLOCK + 5] ^= 0x01
    error = unseal_error(tmp_path, bytes(sealed))
    assert error.fields["reason"] == "tampered"
    assert f"chunk 2 (at byte {HEADER_BYTES + 2 * BLOCK}) fails authentication" in error.message


@pytest.mark.parametrize("offset", [20, 50, HEADER_BYTES - 1])  # salt, nonce prefix, MAC
def test_flipped_byte_in_the_header(tmp_path: Path, offset: int) -> None:
    sealed = bytearray(sealed_file(tmp_path, b"y" * 100).read_bytes())
    sealed[offset] ^= 0x80
    assert unseal_error(tmp_path, bytes(sealed)).fields["reason"] == "wrong_key"


def test_damaged_chunk_size_field(tmp_path: Path) -> None:
    sealed = bytearray(sealed_file(tmp_path, b"z" * 100).read_bytes())
    sealed[10:14] = (2**31).to_bytes(4, "big")  # absurd: refused before any allocation
    assert unseal_error(tmp_path, bytes(sealed)).fields["reason"] == "tampered"
    sealed[10:14] = (CHUNK + 1).to_bytes(4, "big")  # plausible: the key check catches it
    assert unseal_error(tmp_path, bytes(sealed)).fields["reason"] == "wrong_key"


def test_truncated_at_a_chunk_boundary(tmp_path: Path) -> None:
    sealed = sealed_file(tmp_path, os.urandom(3 * CHUNK + 10)).read_bytes()
    error = unseal_error(tmp_path, sealed[: HEADER_BYTES + 2 * BLOCK])
    assert error.fields["reason"] == "truncated"
    assert error.message.endswith("truncated: it ends after chunk 1")


def test_truncated_inside_a_chunk_or_the_header(tmp_path: Path) -> None:
    sealed = sealed_file(tmp_path, os.urandom(3 * CHUNK)).read_bytes()
    cut = unseal_error(tmp_path, sealed[: HEADER_BYTES + BLOCK + 30])
    assert cut.fields["reason"] == "tampered" and "cut short" in cut.message
    assert unseal_error(tmp_path, sealed[: HEADER_BYTES + 5]).fields["reason"] == "truncated"
    assert unseal_error(tmp_path, sealed[:HEADER_BYTES]).fields["reason"] == "truncated"
    assert unseal_error(tmp_path, sealed[:40]).fields["reason"] == "truncated"
    assert unseal_error(tmp_path, b"").fields["reason"] == "not_sealed"


def test_truncated_to_nothing_but_the_last_chunk_is_caught(tmp_path: Path) -> None:
    """Dropping whole chunks from the front moves the last one: its counter no longer fits."""
    sealed = sealed_file(tmp_path, os.urandom(3 * CHUNK)).read_bytes()
    error = unseal_error(tmp_path, sealed[:HEADER_BYTES] + sealed[HEADER_BYTES + BLOCK :])
    assert error.fields["reason"] == "tampered"


def test_reordered_chunks(tmp_path: Path) -> None:
    sealed = sealed_file(tmp_path, os.urandom(4 * CHUNK)).read_bytes()
    head, body = sealed[:HEADER_BYTES], sealed[HEADER_BYTES:]
    blocks = [body[i : i + BLOCK] for i in range(0, len(body), BLOCK)]
    blocks[0], blocks[1] = blocks[1], blocks[0]
    error = unseal_error(tmp_path, head + b"".join(blocks))
    assert error.fields["reason"] == "tampered" and "chunk 0" in error.message


def test_chunk_from_another_file_with_the_same_key(tmp_path: Path) -> None:
    one = sealed_file(tmp_path, os.urandom(3 * CHUNK)).read_bytes()
    other = sealed_file(tmp_path, os.urandom(3 * CHUNK)).read_bytes()
    mixed = one[: HEADER_BYTES + BLOCK] + other[HEADER_BYTES + BLOCK : HEADER_BYTES + 2 * BLOCK]
    mixed += one[HEADER_BYTES + 2 * BLOCK :]
    error = unseal_error(tmp_path, mixed)
    assert error.fields["reason"] == "tampered" and "chunk 1" in error.message


def test_data_appended_after_the_last_chunk(tmp_path: Path) -> None:
    sealed = sealed_file(tmp_path, os.urandom(2 * CHUNK)).read_bytes()
    last = sealed[-BLOCK:]
    error = unseal_error(tmp_path, sealed + last)  # a copy of the last chunk, appended
    assert error.fields["reason"] == "tampered"
    assert "appended after its last chunk (1)" in error.message
    assert unseal_error(tmp_path, sealed + b"\x00" * 7).fields["reason"] == "tampered"


def test_not_sealed_and_other_versions(tmp_path: Path) -> None:
    error = unseal_error(tmp_path, b"REDIS0010" + b"\x00" * 200)
    assert error.fields["reason"] == "not_sealed"
    assert error.message.endswith("not a sealed file (no SHIPSEAL header)")
    sealed = bytearray(sealed_file(tmp_path, b"data").read_bytes())
    sealed[8] = 2
    error = unseal_error(tmp_path, bytes(sealed))
    assert error.fields["reason"] == "unsupported_version"
    assert "format version 2; this Shipyard reads version 1" in error.message


def test_failed_unseal_keeps_the_previous_file(tmp_path: Path) -> None:
    sealed = bytearray(sealed_file(tmp_path, os.urandom(3 * CHUNK)).read_bytes())
    sealed[-1] ^= 0x01  # the last chunk: everything before it was already written out
    broken = tmp_path / "broken"
    broken.write_bytes(bytes(sealed))
    out = tmp_path / "restored"
    out.write_bytes(b"previous")
    with pytest.raises(SealError):
        unseal(broken, out, KEY)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "plain", "restored", "sealed"]


def test_keys_are_32_bytes(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    for bad in (b"short", bytes(31), bytes(33), "k" * 32):
        with pytest.raises(ValueError, match="a sealing key is 32 bytes"):
            seal(tmp_path / "plain", tmp_path / "sealed", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        seal(tmp_path / "plain", tmp_path / "sealed", KEY, chunk_size=0)
    assert not (tmp_path / "sealed").exists()


def test_io_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SealError, match=r"could not seal .*missing") as caught:
        seal(tmp_path / "missing", tmp_path / "sealed", KEY)
    assert caught.value.fields["reason"] == "io"
    with pytest.raises(SealError, match="could not unseal"):
        unseal(tmp_path / "missing", tmp_path / "out", KEY)
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_constant(tmp_path: Path) -> None:
    """64 MiB through seal and unseal with Python allocations peaking at a few chunks."""
    src = tmp_path / "big"
    with open(src, "wb") as out:
        for _ in range(64):
            out.write(os.urandom(1024 * 1024))
    tracemalloc.start()
    try:
        seal(src, tmp_path / "big.sealed", KEY)
        unseal(tmp_path / "big.sealed", tmp_path / "big.out", KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * CHUNK_SIZE, f"peak {peak} bytes"
    assert (tmp_path / "big.out").stat().st_size == src.stat().st_size
