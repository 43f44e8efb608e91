"""The one door to the Ryu API: os-ken by default, Ryu 4.34 when os-ken is absent (shell).

Everything in cems that needs the OpenFlow framework imports it from here, so the same
application runs on os-ken (native threads) and on Ryu (eventlet). Set CEMS_OPENFLOW_RUNTIME
to "ryu" or "os_ken" to choose explicitly when both are installed.
"""

import importlib
import os

_WANTED = os.environ.get("CEMS_OPENFLOW_RUNTIME", "")
if _WANTED not in ("", "os_ken", "ryu"):
    raise ImportError(
        f"CEMS_OPENFLOW_RUNTIME={_WANTED!r}: allowed values are 'os_ken' and 'ryu'")


def _pick_runtime():
    candidates = [_WANTED] if _WANTED else ["os_ken", "ryu"]
    errors = []
    for name in candidates:
        try:
            importlib.import_module(f"{name}.ofproto.ofproto_v1_3_parser")
            return name
        except ImportError as err:
            errors.append(f"{name}: {err}")
    raise ImportError("no OpenFlow framework importable (" + "; ".join(errors) + ")")


RUNTIME = _pick_runtime()


def _mod(path):
    return importlib.import_module(f"{RUNTIME}.{path}")


app_manager = _mod("base.app_manager")
cfg = _mod("cfg")
hub = _mod("lib.hub")
ofp_event = _mod("controller.ofp_event")
event = _mod("controller.event")
ofproto_v1_3 = _mod("ofproto.ofproto_v1_3")
ofproto_v1_3_parser = _mod("ofproto.ofproto_v1_3_parser")
packet = _mod("lib.packet.packet")
ethernet = _mod("lib.packet.ethernet")
arp = _mod("lib.packet.arp")
ipv4 = _mod("lib.packet.ipv4")
lldp = _mod("lib.packet.lldp")
ether_types = _mod("lib.packet.ether_types")
_handler = _mod("controller.handler")
set_ev_cls = _handler.set_ev_cls
CONFIG_DISPATCHER = _handler.CONFIG_DISPATCHER
MAIN_DISPATCHER = _handler.MAIN_DISPATCHER
DEAD_DISPATCHER = _handler.DEAD_DISPATCHER
HANDSHAKE_DISPATCHER = _handler.HANDSHAKE_DISPATCHER

__all__ = [
    "RUNTIME", "app_manager", "cfg", "hub", "ofp_event", "event", "ofproto_v1_3",
    "ofproto_v1_3_parser", "packet", "ethernet", "arp", "ipv4", "lldp", "ether_types",
    "set_ev_cls", "CONFIG_DISPATCHER", "MAIN_DISPATCHER", "DEAD_DISPATCHER",
    "HANDSHAKE_DISPATCHER",
]
