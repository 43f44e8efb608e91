"""A small client of etcd's v3 JSON gateway (shell: HTTP to etcd, nothing else).

cems needs a few things of etcd: a lease, its keep-alive, a key created only if it does not
exist (a transaction on its create revision), reading keys, and deleting one. The gateway
(`/v3/...`, every etcd 3.4 server has it) gives them over plain HTTP and JSON; a client
library such as etcd3gw would bring eventlet into the controller process through futurist,
which the OpenFlow framework must not meet, so these few calls are made with urllib.
"""

import base64
import json
import urllib.error
import urllib.request


class EtcdError(RuntimeError):
    """etcd did not answer, or answered with an error; the message says which call."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode()


class Etcd:
    def __init__(self, url: str, timeout_s: float = 2.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"{self.url}/v3/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise EtcdError(f"etcd {self.url} {path}: {err.code} "
                            f"{err.read()[:200].decode(errors='replace')}") from None
        except (OSError, ValueError) as err:
            raise EtcdError(f"etcd {self.url} {path}: {err}") from None

    def grant(self, ttl_s: int) -> int:
        """A new lease of `ttl_s` seconds; its id."""
        return int(self._call("lease/grant", {"TTL": int(ttl_s)})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew a lease; the seconds it has left (0: it has expired)."""
        reply = self._call("lease/keepalive", {"ID": lease})
        return int(reply.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        self._call("lease/revoke", {"ID": lease})

    def create(self, key: str, value: str, lease: int) -> tuple[bool, str, int]:
        """Put `key` = `value` under `lease` if the key does not exist. Returns (whether this
        call created it, the value the key holds, its create revision): the revision grows
        with every creation, so whoever creates it later has a larger one."""
        reply = self._call("kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value),
                                         "lease": str(lease)}}],
            "failure": [{"request_range": {"key": _b64(key)}}]})
        created = bool(reply.get("succeeded"))
        value_now, revision = self.get(key) if created else _first(reply)
        return created, value_now, revision

    def delete(self, key: str) -> None:
        self._call("kv/deleterange", {"key": _b64(key)})

    def put(self, key: str, value: str, lease: int) -> None:
        self._call("kv/put", {"key": _b64(key), "value": _b64(value), "lease": str(lease)})

    def prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) of every key that starts with `prefix`, in key order."""
        return [(key, value) for key, value, _ in self.prefix_revisions(prefix)]

    def prefix_revisions(self, prefix: str) -> list[tuple[str, str, int]]:
        """(key, value, create revision) of every key that starts with `prefix`."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self._call("kv/range", {"key": _b64(prefix), "range_end": _b64(end)}).get(
            "kvs", [])
        return [(_text(kv["key"]), _text(kv.get("value", "")), int(kv.get("create_revision", 0)))
                for kv in kvs]

    def get(self, key: str) -> tuple[str, int]:
        """(value, create revision) of `key`, or ("", 0) when it does not exist."""
        kvs = self._call("kv/range", {"key": _b64(key)}).get("kvs", [])
        if not kvs:
            return "", 0
        return _text(kvs[0].get("value", "")), int(kvs[0].get("create_revision", 0))


def _first(txn_reply: dict) -> tuple[str, int]:
    for response in txn_reply.get("responses", []):
        kvs = response.get("response_range", {}).get("kvs", [])
        if kvs:
            return _text(kvs[0].get("value", "")), int(kvs[0].get("create_revision", 0))
    return "", 0
