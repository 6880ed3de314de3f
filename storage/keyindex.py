"""Which records a source already stored: primary key -> content hash, in SQLite.

An API source can hold hundreds of thousands of records; keeping their keys in
a JSON state file would mean rewriting it whole every run. SQLite (standard
library) updates only what changed, inside one transaction that commits after
the data is published, so the index never runs ahead of the data. The same
transaction records the run id, which is how a crash between publishing and
committing is recognised and repaired (see collectors.api).

A row is small: the key as text, the first 8 bytes of the SHA-256 of the
record's stored line as a signed integer (`storage.datasets.line_hash`), and
the number of the run that last wrote it (`runs.id`). Files written by earlier
versions (32 hex characters of the hash and the run id as text in every row)
are converted in place the first time they are opened, so an upgrade keeps
every record known.

A load into an empty index (a first run) takes a faster way: each batch's
keys and hashes are appended to a temp table as one JSON object, and the index
is built from them in key order once, at the end (`bulk_*`), instead of
looking up every key and inserting it at a random place of the B-tree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from storage.errors import StorageError

NEW, UPDATED, UNCHANGED, REPEATED = "new", "updated", "unchanged", "repeated"

CACHE_KIB, BULK_CACHE_KIB = -16384, -4096  # PRAGMA cache_size: negative = KiB
SCHEMA_VERSION = 2  # PRAGMA user_version; 0 is a new file or the first format (text hashes and run ids)

_SCHEMA = """
    CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, committed_at TEXT);
    CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, hash INTEGER NOT NULL, run INTEGER) WITHOUT ROWID;
