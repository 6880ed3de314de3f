"""The `kind = "files"` part of the configuration: a folder to watch, and what to do per file.

For this kind `path` is the watched folder (absolute, or relative to the
configuration file); the output goes to `output` inside the module folder
(default raw_data/<source>).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.errors import ConfigError

FILES_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "pattern": ((str,), False),
    "recursive": ((bool,), False),
    "settle_seconds": ((int, float), False),
    "process": ((str,), False),
    "on_success": ((str,), False),
    "output": ((str,), False),
    "primary_key": ((str, list), False),
    "write": ((str,), False),
}
PROCESS = ("copy", "csv", "json", "jsonl")


@dataclass(frozen=True)
class FilesConfig:
    watch: Path
    pattern: str = "*"
    recursive: bool = False
    settle_seconds: float = 2.0
    process: str = "copy"
    on_success: str = "keep"  # keep | delete | move:DIR
    move_to: Path | None = None
    primary_key: tuple[str, ...] = ()
    write: str = "append"


def parse_files(table: dict[str, Any], where: str, config_dir: Path) -> FilesConfig:
    if "path" not in table:
        raise ConfigError(f"{where} missing required key 'path' (the folder to watch)")
    watch = Path(table["path"]).expanduser()
    watch = watch if watch.is_absolute() else config_dir / watch
    pattern = table.get("pattern", "*")
    if not pattern or "/" in pattern or ".." in pattern:
        raise ConfigError(f"{where} key 'pattern' must be a file name glob such as *.csv (use recursive = true "
                          "for subfolders)")
    process = table.get("process", "copy")
    if process not in PROCESS:
        raise ConfigError(f"{where} key 'process' must be one of: {', '.join(PROCESS)} (got {process!r})")
    on_success = table.get("on_success", "keep")
    move_to = None
    if on_success.startswith("move:"):
        target = Path(on_success[5:].strip()).expanduser()
        if not str(target).strip() or str(target) == ".":
            raise ConfigError(f"{where} on_success = \"move:DIR\" needs a folder")
        move_to = target if target.is_absolute() else watch / target
        on_success = "move"
    elif on_success not in ("keep", "delete"):
        raise ConfigError(f"{where} key 'on_success' must be keep, delete or move:DIR (got {on_success!r})")
    settle = table.get("settle_seconds", 2.0)
    if not 0 <= settle <= 86400:
        raise ConfigError(f"{where} key 'settle_seconds' must be between 0 and 86400")
    primary_key = table.get("primary_key", ())
    if isinstance(primary_key, str):
        primary_key = (primary_key,)
    write = table.get("write", "append")
    if write not in ("append", "merge"):
        raise ConfigError(f"{where} key 'write' must be append or merge (got {write!r})")
    if process == "copy" and ("primary_key" in table or "write" in table):
        raise ConfigError(f"{where} keys 'primary_key' and 'write' are for parsed files (process = csv, json or "
                          "jsonl); copied files are mirrored as they are")
    if write == "merge" and not primary_key:
        raise ConfigError(f"{where} write = \"merge\" needs a 'primary_key' to merge on")
    return FilesConfig(watch=watch, pattern=pattern, recursive=table.get("recursive", False),
                       settle_seconds=float(settle), process=process, on_success=on_success, move_to=move_to,
                       primary_key=tuple(primary_key), write=write)
