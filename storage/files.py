"""Copying files into the datastore in batches, and moving files out of a watched folder.

A batch of copies is staged first (hidden temp files, hashed on the way), so
the caller can look at the source again and drop a copy of a file that changed
meanwhile; then everything staged is flushed to disk together and renamed into
place. Each copy is complete or absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from storage.atomic import fsync_dir, storage_error, sync_batch, tmp_path_for

CHUNK = 1024 * 1024


@dataclass
class StagedCopy:
    source: Path
    target: Path
    tmp: Path
    size: int
    sha256: str


def stage_copy(source: Path, target: Path) -> StagedCopy:
    """Copy `source` to a temp file beside `target`, hashing it; nothing is visible yet."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(target)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.filename and Path(exc.filename) == source:
            raise
        raise storage_error(exc, target) from exc
    return StagedCopy(source=source, target=target, tmp=tmp, size=size, sha256=digest.hexdigest())


def discard(staged: StagedCopy) -> None:
    with contextlib.suppress(OSError):
        staged.tmp.unlink()


def publish_copies(staged: list[StagedCopy]) -> None:
    """Flush every staged copy to disk, then rename them into place (each complete or absent)."""
    if not staged:
        return
    try:
        sync_batch([s.tmp for s in staged])
        for item in staged:
            os.replace(item.tmp, item.target)
    except OSError as exc:
        for item in staged:
            discard(item)
        raise storage_error(exc, staged[0].target) from exc
    for folder in {s.target.parent for s in staged}:
        fsync_dir(folder)


def move_file(source: Path, folder: Path) -> Path:
    """Move `source` into `folder` (across filesystems too), never overwriting: a clash gets a suffix."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{source.stem}.{n}{source.suffix}"
    shutil.move(str(source), str(target))
    return target
