"""What every ``aif`` command shares: exit codes, the console, tables, JSON, and how a
command finds and reaches a daemon.

Imports only the standard library at module level, so ``aif --version`` stays quick;
rich and the client are imported when a command first needs them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aif.storage.paths import default_state_dir

if TYPE_CHECKING:
    from aif.daemon.client import Client

#: Exit codes of every ``aif`` command: success; the run, job or check failed; bad
#: input (a file, an argument); interrupted by Ctrl-C (128 + SIGINT, as shells say it).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


def console() -> Any:
    from rich.console import Console

    console = Console(stderr=False, highlight=False)
    if not console.is_terminal:
        # piped or logged: rich would assume 80 columns and squeeze the jobs table
        console = Console(stderr=False, highlight=False, width=140)
    return console


def state_dir_of(args: argparse.Namespace) -> Path:
    """``--state-dir``, else the default state directory."""
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def connect(args: argparse.Namespace) -> Client:
    """A client of the daemon ``--controller``, ``$AIF_CONTROLLER`` or the state dir names.

    Over tcp to a secure daemon it dials CURVE with this state directory's identity and
    the daemon's key (``--server-key``, else found as ``aif.Client`` finds it).
    """
    from aif.daemon.client import Client

    address = args.controller or os.environ.get("AIF_CONTROLLER") or None
    server_key = getattr(args, "server_key", None)
    return Client(
        address or None,
        state_dir=state_dir_of(args),
        timeout=args.api_timeout,
        server_key=server_key,
    )


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def age(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    seconds = max(0.0, time.time() - stamp)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h ago"
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)


def add_target(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument(
        "--state-dir",
        help="the daemon's state directory (default: $AIF_STATE_DIR or ~/.local/share/aif)",
    )
    p.add_argument(
        "--controller",
        metavar="ADDRESS",
        help="the daemon's User API address (ipc://... or tcp://HOST:PORT; default: "
        "$AIF_CONTROLLER, else the daemon of the state directory)",
    )
    p.add_argument(
        "--api-timeout", type=float, default=10.0, metavar="S", help="seconds to wait for an answer"
    )
    p.add_argument(
        "--server-key",
        metavar="curve:KEY",
        help="the daemon's CURVE key, for a tcp --controller in the secure profile (default: "
        "from the local controller.json, or the key trusted for that endpoint)",
    )
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
