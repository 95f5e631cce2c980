"""``aif aim list`` and ``aif aim show TYPE``: the AIM types this environment offers.

Built-ins, ``aif.aims`` entry points (with the package that publishes each), AIM
packages installed from a Store into ``--state-dir``, and for ``show`` any class path:
each with its ports and record types, parameters and their defaults, daemon queues,
whether it measures capabilities, and where it comes from. Read from the classes by
:mod:`aif.aims.catalog`, which also writes ``docs/aims.md`` (``aif aim list --markdown``).

Imports only the standard library at module level: the parser stays light.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aif.cli.common import EXIT_OK, console, print_json, table

if TYPE_CHECKING:
    from aif.aims.catalog import AIMTypeInfo


def _store_types(state_dir: str | None) -> list[AIMTypeInfo]:
    """AIM packages installed from a Store (listed from their records, not loaded)."""
    from aif.aims.catalog import AIMTypeInfo
    from aif.storage.paths import default_state_dir
    from aif.store.install import list_installed

    root = Path(state_dir) if state_dir else default_state_dir()
    out = []
    for package in list_installed(root):
        record = package.record
        if record.kind != "AIM":
            continue
        signer = record.signer_name or record.signer or "nobody"
        trust = "trusted" if record.trusted else "untrusted"
        out.append(
            AIMTypeInfo(
                type=f"store:{package.ref}",
                origin=f"Store package {package.ref} (signed by {signer}, {trust})",
                class_path=record.entry,
                description="installed from a Store; `aif aim show` loads it for its ports",
            )
        )
    return out


def _ports(info: AIMTypeInfo, direction: str) -> str:
    """The port names (``aif aim show`` gives their record types)."""
    return ", ".join(p.name for p in info.ports if p.direction == direction)


def cmd_aim_list(args: argparse.Namespace) -> int:
    """Every AIM type available here, one row each (``aif aim show TYPE`` for one in full)."""
    from aif.aims import catalog

    if args.markdown:
        print(catalog.reference_markdown(), end="")
        return EXIT_OK
    infos = catalog.available() + _store_types(args.state_dir)
    if args.json:
        print_json([info.to_json() for info in infos])
        return EXIT_OK
    from rich.markup import escape
    from rich.table import Table

    grid = Table(box=None, header_style="bold", pad_edge=False)
    grid.add_column("TYPE", no_wrap=True)
    for column, width in (("FROM", 16), ("INPUTS", 18), ("OUTPUTS", 18), ("QUEUES", 12)):
        grid.add_column(column, max_width=width)
    grid.add_column("CAPABILITIES", no_wrap=True)
    grid.add_column("DESCRIPTION")
    for info in infos:
        queues = ", ".join(info.queues) + (" (by params)" if info.queues_from_params else "")
        grid.add_row(
            escape(info.type),
            escape(info.origin),
            escape(_ports(info, "input")),
            escape(_ports(info, "output")),
            escape(queues),
            "yes" if info.capabilities else "",
            escape(f"error: {info.error}" if info.error else info.description),
        )
    console().print(grid)
    return EXIT_OK


def _describe(type_text: str, state_dir: str | None) -> AIMTypeInfo:
    from aif.aims import catalog
    from aif.aims.registry import resolve_aim_type, type_prefix

    if type_prefix(type_text) is not None:
        cls = resolve_aim_type(type_text, state_dir=Path(state_dir) if state_dir else None)
        ref = type_text.partition(":")[2]
        return catalog.describe(cls, type_text, f"Store package {ref}")
    return catalog.describe_type(type_text)


def _default(value: Any, required: bool) -> str:
    return "required" if required else json.dumps(value)


def cmd_aim_show(args: argparse.Namespace) -> int:
    """One AIM type in detail."""
    info = _describe(args.type, args.state_dir)
    if args.json:
        print_json(info.to_json())
        return EXIT_OK
    if args.markdown:
        from aif.aims.catalog import type_markdown

        print("\n".join(type_markdown(info, "#")).rstrip())
        return EXIT_OK
    from rich.markup import escape

    out = console()
    out.print(f"[bold]{escape(info.type)}[/bold]  {escape(info.description)}", soft_wrap=True)
    out.print(f"from          {escape(info.origin)}", soft_wrap=True)
    out.print(f"class         {escape(info.class_path)}", soft_wrap=True)
    out.print(f"technology    {info.technology}, version {escape(info.version)}")
    queues = ", ".join(info.queues) or "none (a light AIM)"
    if info.queues_from_params:
        queues += "; its params may choose others"
    out.print(f"queues        {escape(queues)}", soft_wrap=True)
    out.print(f"capabilities  {escape(info.capabilities or 'none declared')}", soft_wrap=True)
    out.print(f"drain on stop {'yes' if info.drain_on_stop else 'no'}")
    table(
        "ports",
        ["PORT", "DIRECTION", "RECORD TYPE"],
        [[escape(p.name), p.direction, escape(p.type)] for p in info.ports],
    )
    if info.params:
        table(
            "params",
            ["PARAM", "TYPE", "DEFAULT", "DESCRIPTION"],
            [
                [
                    escape(p.name),
                    escape(p.type),
                    escape(_default(p.default, p.required)),
                    escape(p.description),
                ]
                for p in info.params
            ],
        )
    else:
        out.print("params        none")
    return EXIT_OK


def add_commands(aim: Any) -> None:
    """Add ``list`` and ``show`` to ``aif aim``'s subparsers."""
    p = aim.add_parser(
        "list",
        help="every AIM type available here: ports, params, queues, where it comes from",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument(
        "--markdown",
        action="store_true",
        help="print the AIM reference (docs/aims.md: the AIM API and the built-in AIMs)",
    )
    _add_state_dir(p)
    p.set_defaults(func=cmd_aim_list)

    p = aim.add_parser("show", help="one AIM type in detail: ports, params and defaults, queues")
    p.add_argument(
        "type",
        metavar="TYPE",
        help="a built-in name, an entry point, package.module:Class or store:NAME@VERSION",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--markdown", action="store_true", help="print it as docs/aims.md does")
    _add_state_dir(p)
    p.set_defaults(func=cmd_aim_show)


def _add_state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        help="where installed Store packages live (default: $AIF_STATE_DIR or ~/.local/share/aif)",
    )
