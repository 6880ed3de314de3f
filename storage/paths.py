"""Where things live in the datastore (Code-Data Symmetry).

Module M's data lives under `<root>/core/modules/M/` and its orchestration
metadata under `<root>/core/modules/M/orchestration/`. Every path handed out
here is checked to stay inside the datastore, so no configuration value or
feed content can choose a location outside it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from storage.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def resolve_root(*, config_dir: Path | None, configured: str | None = None) -> Path:
    """ABI_DATASTORE, else the config's `datastore`, else `storage/datastore` beside the config."""
    env = os.environ.get("ABI_DATASTORE")
    base = config_dir or Path.cwd()
    if env:
        return Path(env).expanduser().absolute()
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else (base / path).absolute()
    return (base / "storage" / "datastore").absolute()


def inside(base: Path, relative: str | Path) -> Path:
    """Join `relative` under `base`, refusing anything that would leave `base`."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise ConfigError(f"path {str(relative)!r} must be relative and stay inside {base}")
    return base / rel


@dataclass(frozen=True)
class Datastore:
    root: Path

    def module_dir(self, module: str) -> Path:
        if not NAME_RE.match(module):
            raise ConfigError(f"module name {module!r} must match {NAME_RE.pattern}")
        return self.root / "core" / "modules" / module

    def orchestration(self, module: str) -> Path:
        return self.module_dir(module) / "orchestration"

    def runs_dir(self, module: str) -> Path:
        return self.orchestration(module) / "history" / "runs"

    def summaries_dir(self, module: str) -> Path:
        return self.orchestration(module) / "history" / "sources"

    def state_file(self, module: str, source: str) -> Path:
        return self.orchestration(module) / "state" / f"{source}.json"

    def journal_file(self, module: str, source: str) -> Path:
        return self.orchestration(module) / "state" / f"{source}.journal.json"

    def lock_file(self, module: str, source: str) -> Path:
        return self.orchestration(module) / "locks" / f"{source}.lock"

    def data_dir(self, module: str, source: str, path: str | None) -> Path:
        return inside(self.module_dir(module), path or f"raw_data/{source}")

    def modules(self) -> list[str]:
        base = self.root / "core" / "modules"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and NAME_RE.match(p.name))  # not .trash etc.

    def relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)