"""


def _hash_from_hex(text: object) -> int:
    """A first-format hash (32 hex characters of the SHA-256) as the integer the current format stores."""
    try:
        return int.from_bytes(bytes.fromhex(str(text)[:16]), "big", signed=True)
    except ValueError:
        return 0  # unreadable: the record is reported updated once, then stored right


class KeyIndex:
    def __init__(self, path: Path | None) -> None:
        """`path` None: a throw-away index in memory (a partition run that replaces its file whole)."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path if path is not None else ":memory:", isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(f"PRAGMA cache_size={CACHE_KIB}")  # 16 MiB of index pages: big loads touch the disk less
            if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path}: cannot open the key index ({exc}); move it aside to rebuild it "
                               "(the next run then treats every record as new)") from None
        self.path = path
        self.run_id: str | None = None
        self._run: int | None = None  # runs.id of run_id, once a row needs it
        self._staged = False  # this transaction has staged lines (merge and replace runs)
        self.bulk = False

    def _upgrade(self) -> None:
        """Create the tables, or convert a first-format file in place (once, in one transaction)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"format {version} is newer than this version of abi reads "
                                            f"({SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:  # another process may have converted it meanwhile
                columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
                if "run_id" in columns:
                    db.create_function("abi_hash_from_hex", 1, _hash_from_hex, deterministic=True)
                    db.execute("ALTER TABLE records RENAME TO records_v1")
                    db.execute("ALTER TABLE runs RENAME TO runs_v1")
                    self._create_tables()
                    db.execute("INSERT INTO runs (run_id, committed_at) "
                               "SELECT run_id, committed_at FROM runs_v1 ORDER BY rowid")
                    db.execute("INSERT INTO records (key, hash, run) "
                               "SELECT r.key, abi_hash_from_hex(r.hash), runs.id FROM records_v1 AS r "
                               "LEFT JOIN runs ON runs.run_id = r.run_id ORDER BY r.key")
                    db.execute("DROP TABLE records_v1")
                    db.execute("DROP TABLE runs_v1")
                else:
                    self._create_tables()
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _create_tables(self) -> None:
        for statement in filter(str.strip, _SCHEMA.split(";")):
            self.db.execute(statement)

    def begin(self, run_id: str) -> None:
        self.run_id, self._run, self.bulk, self._staged = run_id, None, False, False
        self.db.execute("BEGIN IMMEDIATE")

    @property
    def run(self) -> int:
        """The number of this run in `runs`, which its rows carry (its row is written in the transaction)."""
        if self._run is None:
            self.db.execute("INSERT INTO runs (run_id) VALUES (?) ON CONFLICT (run_id) DO NOTHING", (self.run_id,))
            self._run = self.db.execute("SELECT id FROM runs WHERE run_id = ?", (self.run_id,)).fetchone()[0]
        return self._run

    def classify_many(self, keys: list[str], hashes: list[int]) -> list[str]:
        """new / updated / unchanged / repeated (twice in this run) for a page of keys and their hashes.

        The new hashes are staged in the open transaction (visible only after
        commit); one query and one batch write per page.
        """
        known: dict[str, tuple[int, int | None]] = {}
        distinct = list(set(keys))
        for i in range(0, len(distinct), 900):
            chunk = distinct[i:i + 900]
            marks = ",".join("?" * len(chunk))
            for key, digest, run in self.db.execute(
                    f"SELECT key, hash, run FROM records WHERE key IN ({marks})", chunk):
                known[key] = (digest, run)
        this_run = self.run
        verdicts, inserts, updates = [], [], []
        for key, digest in zip(keys, hashes, strict=True):
            row = known.get(key)
            if row is None:
                verdict = NEW
                inserts.append((key, digest, this_run))
            elif row[1] == this_run:
                verdict = REPEATED if row[0] == digest else UPDATED
                if verdict == UPDATED:
                    updates.append((digest, this_run, key))
            else:
                verdict = UNCHANGED if row[0] == digest else UPDATED
                updates.append((digest, this_run, key))
            known[key] = (digest, this_run)
            verdicts.append(verdict)
        self.db.executemany("INSERT OR REPLACE INTO records (key, hash, run) VALUES (?, ?, ?)", inserts)
        self.db.executemany("UPDATE records SET hash = ?, run = ? WHERE key = ?", updates)
        return verdicts

    # A load into an empty index: every key is new unless it comes twice in this run. A key twice in one
    # batch is seen when the batch is staged (the caller then ends the bulk load and goes on the ordinary
    # way); twice in two batches, when the index is built (the caller then classifies the staged pairs).

    _PROBE = ('{"a\\"b\\\\c\\u00e9\\t\u00e9":1}', 'a"b\\c\u00e9\t\u00e9')  # (JSON object, its one key)

    def bulk_start(self) -> bool:
        """Inside the run's transaction: stage pairs instead of classifying them, if the index is empty."""
        if self.db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is not None:
            return False
        try:  # json_each gives object keys unescaped (an SQLite without JSON functions: the ordinary way)
            if self.db.execute("SELECT key FROM json_each(?)", (self._PROBE[0],)).fetchone()[0] != self._PROBE[1]:
                return False
        except sqlite3.OperationalError:
            return False
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS pending (batch TEXT NOT NULL)")
        self.db.execute("DELETE FROM pending")
        self.bulk = True
        return True

    def bulk_add(self, keys: list[str], hashes: list[int]) -> bool:
        """Stage a batch as one JSON object {key: hash}, one statement instead of one per record.

        False, with nothing staged, when a key comes twice in the batch or holds a NUL character (which
        SQLite's JSON functions cut short): the caller ends the bulk load first.
        """
        import orjson

        pairs = dict(zip(keys, hashes, strict=True))
        if len(pairs) != len(keys):
            return False
        batch = orjson.dumps(pairs).decode()
        if "\\u0000" in batch:
            return False
        self.db.execute("INSERT INTO pending (batch) VALUES (?)", (batch,))
        return True

    def bulk_finish(self) -> bool:
        """Build the index from the staged batches, in key order. False if a key came twice (nothing changed)."""
        self.bulk = False
        run = self.run
        # an in-order build needs few pages at once; the sorter's memory follows the cache size
        self.db.execute(f"PRAGMA cache_size={BULK_CACHE_KIB}")
        try:
            self.db.execute("INSERT INTO records (key, hash, run) SELECT j.key, j.value, ? "
                            "FROM pending AS p, json_each(p.batch) AS j ORDER BY j.key", (run,))
        except sqlite3.IntegrityError:  # the statement is undone, the transaction stays open
            return False
        finally:
            self.db.execute(f"PRAGMA cache_size={CACHE_KIB}")
        self.db.execute("DELETE FROM pending")
        return True

    def bulk_pairs(self) -> Iterator[tuple[list[str], list[int]]]:
        """The staged keys and hashes in arrival order, a batch at a time, then forgotten."""
        import json

        last = 0
        while row := self.db.execute("SELECT rowid, batch FROM pending WHERE rowid > ? ORDER BY rowid LIMIT 1",
                                     (last,)).fetchone():
            last, pairs = row[0], json.loads(row[1])
            yield list(pairs), list(pairs.values())
        self.db.execute("DELETE FROM pending")

    def peek(self, key: str, digest: int) -> str:
        """Classify without staging anything (dry runs)."""
        row = self.db.execute("SELECT hash FROM records WHERE key = ?", (key,)).fetchone()
        return NEW if row is None else (UNCHANGED if row[0] == digest else UPDATED)

    def stage_line(self, key: str, line: str) -> None:
        if not self._staged:  # merge and replace runs only: an append run never creates the temp table
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS staged (key TEXT PRIMARY KEY, line TEXT NOT NULL)")
            self.db.execute("DELETE FROM staged")
            self._staged = True
        self.db.execute("INSERT OR REPLACE INTO staged (key, line) VALUES (?, ?)", (key, line))

    def take_staged(self, key: str) -> str | None:
        if not self._staged:
            return None
        row = self.db.execute("SELECT line FROM staged WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.db.execute("DELETE FROM staged WHERE key = ?", (key,))
        return row[0] if row else None

    def remaining_staged(self):
        if not self._staged:
            return iter(())
        return (row[0] for row in self.db.execute("SELECT line FROM staged ORDER BY rowid"))

    def drop_unseen(self) -> int:
        """Forget keys not seen in this run (a `replace` dataset no longer holds them)."""
        return self.db.execute("DELETE FROM records WHERE run IS NOT ?", (self.run,)).rowcount

    def upsert(self, key: str, digest: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO records (key, hash, run) VALUES (?, ?, ?)",
                        (key, digest, self.run))

    def applied(self, run_id: str) -> bool:
        """Did the transaction of `run_id` commit? (Its runs row is written inside it.)"""
        return self.db.execute("SELECT 1 FROM runs WHERE run_id = ? AND committed_at IS NOT NULL",
                               (run_id,)).fetchone() is not None

    def commit(self) -> None:
        if self._run is None:  # no row written: the run is recorded all the same (see `applied`)
            self.db.execute("INSERT INTO runs (run_id, committed_at) VALUES (?, CURRENT_TIMESTAMP) "
                            "ON CONFLICT (run_id) DO UPDATE SET committed_at = excluded.committed_at", (self.run_id,))
        else:
            self.db.execute("UPDATE runs SET committed_at = CURRENT_TIMESTAMP WHERE id = ?", (self._run,))
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        self.bulk = False
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM records").fetchone()[0]

    def close(self) -> None:
        self.rollback()
        self.db.close()
