"""`abi check`: the monitoring job (its own module so that cli/main.py only gains one import line).

Only typer and cli.main are imported here at module level: `abi --help` imports
this module, and must stay fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from cli.main import ConfigOpt, JsonOpt, _guard, app, parse_now

if TYPE_CHECKING:

    from collectors.alerts import CheckReport


@app.command("check")
def check_cmd(
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only the sources, aggregates and bridges "
                                                                      "of this module.")] = None,
    now: Annotated[str | None, typer.Option(hidden=True, help="Pretend it is this UTC time (tests).")] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check every source, aggregate and bridge; print what is wrong, exit 1 if anything is.

    Rules per node, set in its `checks` table: stale (last success older than max_age; default
    2 x the source's interval), failing (max_consecutive_failures in a row; default 3), silent
    (fewer than min_new_items new items over window) and drop (the last run's record count
    under (1 - max_drop) x the median of the previous drop_runs). With [alerts] webhook_env,
    each new problem is posted once to that Slack-compatible webhook and its resolution once
    when it clears. Run it from cron every few minutes. Exit 0 all OK, 1 problems (or the
    webhook failed: it is tried again next run), 2 configuration errors.
    """
    from collectors.alerts import check_and_alert
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    when = _guard(lambda: parse_now(now)) if now is not None else None
    report = _guard(lambda: check_and_alert(config=cfg, module=module, now=when))
    render(report, as_json=json_out)
    raise typer.Exit(report.exit_code)


def render(report: CheckReport, *, as_json: bool) -> None:
    """Findings on stdout, one per line (or JSON); alert activity and warnings on stderr."""
    if as_json:
        import json

        sys.stdout.write(json.dumps(report.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        checked = report.checked
        disabled = [n.name for n in report.nodes if not n.checks.enabled]
        off = f" ({len(disabled)} disabled: {', '.join(disabled)})" if disabled else ""
        if not report.findings:
            typer.echo(f"all {len(checked)} node{'s' if len(checked) != 1 else ''} OK{off}")
        else:
            width = max(len(f.node) for f in report.findings)
            for f in report.findings:
                typer.echo(f"{f.node:<{width}}  {f.rule:<7}  {f.message}")
        alerts = report.alerts or {}
        if alerts.get("sent") or alerts.get("resolved"):
            typer.echo(f"alerts: sent {len(alerts['sent'])} alert(s), {len(alerts['resolved'])} resolution(s)",
                       err=True)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
