"""Servers that tests and examples start themselves, on 127.0.0.1 and free ports, and stop
by their own process id (shell): PostgreSQL (Debian's postgresql 15), etcd, NATS with
JetStream and cems-portal, and the two helpers every such server needs (answers, stop).

No system service is used or touched: each server has its own data directory, made fresh.
"""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from lab.emulation import REPO, free_port, wait_for


def answers(url: str, body: bytes | None = None) -> bool:
    """True when GET `url` answers 200 (and, if given, exactly `body`)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200 and (body is None or reply.read() == body)
    except OSError:
        return False


def stop(proc: subprocess.Popen, timeout_s: float = 10.0, sig: int = 15) -> None:
    """Stop a process by its own id: `sig` (SIGTERM), then SIGKILL after `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_portal(controller_address: str, log_path: str, port: int = 0
                 ) -> tuple[subprocess.Popen, str]:
    """cems-portal for the controller on 127.0.0.1:`port` (a free one for 0), once it
    answers: (its process, its address). Its output goes to `log_path`."""
    port = port or free_port()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "portal.main", "--controller",
                                 controller_address, "--listen", f"127.0.0.1:{port}",
                                 "--log-level", "warning"], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{address}/healthz", b"ok"), 20, "the portal to answer")
    except BaseException:
        stop(proc)
        raise
    return proc, address


def _postgres_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian's postgresql package); "
                           "scripts/setup.sh installs it")
    return os.path.dirname(found[-1])


@contextlib.contextmanager
def postgres(database: str = "cems"):
    """A PostgreSQL server of its own; yields its URL (postgresql://postgres@127.0.0.1:PORT/
    DATABASE, trust authentication on 127.0.0.1 only). PostgreSQL refuses to run as root, so
    it runs as the postgres user that Debian's package creates (started as that user
directly, so that its process id is the server's own)."""
    bindir = _postgres_bin()
    user = pwd.getpwnam("postgres")
    work = tempfile.mkdtemp(prefix="cems-pg-")
    os.chown(work, user.pw_uid, user.pw_gid)
    data = os.path.join(work, "data")
    port = free_port()
    as_postgres = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    proc = None
    try:
        subprocess.run([f"{bindir}/initdb", "-D", data, "-A", "trust", "--no-sync",
                        "-U", "postgres"], check=True, capture_output=True, timeout=60,
                       cwd=work, **as_postgres)
        log = os.path.join(work, "postgres.log")
        with open(log, "w", encoding="utf-8") as stream:
            os.chown(log, user.pw_uid, user.pw_gid)
            proc = subprocess.Popen([f"{bindir}/postgres", "-D", data, "-p", str(port),
                                     "-c", "listen_addresses=127.0.0.1", "-k", work,
                                     "-c", "fsync=off", "-c", "max_connections=200"],
                                    stdout=stream, stderr=subprocess.STDOUT, cwd=work,
                                    **as_postgres)

        def accepting():
            return subprocess.run([f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                                  capture_output=True).returncode == 0
        wait_for(accepting, 30, "PostgreSQL to accept connections")
        subprocess.run([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", database], check=True, capture_output=True, timeout=30,
                       cwd=work, **as_postgres)
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        if proc is not None:
            stop(proc, 20, sig=2)   # SIGINT: PostgreSQL's "fast" shutdown
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def etcd():
    """An etcd server of its own (Debian's etcd-server 3.4) on free ports of 127.0.0.1, with
    a fresh data directory; yields its client URL (the v3 JSON gateway is on it)."""
    work = tempfile.mkdtemp(prefix="cems-etcd-")
    client, peer = free_port(), free_port()
    proc = None
    try:
        with open(os.path.join(work, "etcd.log"), "w", encoding="utf-8") as log:
            proc = subprocess.Popen([
                "etcd", "--name", "cems-test", "--data-dir", os.path.join(work, "data"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"cems-test=http://127.0.0.1:{peer}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=work)
        url = f"http://127.0.0.1:{client}"
        wait_for(lambda: answers(f"{url}/health"), 30, "etcd to be healthy")
        yield url
    finally:
        if proc is not None:
            stop(proc, 10)
        shutil.rmtree(work, ignore_errors=True)


def nats_permissions(probe_ids=()) -> dict:
    """NATS users for the record stream: one controller (`cems`, everything) and one user per
    probe, who may publish its own records only (and hear the stream's acknowledgements).
    name -> (password, permissions); the passwords are fresh."""
    import secrets  # pylint: disable=import-outside-toplevel
    from client.stream import subject_for  # pylint: disable=import-outside-toplevel
    users = {"cems": (secrets.token_urlsafe(16), {"publish": ">", "subscribe": ">"})}
    for probe_id in probe_ids:
        users[probe_id] = (secrets.token_urlsafe(16), {
            "publish": {"allow": [subject_for(probe_id)]},
            "subscribe": {"allow": ["_INBOX.>"]}})
    return users


@contextlib.contextmanager
def nats(users: dict | None = None, port: int = 0):
    """A NATS server of its own with JetStream (Debian's nats-server 2.9) on a free port of
    127.0.0.1 (or `port`, to start one again where it was), with a fresh store directory;
    `users`: name -> (password, permissions), see nats_permissions (None: no
    authorization). Yields (its URL, its work directory)."""
    import json  # pylint: disable=import-outside-toplevel
    work = tempfile.mkdtemp(prefix="cems-nats-")
    port, monitor = port or free_port(), free_port()
    config = {"listen": f"127.0.0.1:{port}", "http": f"127.0.0.1:{monitor}",
              "jetstream": {"store_dir": os.path.join(work, "js"), "max_memory_store": 64 << 20,
                            "max_file_store": 1 << 30}}
    if users:
        config["authorization"] = {"users": [
            {"user": name, "password": password, "permissions": permissions}
            for name, (password, permissions) in users.items()]}
    path = os.path.join(work, "nats.conf")
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(config, stream)   # NATS's configuration format reads JSON
    os.chmod(path, 0o600)
    proc = None
    try:
        with open(os.path.join(work, "nats.log"), "w", encoding="utf-8") as log:
            proc = subprocess.Popen(["nats-server", "-c", path], stdout=log,
                                    stderr=subprocess.STDOUT, cwd=work)
        wait_for(lambda: answers(f"http://127.0.0.1:{monitor}/healthz"), 30,
                 "NATS to be healthy")
        yield f"nats://127.0.0.1:{port}", work
    finally:
        if proc is not None:
            stop(proc, 10)
        shutil.rmtree(work, ignore_errors=True)
