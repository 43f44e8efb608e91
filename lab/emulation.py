"""Run a cems controller process and an emulated Mininet network around it (shell).

Used by the demo and the integration tests. The controller runs as its own process and is
stopped by its own process id; the network uses Open vSwitch's userspace datapath.
"""

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial

import grpc
from cems.v1 import status_pb2 as pb
from cems.v1 import status_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.channel import connect

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RYU_PYTHON = os.path.join(REPO, ".venv-ryu", "bin", "python")


def ryu_unavailable_reason() -> str:
    """Why the Ryu runtime cannot run here, or '' when it can."""
    if not os.path.exists(RYU_PYTHON):
        return f"{RYU_PYTHON} does not exist (scripts/setup.sh creates it unless CEMS_SKIP_RYU=1)"
    probe = subprocess.run([RYU_PYTHON, "-c", "import ryu, eventlet"], capture_output=True,
                           text=True, timeout=60)
    if probe.returncode:
        return f"Ryu is not importable in .venv-ryu: {probe.stderr.strip()[-300:]}"
    return ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    """Call predicate until it returns a true value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


class ControllerProcess:
    """A cems controller subprocess on free local ports, with a store that survives restarts.

    runtime "os_ken" runs cems-controller in this Python; "ryu" runs the Ryu launcher in
    the .venv-ryu that setup creates. Both read the same generated TOML config file.
    """

    def __init__(self, workdir: str | None = None, poll_interval_s: float = 1.0,
                 runtime: str = "os_ken", extra_args: tuple[str, ...] = (),
                 extra_config: str = "", unix_socket: str = "", env: dict | None = None,
                 store_url: str = "", openflow_port: int = 0):
        if runtime not in ("os_ken", "ryu"):
            raise ValueError(f"runtime must be 'os_ken' or 'ryu', got {runtime!r}")
        self.workdir = workdir or tempfile.mkdtemp(prefix="cems-")
        self.runtime = runtime
        self.openflow_port = openflow_port or free_port()
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.store_path = os.path.join(self.workdir, "cems.sqlite")
        self.store_url = store_url        # postgresql://...: the store instead of the file
        self.log_path = os.path.join(self.workdir, "controller.log")
        self.config_path = os.path.join(self.workdir, "cems.toml")
        self.poll_interval_s = poll_interval_s
        self.extra_args = extra_args
        self.extra_config = extra_config  # more TOML, appended to the generated file
        self.unix_socket = unix_socket    # gRPC also on this unix socket, if given
        self.env = env or {}              # more environment for the process
        self.token = ""                   # a domain manager's token, made at the first start
        self.process: subprocess.Popen | None = None
        self._channel = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _write_config(self) -> None:
        with open(self.config_path, "w", encoding="utf-8") as stream:
            stream.write(
                f'[openflow]\nlisten = "127.0.0.1:{self.openflow_port}"\n'
                f'[grpc]\nlisten = "127.0.0.1:{self.grpc_port}"\n'
                + (f'unix_socket = "{self.unix_socket}"\n' if self.unix_socket else "") +
                f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
                f'[stats]\npoll_interval_s = {self.poll_interval_s}\n'
                f'[store]\npath = "{self.store_path}"\n'
                + (f'url = "{self.store_url}"\n' if self.store_url else "")
                + self.extra_config)

    def _command(self) -> list[str]:
        if self.runtime == "ryu":
            return [RYU_PYTHON, "-m", "controller.ryu_launcher", "--ofp-listen-host",
                    "127.0.0.1", "--ofp-tcp-listen-port", str(self.openflow_port),
                    *self.extra_args, "controller.app"]
        return [sys.executable, "-m", "controller.main", "--config", self.config_path,
                *self.extra_args]

    def _make_token(self, role: str, subject: str = "") -> str:
        """A bearer token in the controller's store (the same file it opens)."""
        from controller.csm.model import Role  # pylint: disable=import-outside-toplevel
        from controller.csm.store import CsmStore  # pylint: disable=import-outside-toplevel
        from controller.store import Store  # pylint: disable=import-outside-toplevel
        store = Store(self.store_url or self.store_path)
        try:
            role = Role(role)
            csm = CsmStore(store)
            if role == Role.PROBE:
                return csm.create_token(role, probe_id=subject)[1]
            return csm.create_token(role, subject)[1]
        finally:
            store.close()

    def probe_token(self, probe_id: str) -> str:
        """A token for a probe or agent: its records and tasks are under `probe_id`."""
        return self._make_token("probe", probe_id)

    def channel(self) -> grpc.Channel:
        """A new channel to the controller with the domain manager's token (close it)."""
        return connect(self.grpc_address, self.token)

    def start(self, timeout_s: float = 30.0) -> "ControllerProcess":
        self._write_config()
        if not self.token:
            self.token = self._make_token("domain-manager")
        log = open(self.log_path, "ab")  # pylint: disable=consider-using-with
        self.process = subprocess.Popen(
            self._command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "CEMS_CONFIG": self.config_path, **self.env})
        log.close()
        self._channel = self.channel()
        health = health_pb2_grpc.HealthStub(self._channel)

        def serving():
            if self.process.poll() is not None:
                raise RuntimeError(f"controller exited with {self.process.returncode}:\n"
                                   + self.log_tail())
            with contextlib.suppress(grpc.RpcError):
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return reply.status == health_pb2.HealthCheckResponse.SERVING
            return False

        wait_for(serving, timeout_s, "gRPC health SERVING")
        return self

    def stub(self) -> pb_grpc.StatusServiceStub:
        return pb_grpc.StatusServiceStub(self._channel)

    def status(self) -> pb.GetStatusResponse:
        return self.stub().GetStatus(pb.GetStatusRequest(), timeout=5)

    def stop(self, kill: bool = False) -> None:
        """Stop the process by its own id: SIGTERM (or SIGKILL), then wait."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            with open(self.log_path, encoding="utf-8", errors="replace") as stream:
                return "".join(stream.readlines()[-lines:])
        return ""


NETWORK_LOCK = "/run/lock/cems-mininet.lock"


@contextlib.contextmanager
def exclusive_network(timeout_s: float = 1800.0, lock_path: str = NETWORK_LOCK):
    """Hold the machine-wide lock for an emulated network while the block runs.

    Mininet's names (bridges s1, s2, ..., interfaces s1-eth1, ...) are global on a kernel:
    two networks built at once, by two test runs or a test run and the demo, take each
    other's interfaces ("RTNETLINK answers: File exists") or delete them. Every cems network
    is built under this lock, so the second one waits for the first instead.
    """
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    with open(lock_path, "a+", encoding="ascii") as lock:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another emulated network held {lock_path} for {timeout_s:.0f} s "
                        f"(process {_lock_holder(lock)}); stop it, or remove its switches "
                        "with `mn -c` if that process is gone") from None
                if not told:
                    print(f"waiting for the emulated network of process {_lock_holder(lock)} "
                          f"to end ({lock_path})", file=sys.stderr, flush=True)
                    told = True
                time.sleep(0.5)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            lock.flush()
            fcntl.flock(lock, fcntl.LOCK_UN)


def _lock_holder(lock) -> str:
    lock.seek(0)
    return lock.read().strip() or "unknown"


def build_network(topo, openflow_port):
    """Mininet network of `topo` on userspace-datapath OVS, controlled at 127.0.0.1:port
    (a list of ports: every switch connects to every one of those controllers).

    The caller starts it (start_network(net)) and must stop it (net.stop()), also on failure.
    Host MACs are 00:00:00:00:00:01, ... in host order.
    """
    from mininet.link import TCLink  # pylint: disable=import-outside-toplevel
    from mininet.net import Mininet  # pylint: disable=import-outside-toplevel
    from mininet.node import OVSSwitch, RemoteController  # pylint: disable=import-outside-toplevel

    class ListeningController(RemoteController):
        """Mininet's RemoteController without its check by telnet, which reads the port's
        first bytes as UTF-8 text and raises UnicodeDecodeError when the controller's HELLO
        (with a random transaction id) is not valid UTF-8 (seen in a CI run). Nothing is
        lost: the switches keep trying to connect, and wait_for_topology waits for them."""

        def checkListening(self):
            pass

    net = Mininet(topo=topo, switch=partial(OVSSwitch, datapath="user", protocols="OpenFlow13"),
                  link=TCLink, controller=None, autoSetMacs=True, build=False)
    ports = openflow_port if isinstance(openflow_port, (list, tuple)) else [openflow_port]
    for i, port in enumerate(ports):
        net.addController(f"c{i}", controller=ListeningController, ip="127.0.0.1", port=port)
    net.build()
    return net


SHAPED_QUEUE_PACKETS = 64


def start_network(net, queue_packets: int | None = SHAPED_QUEUE_PACKETS) -> None:
    """net.start(), then a queue of `queue_packets` on every shaped switch port (None:
    Mininet's own, see below).

    Mininet's shaping (an HTB class 5:1 on the port) queues up to txqueuelen (1000) packets.
    The userspace datapath sends to a port through one socket whose send buffer (about 90
    full-size packets) is charged for the packets in that queue: once the queue holds more,
    the switch's forwarding thread blocks on that one port and every other port of the switch
    loses packets as well, so a congested link would also hurt customers who do not cross
    it. A pfifo of 64 packets under the class keeps the block from happening: the port
    drops what does not fit, as a real one does (tc -s qdisc counts the drops).
    """
    net.start()
    if queue_packets is None:
        return
    for switch in net.switches:
        for intf in switch.intfList():
            # TCLink's own HTB (handle 5:); a port whose root cems has already made its
            # egress classes (csm.egress_interfaces, handle 1:) bounds its own queues
            if intf.name == "lo" or "qdisc htb 5:" not in tc_qdiscs(switch, intf.name):
                continue
            out = switch.cmd(f"tc qdisc replace dev {intf.name} parent 5:1 handle 10: pfifo "
                             f"limit {queue_packets}")
            if out.strip() and "qdisc htb 5:" in tc_qdiscs(switch, intf.name):
                raise RuntimeError(f"bounding the queue of {intf.name}: {out.strip()}")


def tc_qdiscs(node, ifname: str) -> str:
    return node.cmd(f"tc qdisc show dev {ifname}")


def udp_flow(client, server, port: int, rate: str, seconds: int, procs: list):
    """A UDP iperf3 flow from Mininet host `client` to `server` at `rate` (iperf3's -b, for
    example "40M") for `seconds`: a one-shot server on `port`, waited for until it listens,
    then the client. Both go into `procs` as they start; returns the client's process."""
    procs.append(server.popen(["iperf3", "-s", "-1", "-p", str(port)]))
    wait_for(lambda: f":{port} " in server.cmd("ss -lun; ss -ltn"), 10,
             f"iperf3 listening on {server.name}:{port}")
    flow = client.popen(["iperf3", "-c", server.IP(), "-p", str(port), "-u", "-b", rate, "-t",
                         str(seconds)], stdout=subprocess.DEVNULL)
    procs.append(flow)
    return flow


def switch_state(switch: str) -> tuple[list[str], list[str]]:
    """(table-0 flows, meters) of an Open vSwitch bridge, sorted and without counters: what
    the customer mapping and the policy engine change, to compare before and after."""
    flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows",
                            switch, "table=0"], capture_output=True, text=True,
                           check=True).stdout
    meters = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", switch],
                            capture_output=True, text=True, check=True).stdout
    return sorted(flows.splitlines()), sorted(line for line in meters.splitlines()
                                              if line.startswith("meter="))


