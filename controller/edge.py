"""Linux traffic control on interfaces the controller can reach: egress HTB classes (shell).

apply_egress() makes an interface's root qdisc exactly an EgressPlan (controller/csm/queues)
and does nothing when it already is: it reads the classes and filters back and compares.
pyroute2 talks netlink; nothing here decides anything.
"""

import ctypes
import os
import threading

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from controller.csm.queues import EgressPlan, TrafficControl

ROOT = 0x10000      # handle 1:
PARENT = 0x10001    # class 1:1, the link
# Each class's own queue is short: Open vSwitch's userspace datapath sends through a packet
# socket whose send buffer holds the packets the qdisc has queued; if the classes' queues
# together outgrow it, the socket refuses packets of every class alike and Gold loses its
# guarantee. 25 packets per class keep the three queues under the default 212 kB buffer, so
# it is HTB that drops, and it drops the class that exceeds its share.
LEAF_LIMIT_PACKETS = 25


class EdgeError(RuntimeError):
    """An interface could not be configured; the message names it and says why."""


def _burst_bytes(rate_bps: int) -> int:
    return max(15000, rate_bps // 8 // 100)  # 10 ms at the rate, at least ten packets


def _current(ip: IPRoute, index: int) -> tuple | None:
    """(link rate, {minor: (rate, ceil, prio)}, [classes filters lead to], [classes with a
    leaf queue]) of our HTB, or None.

    Filters are compared by the classes they select: their TOS keys follow from the class
    (EF for Gold, AF41 for Silver) and pyroute2 0.9 does not decode u32 keys reliably.
    """
    qdiscs = [q for q in ip.get_qdiscs(index) if q["parent"] == 0xFFFFFFFF]
    if not qdiscs or qdiscs[0].get_attr("TCA_KIND") != "htb" or qdiscs[0]["handle"] != ROOT:
        return None
    classes = {}
    link = None
    for cls in ip.get_classes(index):
        parms = cls.get_nested("TCA_OPTIONS", "TCA_HTB_PARMS")
        if not parms:
            continue
        rate, ceil = parms["rate"] * 8, parms["ceil"] * 8
        if cls["handle"] == PARENT:
            link = rate
        else:
            classes[cls["handle"] & 0xFFFF] = (rate, ceil, parms["prio"])
    filters = sorted(flt.get_nested("TCA_OPTIONS", "TCA_U32_CLASSID") & 0xFFFF
                     for flt in ip.get_filters(index, parent=ROOT)
                     if flt.get_nested("TCA_OPTIONS", "TCA_U32_CLASSID"))
    leaves = sorted(q["parent"] & 0xFFFF for q in ip.get_qdiscs(index)
                    if q.get_attr("TCA_KIND") == "pfifo" and q["parent"] >> 16 == ROOT >> 16)
    return link, classes, filters, leaves


def _wanted(plan: EgressPlan) -> tuple:
    # HTB stores rates in bytes/s: compare at that resolution.
    return (plan.link_bps // 8 * 8,
            {q.minor: (q.rate_bps // 8 * 8, q.ceil_bps // 8 * 8, q.prio) for q in plan.queues},
            sorted(q.minor for q in plan.queues if q.dscp is not None),
            sorted(q.minor for q in plan.queues))


NETNS_DIR = "/var/run/netns"
_CLONE_NEWNET = 0x40000000


def _in_netns(netns: str, work):
    """Run work() in a thread that has entered network namespace `netns` (setns(2) moves
    only the calling thread; the thread ends with the work). pyroute2's own netns support
    forks the process, which a controller with gRPC and OpenFlow threads must not do."""
    result: dict = {}

    def run():
        try:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
        except OSError as err:
            result["error"] = EdgeError(f"network namespace {netns} cannot be opened: {err}")
            return
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
                result["error"] = EdgeError(f"cannot enter network namespace {netns}: "
                                            f"{os.strerror(ctypes.get_errno())}")
                return
        finally:
            os.close(fd)
        try:
            result["value"] = work()
        except BaseException as err:  # pylint: disable=broad-except
            result["error"] = err

    thread = threading.Thread(target=run, name=f"cems-netns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def apply_traffic_control(wanted: TrafficControl) -> bool:
    """Make the interface's root qdisc the plan, inside its network namespace if it has one;
    returns True if anything was changed."""
    if wanted.netns is not None:
        return _in_netns(wanted.netns, lambda: apply_egress(wanted.plan))
    return apply_egress(wanted.plan)


def apply_edge_shaping(netns: str | None, ifname: str, rate_bps: int) -> bool:
    """Shape everything leaving `ifname` (in `netns`, a name under /var/run/netns) to
    `rate_bps`, so that a customer's own traffic meets its SLS meter smoothly instead of
    being dropped by it: an egress plan with the link class alone. Returns True if anything
    was changed."""
    return apply_traffic_control(TrafficControl(netns, EgressPlan(ifname, rate_bps, ())))


def _clear_root(ip, index: int) -> None:
    """Remove whatever root qdisc an interface has."""
    for qdisc in ip.get_qdiscs(index):
        kind = qdisc.get_attr("TCA_KIND")
        if qdisc["parent"] == 0xFFFFFFFF and kind not in ("noqueue", None):
            ip.tc("del", kind, index, qdisc["handle"])


def apply_egress(plan: EgressPlan) -> bool:
    """Make `plan.ifname`'s root qdisc the plan (an HTB whose class 1:1 is the link, with the
    plan's class queues under it, if any); returns True if anything was changed."""
    with IPRoute() as ip:
        found = ip.link_lookup(ifname=plan.ifname)
        if not found:
            raise EdgeError(f"interface {plan.ifname} does not exist in this network namespace")
        index = found[0]
        if _current(ip, index) == _wanted(plan):
            return False
        # Unclassified traffic goes to the class without a DSCP; with no class queues, the
        # link class itself is the leaf.
        default = next((q.minor for q in plan.queues if q.dscp is None), PARENT & 0xFFFF)
        try:
            _clear_root(ip, index)
            ip.tc("add", "htb", index, ROOT, default=default)
            ip.tc("add-class", "htb", index, PARENT, parent=ROOT, rate=plan.link_bps // 8,
                  ceil=plan.link_bps // 8, burst=_burst_bytes(plan.link_bps),
                  cburst=_burst_bytes(plan.link_bps))
            for queue in plan.queues:
                ip.tc("add-class", "htb", index, ROOT | queue.minor, parent=PARENT,
                      rate=queue.rate_bps // 8, ceil=queue.ceil_bps // 8, prio=queue.prio,
                      burst=_burst_bytes(queue.ceil_bps), cburst=_burst_bytes(queue.ceil_bps))
            for queue in plan.queues:
                ip.tc("add", "pfifo", index, (0x100 + queue.minor) << 16,
                      parent=ROOT | queue.minor, limit=LEAF_LIMIT_PACKETS)
            for priority, queue in enumerate(q for q in plan.queues if q.dscp is not None):
                ip.tc("add-filter", "u32", index, parent=ROOT, prio=priority + 1,
                      protocol=0x0800, target=ROOT | queue.minor,
                      keys=[f"0x00{queue.dscp << 2:02x}0000/0x00fc0000+0"])
        except NetlinkError as err:
            raise EdgeError(f"interface {plan.ifname}: tc refused the egress classes: {err}") \
                from None
        return True
