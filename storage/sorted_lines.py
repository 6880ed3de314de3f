"""Rewrite a JSON Lines file sorted by key, changing a few lines, at the cost of the few.

An aggregate keeps its dataset sorted by key so that an incremental run can
find each changed key by binary search (a handful of reads per key) and copy
everything between them in large blocks, never parsing the lines it keeps.
Adding 100 records to a 100,000-record dataset then costs a block copy, not a
rebuild. The new file is published atomically like every other data file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from storage.errors import StorageError
from storage.records import JsonLinesWriter

_BLOCK = 1 << 20


class SortedLinesWriter(JsonLinesWriter):
    """A JSON Lines writer that can also copy ranges of the previous version of its file as they are."""

    def write(self, data: bytes, lines: int) -> None:
        self._write(data, lines)

    def copy_range(self, src: BinaryIO, start: int, end: int) -> None:
        """Old bytes [start, end) unchanged (their line count is added by the caller)."""
        src.seek(start)
        left = end - start
        while left > 0:
            block = src.read(min(_BLOCK, left))
            if not block:
                raise StorageError(f"{self.target}: the stored dataset changed while it was read; run again")
            self._write(block, 0)
            left -= len(block)


def _line_at(fh: BinaryIO, offset: int, size: int) -> tuple[int, bytes]:
    """The first complete line starting at or after `offset`: (its start, its bytes without newline)."""
    if offset > 0:
        fh.seek(offset - 1)
        if fh.read(1) != b"\n":
            fh.readline()  # the rest of the line `offset` falls in
    else:
        fh.seek(0)
    start = fh.tell()
    if start >= size:
        return size, b""
    return start, fh.readline().rstrip(b"\n")


def seek_key(fh: BinaryIO, key: bytes, lo: int, size: int, key_of: Callable[[bytes], bytes]) -> tuple[int, bytes]:
    """Offset of the first line at or after `lo` whose key is >= `key`, and that line (b"" at the end).

    Binary search over byte offsets: "the first line starting at or after this
    offset has a key >= `key`" holds from some offset on, and that offset is found
    in about log2(size) reads of one line each.
    """
    a, b = lo, size
    while a < b:
        mid = (a + b) // 2
        start, line = _line_at(fh, mid, size)
        if not line or key_of(line) >= key:
            b = mid
        else:
            a = start + 1  # every offset up to this line's start leads to this same line
    return _line_at(fh, a, size)


def merge_changes(*, old: Path | None, target: Path, changes: Iterable[tuple[bytes, Callable[[bytes | None], bytes]]],
                  key_of: Callable[[bytes], bytes], old_count: int) -> tuple[int, str]:
    """Write `target` = `old` with each (key, make_line) applied, keys ascending; return (lines, sha256).

    `make_line(old_line_or_None)` returns the new line for that key. Lines
    between changed keys are copied as bytes.
    """
    writer = SortedLinesWriter(target)
    try:
        if old is None or not old.exists():
            for _, make in changes:
                writer.write(make(None) + b"\n", 1)
        else:
            with open(old, "rb") as fh:
                size = fh.seek(0, 2)
                cursor, kept = 0, old_count
                for key, make in changes:
                    at, line = seek_key(fh, key, cursor, size, key_of)
                    writer.copy_range(fh, cursor, at)
                    if line and key_of(line) == key:
                        writer.write(make(line) + b"\n", 0)
                        cursor = at + len(line) + 1
                    else:
                        writer.write(make(None) + b"\n", 1)
                        cursor = at
                writer.copy_range(fh, cursor, size)
                writer.count += kept
        writer.publish()
    except BaseException:
        writer.abort()
        raise
    return writer.count, writer.sha256


def write_sorted(*, target: Path, lines: Iterable[bytes]) -> tuple[int, str]:
    """A whole new file from lines already in key order; return (lines, sha256)."""
    writer = SortedLinesWriter(target)
    try:
        buffer: list[bytes] = []
        for line in lines:
            buffer.append(line)
            if len(buffer) >= 4096:
                writer.write(b"\n".join(buffer) + b"\n", len(buffer))
                buffer.clear()
        if buffer:
            writer.write(b"\n".join(buffer) + b"\n", len(buffer))
        writer.publish()
    except BaseException:
        writer.abort()
        raise
    return writer.count, writer.sha256
