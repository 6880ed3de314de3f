"""The database job: read the rows added or changed since the last run, in batches.

The collector wraps the configured SELECT and adds the watermark condition
itself: rows whose (cursor, primary key) comes after the last stored pair, in
that order, so rows that share a timestamp at the boundary are neither lost nor
read twice. An optional `lookback` re-reads a window before the watermark to
catch rows committed late with an older timestamp; the key index drops the
ones already stored. Rows stream in batches into the same record datasets as
the API collector (JSON Lines + sidecar, append or merge), and the watermark is
saved only after they are published.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from storage.config import Config, SourceConfig
from storage.datasets import DatasetSpec, RecordSink
from storage.db_config import DbConfig
from storage.errors import AbiError, ConfigError, UsageError
from storage.jobs import run_job
from storage.partitions import record_partition
from storage.paths import Datastore
from storage.redact import redact_text, redact_url
from storage.runs import Run
from storage.state import load_state, save_state

Progress = Callable[[str, dict[str, Any]], None]

log = logging.getLogger("abi.collectors.db")


class DbError(AbiError):
    """The database could not be reached or queried; the run failed and stored nothing."""


def collect_db(*, config: Config, source: str | None = None, module: str | None = None,
               full_refresh: bool = False, partition: str | None = None, wait: bool = False,
               command: list[str] | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the database job for each selected source (or one partition of one); one run record per source."""
    sources = config.select_kind("db", source=source, module=module)
    if partition is not None:
        if source is None:
            raise UsageError("--partition needs --source NAME")
        partition_window(sources[0], partition)  # a bad key or a source without partitions: exit 2, no work
    passwords = {src.name: _password(src) for src in sources}  # exit 2 before any work
    records = []
    for src in sources:
        def work(run: Run, src: SourceConfig = src) -> None:
            _collect_source(config.datastore, src, run, password=passwords[src.name], full_refresh=full_refresh,
                            progress=progress, partition=partition)

        secrets = (passwords[src.name],) if passwords[src.name] else ()
        record = run_job(ds=config.datastore, module=src.module, source=src.name, kind="db",
                         command=command or ["abi", "collect", "db"], work=work, wait=wait,
                         interval_s=src.interval_s, secrets=secrets, partition=partition)
        if partition is not None and record["status"] != "skipped":
            record_partition(config.datastore, src.module, src.name, partition, record)
        records.append(record)
    return records


def partition_window(src: SourceConfig, key: str) -> tuple[Any, Any]:
    """The partition's [start, end) as query parameters: datetimes for PostgreSQL, ISO text for SQLite
    (dates for daily and monthly partitions, so that date-only columns compare right)."""
    if src.partitions is None:
        raise UsageError(f"--partition needs a source with partitions = \"daily\" (or hourly, monthly); "
                         f"{src.name} has none")
    if not src.db.cursor and "{partition_start}" not in src.db.query:
        raise UsageError(f"[sources.{src.name}] needs a 'cursor' (or {{partition_start}}/{{partition_end}} in "
                         "its query) to select a partition's rows")
    start, end = src.partitions.window(key)
    if src.db.dialect == "postgresql":
        return start, end
    fmt = "%Y-%m-%dT%H:%M:%SZ" if src.partitions.grain == "hourly" else "%Y-%m-%d"
    return start.strftime(fmt), end.strftime(fmt)


def _password(src: SourceConfig) -> str | None:
    var = src.db.password_env
    if not var:
        return None
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"[sources.{src.name}] needs the environment variable {var} (the database password), "
                          f"which is not set: export {var}=... before running")
    return value


