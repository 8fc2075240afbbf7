"""Parsers: a setting's text (a variable, a flag, a TOML value as text) to its value.

Each parser takes the text and returns the value, or raises `Invalid` with a one-line complaint
that does not name the setting: the caller knows which setting it read and prefixes its name
(`SettingsError`). A complaint shows at most 60 characters of what it got, and a URL's password
as a mask, so no message echoes a secret (secrets themselves are never parsed: they are kept as
text, see `Secret`).

The parsers are small factories (`integer(1, 1000)`) so that the table of options in
`options.py` reads as one declaration per setting: the bounds live beside the setting.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from consumer.core.errors import ConsumerError

__all__ = [
    "HTTP_CLIENTS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MASK",
    "Backend",
    "Invalid",
    "backend",
    "boolean",
    "choice",
    "host",
    "http_url",
    "integer",
    "log_level",
    "non_empty",
    "number",
    "optional",
    "plain",
    "redact_url",
    "shown",
    "topic",
    "topics",
]

T = TypeVar("T")
Backend = Literal["platform", "oss"]

MASK = "********"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text")
# The Mem0 calls' HTTP client: auto is the lean one, or aiohttp when a proxy is set.
HTTP_CLIENTS = ("auto", "lean", "aiohttp", "httpx")


class Invalid(ConsumerError, ValueError):
    """A parser's complaint; the caller names the setting (it becomes a `SettingsError`)."""


def shown(text: str) -> str:
    """What a complaint quotes of the text it got: at most 60 characters."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def plain(number: float) -> str:
    """A bound or a default as people write it: 30, not 30.0."""
    return str(int(number)) if number == int(number) else str(number)


def non_empty(text: str) -> str:
    value = text.strip()
    if not value:
        raise Invalid("must not be empty")
    return value


def optional(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    """Blank text is None (`RECEIPTS_TOPIC=` turns receipts off); anything else is parsed."""

    def parse_optional(text: str) -> T | None:
        return parse(text) if text.strip() else None

    return parse_optional


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse_integer(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise Invalid(f"must be an integer between {low} and {high}, got {shown(text)}")
        return value

    return parse_integer


def number(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    """A float within bounds; `above`: strictly greater than `low` (a timeout of 0 is none)."""
    lo, hi = plain(low), plain(high)
    bounds = f"greater than {lo} and at most {hi}" if above else f"between {lo} and {hi}"

    def parse_number(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        too_low = value <= low if above else value < low
        if math.isnan(value) or too_low or value > high:
            raise Invalid(f"must be a number {bounds}, got {shown(text)}")
        return value

    return parse_number


def choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse_choice(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise Invalid(f"must be one of {', '.join(allowed)}, got {shown(text)}")
        return value

    return parse_choice


def backend(text: str) -> Backend:
    value = text.strip().lower()
    if value == "platform":
        return "platform"
    if value == "oss":
        return "oss"
    raise Invalid(f"must be platform or oss, got {shown(text)}")


def log_level(text: str) -> str:
    value = text.strip().upper()
    value = "WARNING" if value == "WARN" else value
    if value not in LOG_LEVELS:
        raise Invalid(f"must be one of {', '.join(LOG_LEVELS)}, got {shown(text)}")
    return value


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def boolean(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off; an option parsed by this one is a --x/--no-x flag."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Invalid(f"must be true or false (or 1/0, yes/no), got {shown(text)}")


def redact_url(url: str) -> str:
    """The text with each URL's user info masked whole: `https://user:pw@host` ->
    `https://********@host`.

    The user part goes too: it is often a token itself (`https://<token>@host`), and always says
    whose credentials these are. The user info is taken to run to the last `@` before the next
    `scheme://` or white space, not to the first `/`: a password with an unescaped `/`, `?` or
    `#` in it is masked too (at worst an `@` in a path or query hides the host as well). Found
    by hand rather than by `urlsplit`, which raises on some malformed URLs (`http://[x@host`)
    that must still be shown masked; a list of URLs is masked URL by URL.
    """
    starts = [m.end() for m in _SCHEME_END.finditer(url)]
    if not starts:
        return url
    out = [url[: starts[0] - 3]]
    for begin, end in zip(starts, [*starts[1:], len(url) + 3], strict=True):
        region = url[begin : end - 3]  # up to the next "://", which ends the next region
        space = _SPACE.search(region)
        at = region.rfind("@", 0, space.start() if space else len(region))
        out.append(MASK + region[at:] if at >= 0 else region)
    return "://".join(out)


_SCHEME_END = re.compile("://")
_SPACE = re.compile(r"\s")


def http_url(text: str) -> str:
    value = text.strip()
    problem = f"must be an http(s) URL with a host, got {shown(redact_url(value))}"
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise Invalid(problem) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise Invalid(problem)
    return value.rstrip("/")


# Dot-separated labels of letters, digits and inner hyphens, 253 characters at most.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def host(text: str) -> str:
    """An address to bind: an IPv4 or IPv6 literal (no brackets, no port) or a host name."""
    value = text.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(value):
        raise Invalid(f"must be an IP address or a host name (no port), got {shown(value)}")
    return value


_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def topic(text: str) -> str:
    value = text.strip()
    if not value:
        raise Invalid("must not be empty")
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise Invalid(f"invalid topic name {shown(value)}")
    return value


def topics(text: str) -> tuple[str, ...]:
    """Comma-separated topic names, blanks and repeats dropped; `^...` is a regex."""
    names: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if not name or name in names:
            continue
        # librdkafka subscribes to a regex when the name starts with ^.
        names.append(name if name.startswith("^") else topic(name))
    if not names:
        raise Invalid("must name at least one topic")
    return tuple(names)
