"""The command line's view of the table: one long option per setting, and back to `Settings`.

Each option's flag is its variable's name in lower case with dashes (`--dlq-topic`) unless the
table names another (`--bootstrap-servers`); a boolean is `--x`/`--no-x`; a secret has its
`--x-file` too. Every flag defaults to None, so an unset flag falls back to the environment,
the file and the default (`sources.py`). The help is the table's text without its Markdown,
with the variable and the default; a secret's default is never shown.

`child_arguments` goes the other way, for `run --workers` (`commands/workers.py`): the flags
that were given, rendered again for a child process, except the secrets. A command line is
readable by every user of the machine (`ps`, /proc/<pid>/cmdline), the environment only by its
owner, so a secret given as a flag reaches the children as its variable instead.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Collection, Mapping

from consumer.settings.kafka_properties import is_secret_property, property_variable
from consumer.settings.options import FLAG_DESTS, OPTIONS, Settings
from consumer.settings.sources import KAFKA_PROPERTY_FLAG

__all__ = ["add_arguments", "child_arguments", "from_args", "plain_text"]

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


def child_arguments(
    args: argparse.Namespace, *, omit: Collection[str] = ()
) -> tuple[list[str], dict[str, str | None]]:
    """The settings flags of `args` as a child's command line without a secret, and the
    environment changes that carry the secrets instead (None: unset that variable).

    A secret's flag (`--mem0-api-key`, `--log-hash-key`) becomes its variable, and its
    `_FILE` variable is unset (one layer may not hold both); so does a `--kafka-property`
    whose property is secret (`KAFKA_SASL_PASSWORD`). The environment ranks right below the
    flags, so the child's settings are the parent's. Flags are rendered from what argparse
    parsed, as `--name=value`, so no abbreviation or spelling of the parent's slips through;
    `omit` names fields the caller sets otherwise (a worker's METRICS_PORT).
    """
    argv: list[str] = []
    env: dict[str, str | None] = {}
    for opt in OPTIONS:
        if opt.dest in omit:
            continue
        value = getattr(args, opt.dest, None)
        if opt.secret:
            if value is not None:
                env[opt.env] = str(value)
                env[opt.file_env] = None
            path = getattr(args, opt.file_dest, None)
            if path is not None:
                argv.append(f"{opt.option_string}-file={path}")
        elif value is None:
            continue
        elif opt.boolean:
            argv.append(opt.option_string if value else "--no-" + opt.option_string[2:])
        else:
            argv.append(f"{opt.option_string}={value}")
    for item in getattr(args, "kafka_property", None) or ():
        key = item.partition("=")[0].strip()
        if is_secret_property(key):
            variable = property_variable(key)
            env[variable] = item.partition("=")[2]
            env[variable + "_FILE"] = None
        else:
            argv.append(f"{KAFKA_PROPERTY_FLAG}={item}")
    return argv, env
