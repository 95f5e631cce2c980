"""What every ``aif`` command shares: exit codes, the console, tables, JSON, and how a
command finds and reaches a daemon.

Imports only the standard library at module level, so ``aif --version`` stays quick;
rich and the client are imported when a command first needs them. A subcommand whose
arguments need a heavier module (a default from the chip emulator, the Store server)
adds them with ``arguments_later``: ``aif``'s parser (``CommandParser``) then adds them
only when that subcommand is parsed or its help printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

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
    if args.state_dir:
        return Path(args.state_dir)
    from aif.storage.paths import default_state_dir

    return default_state_dir()


def connect(args: argparse.Namespace) -> Client:
    """A client of the daemon ``--controller``, ``$AIF_CONTROLLER`` or the state dir names.

    Over tcp to a secure daemon it dials CURVE with this state directory's identity and
    the daemon's key (``--server-key``, else found as ``aif.Client`` finds it); to a basic
    one it sends the token (``--token``, else found as ``aif.Client`` finds it).
    """
    from aif.daemon.client import Client

    address = args.controller or os.environ.get("AIF_CONTROLLER") or None
    server_key = getattr(args, "server_key", None)
    return Client(
        address or None,
        state_dir=state_dir_of(args),
        timeout=args.api_timeout,
        server_key=server_key,
        token=getattr(args, "token", None),
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


class CommandParser(argparse.ArgumentParser):
    """The parser of one ``aif`` subcommand: an ``ArgumentParser`` that can be told to add
    some of its arguments only when it is first used (``arguments_later``).

    ``aif``'s parser knows every subcommand, but ``aif ps`` should not import the chip
    emulator to learn the defaults of ``aif chip emulate``. argparse hands the rest of
    the command line to the chosen subcommand's ``parse_known_args`` and prints help
    through ``format_help``/``format_usage``: each of those adds the waiting arguments
    first, in the order given, so the result is the parser an eager build gives.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later: list[Callable[[argparse.ArgumentParser], None]] = []

    def add_later(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call ``add(self)`` when this parser is first used."""
        self._later.append(add)

    def _complete(self) -> None:
        while self._later:
            self._later.pop(0)(self)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._complete()
        return super().parse_known_args(*args, **kwargs)

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


def arguments_later(
    p: argparse.ArgumentParser, add: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Have ``add(p)`` add ``p``'s arguments: when ``p`` is first used if it is a
    ``CommandParser`` (``aif``'s own), else now (a plain parser, as tests build)."""
    if isinstance(p, CommandParser):
        p.add_later(add)
    else:
        add(p)


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
    p.add_argument(
        "--token",
        help="the token of a basic-profile daemon's tcp --controller (default: $AIF_TOKEN, "
        "else STATE_DIR/api.token when that daemon is local)",
    )
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
