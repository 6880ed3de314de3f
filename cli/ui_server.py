"""`abi ui`: serve the pages of cli.ui_pages over HTTP, or write them once as static files.

The standard library's ThreadingHTTPServer is enough for one person's browser
on 127.0.0.1 and keeps the tool free of a web framework. Every request renders
from the datastore afresh (the configuration is re-read when its file changes),
so new runs show on reload without a restart. Nothing here writes to the
datastore: the static build refuses an output folder inside it.

A page that fails to render answers 500 with one line on stderr and no
traceback in the page; bad query parameters answer 400 with the library's own
sentence. When bound to a loopback address, requests must name a loopback
host, so a web page elsewhere cannot read the UI through DNS rebinding.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cli import ui_pages
from storage.config import Config
from storage.errors import AbiError, UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATIC_RUNS = 500  # runs listed (and given a page) by a static build


class ConfigCache:
    """The configuration, loaded again only when its file's mtime changes."""

    def __init__(self, path: Path | None) -> None:
        from storage.config import find_config

        self.path = find_config(path)
        self._stamp: int | None = None
        self._config: Config | None = None

    def get(self) -> Config:
        from storage.config import load_config

        stamp = self.path.stat().st_mtime_ns
        if self._config is None or stamp != self._stamp:
            self._config, self._stamp = load_config(self.path), stamp
        return self._config


class UiServer(ThreadingHTTPServer):
    daemon_threads = True  # a browser's idle keep-alive connection must not hold up Ctrl-C
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], configs: ConfigCache, *, log: Callable[[str], None]) -> None:
        self.configs = configs
        self.log = log
        if ":" in address[0]:  # an IPv6 address such as ::1
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        host = address[0]
        self.loopback = host in LOOPBACK or host.startswith("127.")
        port = self.server_address[1]
        self.allowed_hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]", host)}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that hangs up mid-response is normal; anything else is one line, not a traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            self.log(f"abi ui: {type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    server: UiServer
    server_version = "abi-ui"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would bury the URL and the error lines the terminal is for."""

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        if self.server.loopback and self.headers.get("Host", "") not in self.server.allowed_hosts:
            self._send(421, "<!DOCTYPE html><title>Misdirected</title><p>Use the address abi ui printed.</p>",
                       head=head)
            return
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        config: Config | None = None
        try:
            config = self.server.configs.get()
            status, page = 200, render(config, path, params)
        except ui_pages.NotFound:
            status, page = 404, ui_pages.not_found(config, path)
        except AbiError as exc:
            status, page = 400, ui_pages.error_page(config, " ".join(str(exc).split()), title="Cannot show that")
        except Exception as exc:  # never a traceback in the page; one line for whoever runs the server
            self.server.log(f"abi ui: error on GET {path}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            status, page = 500, ui_pages.error_page(config, "This page failed to render; the terminal running "
                                                            "abi ui has the error.", title="Internal error")
        self._send(status, page, head=head)

    def _send(self, status: int, page: str, *, head: bool) -> None:
        body = page.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", ui_pages.CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)


def render(config: Config, path: str, params: dict[str, str]) -> str:
    """The page at `path` (the static build's file names; `/` is the overview), or NotFound."""
    name = path.lstrip("/") or "index.html"
    if name in ui_pages.PAGES:
        return ui_pages.PAGES[name](config, params=params)
    if name.startswith("runs/") and name.endswith(".html") and name.count("/") == 1:
        return ui_pages.run_page(config, name[len("runs/"):-len(".html")])
    raise ui_pages.NotFound(path)


def make_server(config_path: Path | None, *, host: str = "127.0.0.1", port: int = 3000,
                log: Callable[[str], None] | None = None) -> UiServer:
    """Load the configuration once (so a bad one fails now, not on the first page) and bind."""
    configs = ConfigCache(config_path)
    configs.get()
    try:
        return UiServer((host, port), configs, log=log or _stderr)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
                         "(or --port 0 for any free one)") from None


def serve(config_path: Path | None, *, host: str = "127.0.0.1", port: int = 3000,
          say: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C; print the URL first (with --port 0, the port the system chose)."""
    server = make_server(config_path, host=host, port=port)
    _stop_on_sigterm()
    try:
        say(f"abi ui: serving {server.configs.path} on {server.url} (Ctrl-C stops)")
        sys.stdout.flush()
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        say("abi ui: stopped")
    finally:
        server.server_close()


def build_static(config: Config, out: Path, *, runs: int = STATIC_RUNS) -> dict[str, Any]:
    """Write every page into `out` (a CI artifact): the newest `runs` runs each get their page."""
    from storage.history import list_runs
    from storage.status import source_status

    out = out.resolve()  # `..` and symlinks resolved: a path that only looks outside the datastore is refused
    root = config.datastore.root.resolve()
    if out == root or root in out.parents:
        raise UsageError(f"--build {out}: the UI never writes into the datastore ({root}); choose another folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--build {out}: that is a file; give a folder (it is created if missing)")
    rows = list_runs(config=config, limit=runs)
    pages = {name: fn(config, static=True) for name, fn in ui_pages.PAGES.items() if name != "runs.html"}
    pages["runs.html"] = ui_pages.runs(config, static=True, rows=rows, limit=runs)
    ids = [r["run_id"] for r in rows if ui_pages.RUN_ID_RE.match(r.get("run_id") or "")]
    ids += [r["last_run_id"] for r in source_status(config=config)
            if r.get("last_run_id") and ui_pages.RUN_ID_RE.match(r["last_run_id"]) and r["last_run_id"] not in ids]
    for run_id in ids:
        try:
            pages[f"runs/{run_id}.html"] = ui_pages.run_page(config, run_id, static=True)
        except ui_pages.NotFound:
            continue  # listed in the index but its record is gone: the list still shows it
    (out / "runs").mkdir(parents=True, exist_ok=True)
    from storage.atomic import write_bytes

    for name, page in pages.items():
        write_bytes(out / name, page.encode("utf-8"), fsync=False, sync_dir=False)  # temp file + rename
    return {"folder": str(out), "pages": len(pages), "runs": len(ids), "index": str(out / "index.html")}


def _stop_on_sigterm() -> None:
    """`kill` (a service manager, a test's terminate()) stops the server the way Ctrl-C does."""
    import signal
    import threading

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
