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


# name -> (module under the framework, attribute of it or None for the module itself).
# Loaded on first use (PEP 562), so that a core that needs only the message or packet
# library does not load the application manager and its event machinery with it.
_NAMES = {
    "app_manager": ("base.app_manager", None), "cfg": ("cfg", None), "hub": ("lib.hub", None),
    "ofp_event": ("controller.ofp_event", None), "event": ("controller.event", None),
    "ofproto_v1_3": ("ofproto.ofproto_v1_3", None),
    "ofproto_v1_3_parser": ("ofproto.ofproto_v1_3_parser", None),
    "packet": ("lib.packet.packet", None), "ethernet": ("lib.packet.ethernet", None),
    "arp": ("lib.packet.arp", None), "ipv4": ("lib.packet.ipv4", None),
    "lldp": ("lib.packet.lldp", None), "ether_types": ("lib.packet.ether_types", None),
    "set_ev_cls": ("controller.handler", "set_ev_cls"),
    "CONFIG_DISPATCHER": ("controller.handler", "CONFIG_DISPATCHER"),
    "MAIN_DISPATCHER": ("controller.handler", "MAIN_DISPATCHER"),
    "DEAD_DISPATCHER": ("controller.handler", "DEAD_DISPATCHER"),
    "HANDSHAKE_DISPATCHER": ("controller.handler", "HANDSHAKE_DISPATCHER"),
}


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    path, attribute = _NAMES[name]
    if name == "cfg":
        # The OpenFlow listener's options (--ofp-listen-host, ...) are registered with the
        # config by the framework's controller module, which must be imported through its
        # application manager (importing it first is circular): do that before the config.
        importlib.import_module(f"{RUNTIME}.base.app_manager")
    value = importlib.import_module(f"{RUNTIME}.{path}")
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


__all__ = ["RUNTIME", *_NAMES]