STATUS_RANK = {"degraded": 0, "unknown": 1, "ok": 2}


def worst_statuses(qoe_stub, services=("",), timeout_s: float = 5.0) -> dict[str, str]:
    """customer -> the worst status (degraded, unknown, ok) of its `services` ("" for all)
    over QoeService.ListExperience."""
    from cems.v1 import qoe_pb2  # pylint: disable=import-outside-toplevel
    worst: dict[str, str] = {}
    for service in services:
        reply = qoe_stub.ListExperience(qoe_pb2.ListExperienceRequest(service=service),
                                        timeout=timeout_s)
        for e in reply.experience:
            if STATUS_RANK[e.status] < STATUS_RANK.get(worst.get(e.customer_id), 3):
                worst[e.customer_id] = e.status
    return worst


def wait_for_topology(controller: ControllerProcess, switches: int, links: int,
                      timeout_s: float = 60.0) -> pb.GetStatusResponse:
    """Wait until the controller sees `switches` ready switches and `links` directed links."""
    last = []

    def seen():
        status = controller.status()
        last[:] = [status]
        done = (status.switches_connected == switches == status.switches_ready
                and status.links == links)
        return status if done else None
    try:
        return wait_for(seen, timeout_s, f"{switches} ready switches and {links} directed links")
    except TimeoutError as err:
        raise TimeoutError(f"{err}; controller status: {last[0] if last else 'none'}") from None


