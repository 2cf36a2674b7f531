"""`python -m trainer [COMMAND]`: synth, load, train (default), recommend, pipeline, rollback,
snapshot, migrate, sql.

Every command takes --target (a profiles.yml output; default: the profile's default, duckdb).
Problems the user can fix print one clear line on stderr and exit 2, never a traceback.
The grammar is in cli/parser.py, what each command does in cli/commands.py.
"""

from __future__ import annotations

import sys

from trainer.cli.commands import COMMAND_HANDLERS
from trainer.cli.parser import build_parser, config_from_args
from trainer.errors import UserError

__all__ = ["main", "config_from_args"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]  # `python -m trainer --epochs 5` trains
    args = build_parser().parse_args(argv)
    try:
        return COMMAND_HANDLERS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
