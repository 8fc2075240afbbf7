"""The command line's view of the table: one long option per setting, and back to `Settings`.

Each option's flag is its variable's name in lower case with dashes (`--dlq-topic`); where the
table names a shorter one (`--bootstrap-servers`), that one is listed first and the variable's
name works too (`--kafka-bootstrap-servers`). A boolean is `--x`/`--no-x`; a secret has its
`--x-file` too. Every flag defaults to None, so an unset flag falls back to the environment,
the file and the default (`sources.py`). The help is the table's text without its Markdown,
with the variable and the default; a secret's default is never shown. A command other than
`run` and `config` lists only the settings it reads (`command_uses.py`) and accepts the
others' flags unlisted, as it accepts their variables.

`child_arguments` goes the other way, for `run --workers` (`commands/workers.py`): the flags
that were given, rendered again for a child process, except the secrets. A command line is
readable by every user of the machine (`ps`, /proc/<pid>/cmdline), the environment only by its
owner, so a secret given as a flag reaches the children as its variable instead.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Collection, Mapping

from consumer.settings.command_uses import USES
from consumer.settings.kafka_properties import is_secret_property, property_variable
from consumer.settings.options import CONFIG_ENV, FLAG_DESTS, OPTIONS, Option, Settings
from consumer.settings.registry_properties import is_secret_registry_property, registry_variable
from consumer.settings.sources import KAFKA_PROPERTY_FLAG, REGISTRY_PROPERTY_FLAG

__all__ = ["add_arguments", "child_arguments", "from_args", "plain_text"]

_DESTS = frozenset(FLAG_DESTS.values()) | {"kafka_property", "schema_registry_property"}
# A command that reads the registry's URL reads its client's properties too.
_REGISTRY_URL = "SCHEMA_REGISTRY_URL"
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def plain_text(markdown: str) -> str:
    """A help text without its Markdown (code spans, links), as `--help` shows it."""
    return _LINK.sub(r"\1", markdown).replace("`", "")


def add_arguments(parser: argparse.ArgumentParser, *, command: str | None = None) -> None:
    """One long option per setting, all defaulting to None so unset flags fall back to env.

    `command`: list only what that command reads (`command_uses.USES`); None: list all.
    """
    listed = None if command is None else {CONFIG_ENV, *USES[command]}
    if listed is None:
        title = "configuration (each option also an environment variable)"
    else:
        title = (
            f"configuration: what {command} reads (each option also an environment variable; "
            "the other settings are accepted, unused: see run --help)"
        )
    group = parser.add_argument_group(title)
    defaults = Settings().describe()
    for opt in OPTIONS:
        shown = listed is None or opt.env in listed
        text = plain_text(opt.help)
        if opt.secret:
            # Never show a secret's value, not even its default.
            group.add_argument(
                *opt.option_strings,
                dest=opt.dest,
                default=None,
                metavar=opt.env,
                help=_escaped(f"{text} [env {opt.env}]") if shown else argparse.SUPPRESS,
            )
            group.add_argument(
                *(flag + "-file" for flag in opt.option_strings),
                dest=opt.file_dest,
                default=None,
                metavar="PATH",
                help=f"read {opt.env} from this file [env {opt.file_env}]"
                if shown
                else argparse.SUPPRESS,
            )
            continue
        help_text = _escaped(f"{text} [env {opt.env}, default {defaults[opt.env] or 'unset'}]")
        _add_option(group, opt, help_text if shown else argparse.SUPPRESS)
    group.add_argument(
        KAFKA_PROPERTY_FLAG,
        dest="kafka_property",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="librdkafka property, repeatable; overrides KAFKA_<NAME> variables"
        if listed is None or KAFKA_PROPERTY_FLAG in listed
        else argparse.SUPPRESS,
    )
    group.add_argument(
        REGISTRY_PROPERTY_FLAG,
        dest="schema_registry_property",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="Schema Registry client property (basic.auth.user.info, ssl.ca.location, ...), "
        "repeatable; overrides SCHEMA_REGISTRY_<NAME> variables"
        if listed is None or _REGISTRY_URL in listed
        else argparse.SUPPRESS,
    )


def _add_option(group: argparse._ArgumentGroup, opt: Option, help_text: str) -> None:
    if opt.boolean:
        group.add_argument(
            *opt.option_strings,
            dest=opt.dest,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text,
        )
    else:
        group.add_argument(
            *opt.option_strings,
            dest=opt.dest,
            default=None,
            metavar=opt.metavar or opt.env,
            help=help_text,
        )


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


def from_args(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    needs_mem0: bool = True,
    check_clients: bool | None = None,
) -> Settings:
    """Settings from parsed arguments (see `add_arguments`) over the environment.

    `needs_mem0`: the Platform backend's key is required. `check_clients`: librdkafka judges
    the properties of the clients `run` builds, offline (`client_check.py`); by default when
    `needs_mem0`, as `run` is the command that needs both (and `config` asks for both).
    """
    flags = {k: v for k, v in vars(args).items() if k in _DESTS}
    if check_clients is None:
        check_clients = needs_mem0
    return Settings.from_sources(env, flags, needs_mem0=needs_mem0, check_clients=check_clients)


def child_arguments(
    args: argparse.Namespace, *, omit: Collection[str] = ()
) -> tuple[list[str], dict[str, str | None]]:
    """The settings flags of `args` as a child's command line without a secret, and the
    environment changes that carry the secrets instead (None: unset that variable).

    A secret's flag (`--mem0-api-key`, `--log-hash-key`) becomes its variable, and its
    `_FILE` variable is unset (one layer may not hold both); so does a `--kafka-property`
    whose property is secret (`KAFKA_SASL_PASSWORD`), and a `--schema-registry-property`
    (`SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`). The environment ranks right below the
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
    families = (
        ("kafka_property", KAFKA_PROPERTY_FLAG, is_secret_property, property_variable),
        (
            "schema_registry_property",
            REGISTRY_PROPERTY_FLAG,
            is_secret_registry_property,
            registry_variable,
        ),
    )
    for dest, flag, is_secret, variable_of in families:
        for item in getattr(args, dest, None) or ():
            key = item.partition("=")[0].strip()
            if is_secret(key):
                variable = variable_of(key)
                env[variable] = item.partition("=")[2]
                env[variable + "_FILE"] = None
            else:
                argv.append(f"{flag}={item}")
    return argv, env
