"""Atomic, hashed shard writing: what is on disk is what was written, in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

from imagenet_prep import fsutil
from imagenet_prep.fsutil import HashingWriter


def _write(path: Path, parts: list[bytes], limit: int) -> HashingWriter:
    with open(path, "wb", buffering=0) as f:
        out = HashingWriter(f, limit=limit)
        for part in parts:
            out.write(part)
        out.flush()
    return out


@pytest.mark.parametrize("limit", [1, 100, 1 << 20])
def test_gathered_writes_land_in_order_with_their_hash(tmp_path: Path, limit: int) -> None:
    parts = [bytes([i % 251]) * (i * 37 % 500) for i in range(3000)]
    parts.append(bytearray(b"a mutable buffer is copied"))  # type: ignore[arg-type]
    out = _write(tmp_path / "f", parts, limit)
    data = (tmp_path / "f").read_bytes()
    assert data == b"".join(parts)
    assert out.nbytes == len(data)
    assert out.hexdigest() == xxhash.xxh3_128_hexdigest(data)


def test_more_buffers_than_iov_max_and_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev takes at most IOV_MAX buffers and may write less than it was given."""
    real = os.writev
    calls: list[int] = []

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        calls.append(len(buffers))
        assert len(buffers) <= 7
        # Write all but the last 3 bytes of what was offered (at least 1 byte).
        total = sum(len(b) for b in buffers)
        joined = b"".join(buffers)[: max(1, total - 3)]
        return real(fd, [joined])

    monkeypatch.setattr(fsutil, "_IOV_MAX", 7)
    monkeypatch.setattr(fsutil.os, "writev", short_writev)
    parts = [f"part {i};".encode() for i in range(50)]
    _write(tmp_path / "f", parts, limit=1 << 20)
    assert (tmp_path / "f").read_bytes() == b"".join(parts)
    assert len(calls) > 50 // 7
