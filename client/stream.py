"""Probe records on NATS JetStream: the names and the signature that probes and controllers
share (pure: hashlib and hmac only, and read_password for the NATS password file, and
connect_options for how both connect).

A probe publishes each batch of records as one message: the bytes of an
`ExportRecordsRequest` (cems/v1/probe.proto, the message the gRPC export streams), on the
subject `cems.records.<probe id>` of the stream `CEMS_RECORDS`. Its headers:

- `Nats-Msg-Id`: `<probe id>.<boot>.<batch number>`, so that JetStream stores a batch the
  probe publishes again (its acknowledgement was lost) only once;
- `Cems-Token-Id` and `Cems-Signature`: the id of the probe's cems token and an
  HMAC-SHA256 of the subject, the message id and the body, keyed with the SHA-256 of the
  token (what the controller's store keeps of it). Whoever may publish on the NATS server
  but does not hold the probe's token cannot make records the controller takes as that
  probe's: NATS's own permissions are a second wall, not the only one.
"""

import hashlib
import hmac
import re
import ssl

STREAM = "CEMS_RECORDS"
SUBJECT_PREFIX = "cems.records."
SUBJECTS = SUBJECT_PREFIX + "*"
TOKEN_ID_HEADER = "Cems-Token-Id"
SIGNATURE_HEADER = "Cems-Signature"
MSG_ID_HEADER = "Nats-Msg-Id"
_TOKEN = re.compile(r"cems_([0-9a-f]{8})_[A-Za-z0-9_-]+")


def subject_for(probe_id: str) -> str:
    return SUBJECT_PREFIX + probe_id


def probe_of(subject: str) -> str:
    """The probe id a record subject names ("" when the subject is not one)."""
    if not subject.startswith(SUBJECT_PREFIX):
        return ""
    probe_id = subject[len(SUBJECT_PREFIX):]
    return probe_id if probe_id and "." not in probe_id else ""


def token_id_of(token: str) -> str:
    """The id part of a cems token (`cems_<id>_<secret>`); ValueError for anything else."""
    found = _TOKEN.fullmatch(token.strip())
    if not found:
        raise ValueError("not a cems token (cems_<id>_<secret>); `cemsctl token create "
                         "--role probe --probe-id ID` makes one")
    return found.group(1)


def key_of(token: str) -> bytes:
    """The signing key of a token: the hex SHA-256 that the controller's store keeps."""
    return hashlib.sha256(token.strip().encode()).hexdigest().encode()


def signature(key: bytes, subject: str, msg_id: str, body: bytes) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(subject.encode())
    mac.update(b"\n")
    mac.update(msg_id.encode())
    mac.update(b"\n")
    mac.update(body)
    return mac.hexdigest()


def signed(key: bytes, subject: str, msg_id: str, body: bytes, given: str) -> bool:
    return hmac.compare_digest(signature(key, subject, msg_id, body), given)


def read_password(path: str) -> str:
    """The NATS password kept alone in a file ('' for no file); ValueError for an empty one,
    OSError for one that cannot be read."""
    if not path:
        return ""
    with open(path, encoding="utf-8") as stream:
        text = stream.read().strip()
    if not text:
        raise ValueError(f"the NATS password file {path} is empty")
    return text.splitlines()[0].strip()


def connect_options(url: str, user: str = "", password: str = "", tls_ca: str = "") -> dict:
    """nats.connect() keywords for a probe and a controller. No reconnection inside nats-py:
    its first connection would retry for ever (max_reconnect_attempts -1), deaf to the
    caller's stop; with these it raises after two tries, and a lost connection closes, so
    the caller's own loop connects again and hears a stop meanwhile. (The cause of a
    failed connection reaches only error_cb: nats-py raises "no servers".)"""
    options = {"servers": [url], "connect_timeout": 2, "allow_reconnect": False,
               "max_reconnect_attempts": 1, "reconnect_time_wait": 0.2}
    if user:
        options.update(user=user, password=password)
    if tls_ca:
        options["tls"] = ssl.create_default_context(cafile=tls_ca)
    return options
