"""Checks of values that come from outside, made once at the boundary (core).

Each returns the value in its canonical form or raises ValueError saying what was wrong,
allowed, and (truncated) what was given, so that a servicer can answer INVALID_ARGUMENT
with it. Nothing here knows about gRPC.
"""

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
