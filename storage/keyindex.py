"""Which records a source already stored: primary key -> content hash, in SQLite.

An API source can hold hundreds of thousands of records; keeping their keys in
a JSON state file would mean rewriting it whole every run. SQLite (standard
library) updates only what changed, inside one transaction that commits after
the data is published, so the index never runs ahead of the data. The same
transaction records the run id, which is how a crash between publishing and
committing is recognised and repaired (see collectors.api).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage.errors import StorageError

NEW, UPDATED, UNCHANGED, REPEATED = "new", "updated", "unchanged", "repeated"


class KeyIndex:
    def __init__(self, path: Path | None) -> None:
        """`path` None: a throw-away index in memory (a partition run that replaces its file whole)."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path if path is not None else ":memory:", isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA cache_size=-16384")  # 16 MiB of index pages: big loads touch the disk less
            self.db.executescript("""
                CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, hash TEXT NOT NULL, run_id TEXT)
                    WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, committed_at TEXT DEFAULT CURRENT_TIMESTAMP);
            """)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path}: cannot open the key index ({exc}); move it aside to rebuild it "
                               "(the next run then treats every record as new)") from None
        self.path = path
        self.run_id: str | None = None

    def begin(self, run_id: str) -> None:
        self.run_id = run_id
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS staged (key TEXT PRIMARY KEY, line TEXT NOT NULL)")
        self.db.execute("DELETE FROM staged")

    def classify_many(self, items: list[tuple[str, str]]) -> list[str]:
        """new / updated / unchanged / repeated (twice in this run) for a page of (key, digest) pairs.

        The new hashes are staged in the open transaction (visible only after
        commit); one query and one batch write per page.
        """
        known: dict[str, tuple[str, str | None]] = {}
        keys = list({k for k, _ in items})
        for i in range(0, len(keys), 900):
            chunk = keys[i:i + 900]
            marks = ",".join("?" * len(chunk))
            for key, digest, run_id in self.db.execute(
                    f"SELECT key, hash, run_id FROM records WHERE key IN ({marks})", chunk):
                known[key] = (digest, run_id)
        verdicts, inserts, updates = [], [], []
        for key, digest in items:
            row = known.get(key)
            if row is None:
                verdict = NEW
                inserts.append((key, digest, self.run_id))
            elif row[1] == self.run_id:
                verdict = REPEATED if row[0] == digest else UPDATED
                if verdict == UPDATED:
                    updates.append((digest, self.run_id, key))
            else:
                verdict = UNCHANGED if row[0] == digest else UPDATED
                updates.append((digest, self.run_id, key))
            known[key] = (digest, self.run_id)
            verdicts.append(verdict)
        self.db.executemany("INSERT OR REPLACE INTO records (key, hash, run_id) VALUES (?, ?, ?)", inserts)
        self.db.executemany("UPDATE records SET hash = ?, run_id = ? WHERE key = ?", updates)
        return verdicts

    def peek(self, key: str, digest: str) -> str:
        """Classify without staging anything (dry runs)."""
        row = self.db.execute("SELECT hash FROM records WHERE key = ?", (key,)).fetchone()
        return NEW if row is None else (UNCHANGED if row[0] == digest else UPDATED)

    def stage_line(self, key: str, line: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO staged (key, line) VALUES (?, ?)", (key, line))

    def take_staged(self, key: str) -> str | None:
        row = self.db.execute("SELECT line FROM staged WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.db.execute("DELETE FROM staged WHERE key = ?", (key,))
        return row[0] if row else None

    def remaining_staged(self):
        return (row[0] for row in self.db.execute("SELECT line FROM staged ORDER BY rowid"))

    def drop_unseen(self) -> int:
        """Forget keys not seen in this run (a `replace` dataset no longer holds them)."""
        return self.db.execute("DELETE FROM records WHERE run_id IS NOT ? ", (self.run_id,)).rowcount

    def upsert(self, key: str, digest: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO records (key, hash, run_id) VALUES (?, ?, ?)",
                        (key, digest, self.run_id))

    def applied(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def commit(self) -> None:
        self.db.execute("INSERT OR IGNORE INTO runs (run_id) VALUES (?)", (self.run_id,))
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM records").fetchone()[0]

    def close(self) -> None:
        self.rollback()
        self.db.close()
