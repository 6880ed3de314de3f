"""Atomic file publication: temp file in the target folder, fsync, os.replace.

A reader (or a crash) sees either the previous file or the complete new one,
never a partial file. Temp files carry the writer's pid so that a later run can
remove the leftovers of a killed process without touching a live writer's.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from storage.errors import StorageError

_TMP_RE = re.compile(r"^\..+\.(\d+)-\d+\.tmp$")


def tmp_path_for(target: Path) -> Path:
    """`.<name>.<pid>-<thread>.tmp`: hidden, unique per writer, and tells whose it is."""
    return target.with_name(f".{target.name}.{os.getpid()}-{threading.get_native_id()}.tmp")


def storage_error(exc: OSError, target: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full: free space and run again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "permission denied: check the datastore's owner and mode"
    else:
        hint = exc.strerror or str(exc)
    return StorageError(f"cannot write {target}: {hint} (nothing stored was changed)")


def fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(target: Path, data: bytes, *, fsync: bool = True, sync_dir: bool = True) -> Path:
    """Publish `data` at `target` atomically; raise StorageError on failure."""
    tmp = tmp_path_for(target)
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise storage_error(exc, target) from exc
    if sync_dir:
        fsync_dir(target.parent)
    return target


def dumps(obj: Any) -> bytes:
    """The one JSON encoding of the datastore: UTF-8, sorted keys, stable bytes."""
    return (json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2, default=str) + "\n").encode()


def write_json(target: Path, obj: Any, *, fsync: bool = True, sync_dir: bool = True) -> Path:
    return write_bytes(target, dumps(obj), fsync=fsync, sync_dir=sync_dir)


def write_many(items: Iterable[tuple[Path, bytes]]) -> list[Path]:
    """Publish a batch of files: all complete before any rename, each complete or absent.

    A batch of hundreds of small record files would cost one fsync each
    (~0.7 ms apiece here); instead all temp files are written, flushed to disk
    together (one syncfs on Linux for a large batch, else an fsync per file),
    and only then renamed into place, with one fsync per folder at the end.
    """
    batch = list(items)
    folders = {target.parent for target, _ in batch}
    temps: list[tuple[Path, Path]] = []
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for target, data in batch:
            tmp = tmp_path_for(target)
            temps.append((tmp, target))
            with open(tmp, "wb") as fh:
                fh.write(data)
        sync_batch([tmp for tmp, _ in temps])
        while temps:
            tmp, target = temps[0]
            os.replace(tmp, target)
            temps.pop(0)
    except OSError as exc:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise storage_error(exc, temps[0][1] if temps else next(iter(folders))) from exc
    for folder in folders:
        fsync_dir(folder)
    return [target for target, _ in batch]


_SYNCFS_MIN_BATCH = 32


def sync_batch(paths: list[Path]) -> None:
    """Make these (already written) files durable: one syncfs for a large batch, else fsync each."""
    if len(paths) >= _SYNCFS_MIN_BATCH and _syncfs() is not None:
        for folder in {p.parent for p in paths}:
            _sync_filesystem(folder)
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@functools.cache
def _syncfs() -> Any:
    """libc's syncfs(2) where there is one (Linux), else None (then every file is fsynced)."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    except OSError:
        return None


def _sync_filesystem(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _syncfs()(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file written by this package; a missing file gives `default`."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageError(f"{path} is not valid JSON ({exc}); it was changed outside abi: "
                           "restore it from a backup or move it aside") from None


def remove_stale_temp_files(folder: Path) -> int:
    """Remove temp files left by processes that no longer run; return how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        match = _TMP_RE.match(entry.name)
        if not match or pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
