"""The command line's view of the table: one long option per setting, and back to `Settings`.

Each option's flag is its variable's name in lower case with dashes (`--dlq-topic`) unless the
table names another (`--bootstrap-servers`); a boolean is `--x`/`--no-x`; a secret has its
`--x-file` too. Every flag defaults to None, so an unset flag falls back to the environment,
the file and the default (`sources.py`). The help is the table's text without its Markdown,
with the variable and the default; a secret's default is never shown.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping

from consumer.settings.options import FLAG_DESTS, OPTIONS, Settings
from consumer.settings.sources import KAFKA_PROPERTY_FLAG

__all__ = ["add_arguments", "from_args", "plain_text"]

_DESTS = frozenset(FLAG_DESTS.values()) | {"kafka_property"}
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def plain_text(markdown: str) -> str:
    """A help text without its Markdown (code spans, links), as `--help` shows it."""
    return _LINK.sub(r"\1", markdown).replace("`", "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One long option per setting, all defaulting to None so unset flags fall back to env."""
    group = parser.add_argument_group("configuration (each option also an environment variable)")
    defaults = Settings().describe()
    for opt in OPTIONS:
        text = plain_text(opt.help)
        if opt.secret:
            # Never show a secret's value, not even its default.
            group.add_argument(
                opt.option_string,
                dest=opt.dest,
                default=None,
                metavar=opt.env,
                help=_escaped(f"{text} [env {opt.env}]"),
            )
            group.add_argument(
                opt.option_string + "-file",
                dest=opt.file_dest,
                default=None,
                metavar="PATH",
                help=f"read {opt.env} from this file [env {opt.file_env}]",
            )
            continue
        help_text = _escaped(f"{text} [env {opt.env}, default {defaults[opt.env] or 'unset'}]")
        if opt.boolean:
            group.add_argument(
                opt.option_string,
                dest=opt.dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                opt.option_string,
                dest=opt.dest,
                default=None,
                metavar=opt.metavar or opt.env,
                help=help_text,
            )
    group.add_argument(
        KAFKA_PROPERTY_FLAG,
        dest="kafka_property",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="librdkafka property, repeatable; overrides KAFKA_<NAME> variables",
    )


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


def from_args(
    args: argparse.Namespace, env: Mapping[str, str], *, needs_mem0: bool = True
) -> Settings:
    """Settings from parsed arguments (see `add_arguments`) over the environment."""
    flags = {k: v for k, v in vars(args).items() if k in _DESTS}
    return Settings.from_sources(env, flags, needs_mem0=needs_mem0)
