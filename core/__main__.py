"""Command line: `python -m core train|evaluate|predict|saliency|export|ship|average …`, the same functions the
pages use. The commands live in core/commands.py; this is the entry point, and the one place a UserError becomes a
message and exit status 2 (anything else is a bug and keeps its traceback)."""

from __future__ import annotations

import argparse
import sys

from core.commands import COMMANDS
from core.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
