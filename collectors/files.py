"""The folder job: process each file dropped in a folder exactly once.

A file is known by its path plus size, modification time and content hash: a
file seen before with the same size and time is skipped without reading it; a
rewritten one is processed again. A file still being written (younger than
`settle_seconds`, or changing between two looks) waits for the next run.
Files are copied into the module's data folder with a sidecar each, or parsed
(CSV, JSON, JSON Lines) into records stored like the other collectors'. A file
that does not parse goes to a quarantine folder with the error in its sidecar,
and the others go on. The state is saved after the data; `on_success` (delete
or move) happens only after that, so a crash never loses a file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.atomic import dumps, write_json, write_many
from storage.config import Config, SourceConfig
from storage.datasets import DatasetSpec, RecordError, RecordSink, batched, record_key
from storage.errors import AbiError
from storage.files import StagedCopy, discard, move_file, publish_copies, stage_copy
from storage.jobs import run_job
from storage.paths import Datastore
from storage.records import sidecar_path
from storage.runs import Run, iso, utcnow
from storage.state import load_state, save_state

Progress = Callable[[str, dict[str, Any]], None]

log = logging.getLogger("abi.collectors.files")


class FilesError(AbiError):
    """The watched folder cannot be read."""


class ParseError(ValueError):
    """A file is not valid for its `process` format."""


def collect_files(*, config: Config, source: str | None = None, module: str | None = None, wait: bool = False,
                  command: list[str] | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the folder job for each selected source; return one run record per source."""
    sources = config.select_kind("files", source=source, module=module)
    records = []
    for src in sources:
        def work(run: Run, src: SourceConfig = src) -> None:
            _collect_source(config.datastore, src, run, progress=progress)

        records.append(run_job(ds=config.datastore, module=src.module, source=src.name, kind="files",
                               command=command or ["abi", "collect", "files"], work=work, wait=wait,
                               interval_s=src.interval_s))
    return records


def _candidates(src: SourceConfig) -> list[Path]:
    fc = src.files
    if not fc.watch.is_dir():
        raise FilesError(f"the watched folder {fc.watch} does not exist: create it or fix 'path'")
    found = fc.watch.rglob(fc.pattern) if fc.recursive else fc.watch.glob(fc.pattern)
    skip = fc.move_to.resolve() if fc.move_to else None
    out: list[tuple[int, Path]] = []
    for path in found:
        if any(part.startswith(".") for part in path.relative_to(fc.watch).parts):
            continue  # hidden files: editors' and uploaders' temp files
        if path.is_symlink() or not path.is_file() or path.name.endswith(".meta.json"):
            continue  # links may point anywhere; *.meta.json is the name of our own sidecars
        if skip is not None and skip in path.resolve().parents:
            continue
        look = _look(path)
        if look is not None:  # gone since the listing: nothing to do
            out.append((look[1], path))
    return [path for _, path in sorted(out)]  # oldest first: the last dropped wins a merge


def _target_name(rel: Path) -> Path:
    """The copy's path inside the output folder: the file's own relative path, each part checked."""
    for part in rel.parts:
        if part in ("", ".", "..") or "\x00" in part:
            raise ParseError(f"unsafe file name {str(rel)!r}")
    return rel