def _collect_source(ds: Datastore, src: SourceConfig, run: Run, *, password: str | None, full_refresh: bool,
                    progress: Progress | None, partition: str | None = None) -> None:
    db = src.db
    spec = DatasetSpec(module=src.module, source=src.name, kind="db",
                       folder=ds.data_dir(src.module, src.name, src.path),
                       write=db.write if partition is None else "replace", partition=partition,
                       primary_key=db.primary_key, provenance={"database": redact_url(db.url)}, sort_keys=False)
    sink = RecordSink(ds, spec, run)
    secrets = (password,) if password else ()
    try:
        state = load_state(ds, src.module, src.name) if partition is None else {}
        sink.open()
        if partition is not None:  # its own window, its own file; the watermark is not touched
            _collect_partition(src, run, sink, password, partition, progress)
            return
        before = None if full_refresh else _restore(state.get("watermark"))
        run.counts.setdefault("batches", 0)
        run.details.update(write=db.write, watermark_before=_dump(before), full_refresh=full_refresh,
                           dialect=db.dialect)
        sql, params = build_query(db, before)
        run.details["lookback"] = str(db.lookback) if db.lookback is not None else None
        last: dict[str, Any] | None = None
        try:
            for batch in _rows(db, sql, params, password, timeout=src.timeout):
                run.count("batches")
                sink.add(batch, f"batch {run.counts['batches']}")  # dates, decimals: see json_default
                last = batch[-1]
                log.info("batch %s: %s rows so far", run.counts["batches"], run.counts["records"])
                if progress:
                    progress(f"batch {run.counts['batches']}", {"status": f"{run.counts['records']} rows"})
        except DbError as exc:
            raise DbError(redact_text(f"{exc}; nothing of this run was stored", secrets)) from None
        published = sink.publish()
        sink.commit()
        after = before
        if db.cursor and last is not None and last[db.cursor] is not None:
            candidate = {"cursor": last[db.cursor], "key": [last[k] for k in db.primary_key]}
            try:
                moved = before is None or full_refresh or _pair(candidate) > _pair(before)
            except TypeError:  # values of another type than last time (a schema change): trust the rows
                moved = True
            if moved:
                after = candidate
        if db.cursor:
            state["watermark"] = _dump(after)
        state["last_run_id"] = run.run_id
        save_state(ds, src.module, src.name, state)
        sink.finish()
        run.details.update(watermark_after=_dump(after), published=published)
    finally:
        sink.close()


def _collect_partition(src: SourceConfig, run: Run, sink: RecordSink, password: str | None, key: str,
                       progress: Progress | None) -> None:
    db = src.db
    sql, params = build_query(db, None, window=partition_window(src, key))
    run.counts.setdefault("batches", 0)
    try:
        for batch in _rows(db, sql, params, password, timeout=src.timeout):
            run.count("batches")
            sink.add(batch, f"batch {run.counts['batches']}")
            if progress:
                progress(f"{key} batch {run.counts['batches']}", {"status": f"{run.counts['records']} rows"})
    except DbError as exc:
        raise DbError(redact_text(f"{exc}; partition {key} was left as it was",
                                  (password,) if password else ())) from None
    run.details["published"] = sink.publish()
    sink.commit()


def _pair(mark: dict[str, Any]) -> tuple[Any, ...]:
    return (mark["cursor"], *mark["key"])


def build_query(db: DbConfig, mark: dict[str, Any] | None, *, strict: bool = False,
                window: tuple[Any, Any] | None = None) -> tuple[str, list[Any]]:
    """The configured SELECT wrapped with the watermark condition and the (cursor, key) order.

    `strict` ignores the lookback (the rows sensor asks only "anything after the watermark?").
    Column names are quoted (reserved words, mixed case); the query sits on lines of its own so
    that a trailing `-- comment` in it cannot swallow the wrapper.
    """
    ph = "?" if db.dialect == "sqlite" else "%s"
    inner = db.query if db.dialect == "sqlite" else db.query.replace("%", "%%")
    params: list[Any] = []
    if window is not None and "{partition_start}" in inner:  # the query places the window itself
        for name in re.findall(r"\{(partition_start|partition_end)\}", inner):
            params.append(window[0] if name == "partition_start" else window[1])
        inner = re.sub(r"\{partition_(start|end)\}", ph, inner)
        window = None
    sql = f"SELECT * FROM (\n{inner}\n) AS abi_src"
    q = _quote
    if window is not None:  # a partition: [start, end) on the cursor, in (cursor, key) order
        cursor = q(db.cursor)
        sql += f" WHERE {cursor} >= {ph} AND {cursor} < {ph}"
        params += list(window)
        sql += " ORDER BY " + ", ".join([cursor, *map(q, db.primary_key)])
        return sql, params
    if db.cursor:
        cursor = q(db.cursor)
        where = [f"{cursor} IS NOT NULL"]  # a NULL would become a watermark nothing ever comes after
        start = mark["cursor"] if mark else db.initial
        if mark and db.lookback is not None and not strict:
            where.append(f"{cursor} >= {ph}")
            params.append(_minus(mark["cursor"], db.lookback))
        elif mark:
            # `cursor >= x AND (...)` lets the engine seek in an index on (cursor, key) instead of scanning it
            columns = [cursor, *map(q, db.primary_key)]
            values = [mark["cursor"], *mark["key"]]
            where.append(f"{cursor} >= {ph} AND " + _after(columns, ph))
            params += [mark["cursor"], *_after_params(values)]
        elif start is not None:
            where.append(f"{cursor} >= {ph}")
            params.append(start)
        sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join([cursor, *map(q, db.primary_key)])
    elif db.primary_key:
        sql += " ORDER BY " + ", ".join(map(q, db.primary_key))
    return sql, params


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _after(columns: list[str], ph: str) -> str:
    """(a, b, c) > (x, y, z) spelled out, which every SQL engine plans with its indexes."""
    head, *rest = columns
    if not rest:
        return f"{head} > {ph}"
    return f"({head} > {ph} OR ({head} = {ph} AND {_after(rest, ph)}))"