def expected_counts(topo) -> tuple[int, int]:
    """(switches, directed inter-switch links) of a Mininet Topo."""
    switches = set(topo.switches())
    links = sum(2 for a, b in topo.links() if a in switches and b in switches)
    return len(switches), links


def window_mean(experience, window_s: float) -> float:
    """The mean score of a ServiceExperience (QoeService) over one of its windows; NaN
    when that window has no score."""
    return next((w.mean for w in experience.windows if w.window_s == window_s),
                float("nan"))


def scores_at_target(qoe_stub, customer: str, services=("voice", "iptv"),
                     window_s: float = 1.0) -> bool:
    """Whether each of a customer's `services` scores at or above its target over the
    shortest window (QoeService.GetExperience): quality back, before the status (10 s)
    says so."""
    from cems.v1 import qoe_pb2  # pylint: disable=import-outside-toplevel
    reply = qoe_stub.GetExperience(qoe_pb2.GetExperienceRequest(customer_id=customer),
                                   timeout=5)
    seen = {e.service: e for e in reply.services if e.service in services}
    if set(seen) != set(services):
        return False
    for e in seen.values():
        if not window_mean(e, window_s) >= e.target:   # NaN: no score in the window
            return False
    return True


def wait_held(predicate, hold_s: float, timeout_s: float, what: str,
              interval_s: float = 0.25) -> float:
    """Wait until predicate has been true for `hold_s` without a break; returns the
    monotonic time it became true (the start of the run that held)."""
    deadline = time.monotonic() + timeout_s
    since = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if predicate():
            since = now if since is None else since
            if now - since >= hold_s:
                return since
        else:
            since = None
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what} to hold for "
                       f"{hold_s:g} s")