def _collect_source(ds: Datastore, src: SourceConfig, run: Run, *, progress: Progress | None) -> None:
    fc = src.files
    state = load_state(ds, src.module, src.name)
    seen: dict[str, dict[str, Any]] = state.setdefault("files", {})
    out_folder = ds.data_dir(src.module, src.name, src.path)
    for key in ("files", "new_files", "changed_files", "unchanged_files", "waiting", "processed", "quarantined"):
        run.counts.setdefault(key, 0)
    now = time.time()
    first_look: dict[Path, tuple[int, int, int, int]] = {}
    pending_actions: list[Path] = []
    for path in _candidates(src):
        run.count("files")
        look = _look(path)
        if look is None:
            continue
        rel = path.relative_to(fc.watch).as_posix()
        prev = seen.get(rel)
        if prev and _same(prev, look, path):
            run.count("unchanged_files")
            if fc.on_success != "keep":
                pending_actions.append(path)  # processed before, but its delete/move did not happen
            continue
        if now - look[1] / 1e9 < fc.settle_seconds:
            run.count("waiting")
            continue
        first_look[path] = look
    todo = [p for p, look in first_look.items() if _look(p) == look]  # a second look: still being written?
    run.count("waiting", len(first_look) - len(todo))

    sink = None
    if fc.process != "copy":
        sink = RecordSink(ds, DatasetSpec(module=src.module, source=src.name, kind="files", folder=out_folder,
                                          write=fc.write, primary_key=fc.primary_key,
                                          provenance={"folder": str(fc.watch)}), run)
    staged: list[StagedCopy] = []
    done: dict[str, dict[str, Any]] = {}
    quarantined: list[tuple[Path, str]] = []
    try:
        if sink is not None:
            sink.open()
        for n, path in enumerate(todo, 1):
            rel = path.relative_to(fc.watch)
            key = rel.as_posix()
            try:
                entry, records = _process(path, rel, out_folder, fc, staged)
            except ParseError as exc:
                quarantined.append((path, str(exc)))
                continue
            except OSError as exc:  # unreadable (permissions) or gone: this file only
                run.warnings.append(f"{key}: cannot read it ({exc.strerror or exc}); it is tried again next run")
                continue
            if entry is None or _look(path) != first_look[path]:  # changed while we read it: next run
                if staged and staged[-1].source == path:
                    discard(staged.pop())
                run.count("waiting")
                continue
            if records:
                for batch in batched(records, 1000):
                    sink.add(list(batch), key)
            run.count("changed_files" if key in seen else "new_files")
            size, mtime_ns, ino, ctime_ns = first_look[path]
            done[key] = {**entry, "size": size, "mtime_ns": mtime_ns, "ino": ino, "ctime_ns": ctime_ns,
                         "run_id": run.run_id, "processed_at": iso(utcnow())}
            log.debug("file %s: %s", key, "records" if records else "copied")
            if progress and n % 100 == 0:
                progress(f"{n} files", {"status": f"{len(done)} processed"})
        publish_copies(staged)
        write_many([(sidecar_path(s.target), _sidecar(src, run, s)) for s in staged])
        run.files += [ds.relative(s.target) for s in staged]
        if sink is not None:
            sink.publish()
            sink.commit()
    except BaseException:
        for item in staged:
            discard(item)
        raise
    finally:
        if sink is not None:
            sink.close()
    for path, error in quarantined:
        _quarantine(ds, src, run, path, error)
    seen.update(done)
    run.count("processed", len(done))
    if sink is None:  # copies: what `abi status` shows as new items
        run.counts["new"] = len(done)
    save_state(ds, src.module, src.name, state)
    if sink is not None:
        sink.finish()
    for path in [fc.watch / key for key in done] + pending_actions:
        _after_success(src, run, path)
    if quarantined:
        run.status = "partial"
        run.reason = f"{len(quarantined)} file(s) quarantined"