def _after_params(values: list[Any]) -> list[Any]:
    head, *rest = values
    return [head] if not rest else [head, head, *_after_params(rest)]


def _minus(value: Any, lookback: timedelta | int) -> Any:
    """The watermark moved back by the lookback, in the watermark's own type and text format."""
    if isinstance(lookback, int) != isinstance(value, (int, float)) or isinstance(value, bool):
        raise DbError(f"lookback {lookback!r} does not fit a cursor value like {value!r}: use a number of "
                      "units for a numeric cursor, a time such as 10m for a timestamp")
    if isinstance(lookback, int) or isinstance(value, (datetime, date)):
        return value - lookback
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DbError(f"lookback needs a timestamp cursor, got {text!r}") from None
    moved = parsed - lookback
    if len(text) == 10:  # a date: stay a date, or text comparison would put it after the boundary day
        return moved.date().isoformat()
    out = moved.isoformat(sep="T" if "T" in text else " ")
    if text.endswith("Z"):
        out = out.replace("+00:00", "Z")
    return out


def _rows(db: DbConfig, sql: str, params: list[Any], password: str | None, *,
          timeout: float) -> Iterator[list[dict[str, Any]]]:
    if db.dialect == "sqlite":
        yield from _sqlite_rows(db, sql, params, timeout)
    else:
        yield from _postgres_rows(db, sql, params, password, timeout)


def _sqlite_rows(db: DbConfig, sql: str, params: list[Any], timeout: float) -> Iterator[list[dict[str, Any]]]:
    import sqlite3

    if not db.sqlite_path.is_file():
        raise DbError(f"no SQLite database at {db.sqlite_path}: check 'url'")
    try:
        conn = sqlite3.connect(f"file:{db.sqlite_path}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise DbError(f"cannot open {db.sqlite_path}: {exc}") from None
    try:
        cur = conn.execute(sql, params)
        columns = [d[0] for d in cur.description]
        while batch := cur.fetchmany(db.batch_size):
            yield [dict(zip(columns, row, strict=True)) for row in batch]
    except sqlite3.Error as exc:
        raise DbError(f"query failed: {exc} (check 'query', 'cursor' and 'primary_key' against the table)") from None
    finally:
        conn.close()


def _postgres_rows(db: DbConfig, sql: str, params: list[Any], password: str | None,
                   timeout: float) -> Iterator[list[dict[str, Any]]]:
    import psycopg

    try:
        conn = psycopg.connect(db.url, password=password, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        raise DbError(f"cannot connect to {redact_url(db.url)}: {_first_line(exc)}") from None
    try:
        conn.read_only = True
        with conn.cursor(name="abi_collect") as cur:  # server side: rows arrive a batch at a time
            cur.itersize = db.batch_size
            cur.execute(sql, params)
            columns = [d.name for d in cur.description]
            while batch := cur.fetchmany(db.batch_size):
                yield [dict(zip(columns, row, strict=True)) for row in batch]
    except psycopg.Error as exc:
        raise DbError(f"query failed: {_first_line(exc)} (check 'query', 'cursor' and 'primary_key')") from None
    finally:
        conn.close()


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).strip().splitlines()[:1]) or type(exc).__name__


def _dump(mark: dict[str, Any] | None) -> dict[str, Any] | None:
    """A watermark as JSON, with the types needed to send it back to the database unchanged."""
    if mark is None:
        return None
    return {"cursor": _typed(mark["cursor"]), "key": [_typed(v) for v in mark["key"]]}


def _typed(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    return value


def _restore(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    if not stored:
        return None
    return {"cursor": _untyped(stored["cursor"]), "key": [_untyped(v) for v in stored["key"]]}


def _untyped(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (kind, text), = value.items()
        return {"datetime": datetime.fromisoformat, "date": date.fromisoformat, "decimal": Decimal,
                "uuid": uuid.UUID}[kind](text)
    return value


def rows_pending(ds: Datastore, src: SourceConfig) -> bool:
    """Is there at least one row after the watermark (the rows sensor)? One LIMIT 1 query."""
    db = src.db
    state = load_state(ds, src.module, src.name, recover=False)
    sql, params = build_query(db, _restore(state.get("watermark")), strict=True)
    probe = f"SELECT 1 AS pending FROM ({sql}) AS abi_probe LIMIT 1"
    password = _password(src)
    try:
        return any(True for batch in _rows(db, probe, params, password, timeout=src.timeout) if batch)
    except DbError as exc:
        raise DbError(redact_text(str(exc), (password,) if password else ())) from None
