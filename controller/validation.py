"""Checks of values that come from outside, made once at the boundary (core).

Each returns the value in its canonical form or raises ValueError saying what was wrong,
allowed, and (truncated) what was given, so that a servicer can answer INVALID_ARGUMENT
with it. Nothing here knows about gRPC.
"""

import functools
import re

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_SHOWN = 40  # characters of an offending value repeated in a message


def shown(value) -> str:
    """A value as an error message repeats it: quoted, at most MAX_SHOWN characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def mac_address(field: str, value: str) -> str:
    """An Ethernet address as six colon-separated hex bytes -> lower case."""
    text = value.lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not _MAC.match(text):
        raise ValueError(f"{field} {shown(value)} is not a MAC address; expected six "
                         "hexadecimal bytes separated by colons, for example 00:00:00:00:00:01")
    if int(text[:2], 16) & 1:
        raise ValueError(f"{field} {shown(value)} is a group (multicast or broadcast) address, "
                         "not a device's")
    return text


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def probe_id(field: str, value: str) -> str:
    """A probe's id: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or
    digit (it names the probe in metrics and logs)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"{field} {shown(value)} must be 1 to 64 letters, digits, '.', '_' or "
                         "'-', starting with a letter or digit")
    return value


def truncated(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


INT64_MAX = (1 << 63) - 1


def text(field: str, value: str, max_chars: int, allow_empty: bool = True) -> str:
    """A string of at most `max_chars` characters."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text, got {shown(value)}")
    if not value and not allow_empty:
        raise ValueError(f"{field} is required")
    if len(value) > max_chars:
        raise ValueError(f"{field} is {len(value)} characters long, more than {max_chars}: "
                         f"{shown(value)}")
    return value


def number(field: str, value, low: float, high: float) -> float:
    """A finite number in [low, high] (NaN and infinities are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not low <= value <= high:
        raise ValueError(f"{field} must be a number from {low:g} to {high:g}, got {shown(value)}")
    return value


def count(field: str, items, most: int):
    """A list or map of at most `most` entries."""
    if len(items) > most:
        raise ValueError(f"{field} has {len(items)} entries, more than {most}")
    return items


def ip_address(field: str, value: str) -> str:
    """An IPv4 or IPv6 address -> its canonical text."""
    try:
        return _canonical_address(value)
    except (ValueError, TypeError):
        raise ValueError(f"{field} {shown(value)} is not an IPv4 or IPv6 address") from None


@functools.lru_cache(maxsize=65_536)
def _canonical_address(value: str) -> str:
    """Parsed once per distinct text (probe records name the same flows every interval);
    what does not parse is not cached (lru_cache keeps no exceptions)."""
    import ipaddress  # pylint: disable=import-outside-toplevel
    return str(ipaddress.ip_address(value))


def port(field: str, value: int) -> int:
    return int(number(field, value, 0, 65535))


def saturated(value: int) -> int:
    """An unsigned counter as a signed 64-bit one: at most 2^63-1, never an overflow."""
    return min(value, INT64_MAX)