def _look(path: Path) -> tuple[int, int, int, int] | None:
    """(size, mtime, inode, ctime): a copy with a preserved mtime (cp -p, rsync -a) still changes inode/ctime."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _same(prev: dict[str, Any], look: tuple[int, int, int, int], path: Path) -> bool:
    """Unchanged since it was processed? Stats first; when only inode or ctime moved, the content decides."""
    size, mtime_ns, ino, ctime_ns = look
    if prev["size"] != size or prev["mtime_ns"] != mtime_ns:
        return False
    if prev.get("ino") == ino and prev.get("ctime_ns") == ctime_ns:
        return True
    try:
        same = _sha256(path) == prev.get("sha256")
    except OSError:
        return False
    if same:  # renamed in place, chmod-ed, or copied back unchanged: remember the new stats
        prev.update(ino=ino, ctime_ns=ctime_ns)
    return same


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _process(path: Path, rel: Path, out_folder: Path, fc: Any,
             staged: list[StagedCopy]) -> tuple[dict[str, Any] | None, list[Any]]:
    """Stage the copy, or parse and check the records (stored by the caller after a last look)."""
    try:
        if fc.process == "copy":
            item = stage_copy(path, out_folder / _target_name(rel))
            staged.append(item)
            return {"sha256": item.sha256, "copy": str(_target_name(rel))}, []
        data = path.read_bytes()
    except FileNotFoundError:
        return None, []
    records = _parse(data, fc.process, rel)
    if fc.primary_key:
        try:
            for record in records:
                record_key(fc.primary_key, record, "", str(rel))
        except RecordError as exc:
            raise ParseError(str(exc)) from None
    return {"sha256": hashlib.sha256(data).hexdigest(), "records": len(records)}, records


def _parse(data: bytes, process: str, rel: Path) -> list[Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{rel}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if process == "csv":
        try:
            rows = list(csv.DictReader(io.StringIO(text, newline=""), strict=True))
        except csv.Error as exc:
            raise ParseError(f"{rel}: not valid CSV: {exc}") from None
        bad = next((i for i, row in enumerate(rows, 2) if None in row or None in row.values()), None)
        if bad is not None:
            raise ParseError(f"{rel}: line {bad} has a different number of fields than the header")
        return rows
    if process == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseError(f"{rel}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        return doc if isinstance(doc, list) else [doc]
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ParseError(f"{rel}: line {n} is not valid JSON: {exc.msg}") from None
    return records


def _sidecar(src: SourceConfig, run: Run, item: StagedCopy) -> bytes:
    return dumps({"run_id": run.run_id, "module": src.module, "source": src.name, "kind": "files",
                  "fetched_at": iso(run.started), "original": str(item.source), "size": item.size,
                  "sha256": item.sha256})


def _quarantine(ds: Datastore, src: SourceConfig, run: Run, path: Path, error: str) -> None:
    folder = ds.module_dir(src.module) / "quarantine" / src.name
    try:
        moved = move_file(path, folder)
    except OSError as exc:
        run.warnings.append(f"{path.name}: {error}; and it could not be moved to quarantine: {exc}")
        return
    write_json(sidecar_path(moved), {"run_id": run.run_id, "source": src.name, "original": str(path),
                                     "error": error, "quarantined_at": iso(utcnow())})
    run.count("quarantined")
    run.warnings.append(f"quarantined: {error}")
    run.items.append({"file": str(path.relative_to(src.files.watch)), "status": "quarantined", "error": error,
                      "moved_to": ds.relative(moved)})


def _after_success(src: SourceConfig, run: Run, path: Path) -> None:
    fc = src.files
    try:
        if fc.on_success == "delete":
            path.unlink(missing_ok=True)
        elif fc.on_success == "move" and path.exists():
            move_file(path, fc.move_to / path.relative_to(fc.watch).parent)
    except OSError as exc:
        run.warnings.append(f"{path.name}: processed, but on_success = {fc.on_success} failed: {exc}")



def pending_files(ds: Datastore, src: SourceConfig, now: float | None = None) -> int:
    """How many files a run would process now (the folder sensor): a listing and stats, no reads."""
    fc = src.files
    seen = (load_state(ds, src.module, src.name, recover=False) or {}).get("files", {})
    now = time.time() if now is None else now
    count = 0
    for path in _candidates(src):
        look = _look(path)
        if look is None:
            continue
        prev = seen.get(path.relative_to(fc.watch).as_posix())
        if prev and _same(dict(prev), look, path):
            continue
        if now - look[1] / 1e9 >= fc.settle_seconds:
            count += 1
    return count
