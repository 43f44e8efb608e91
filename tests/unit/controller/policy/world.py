"""A small access network for policy tests, as a Snapshot.

Switch 1 holds the servers (voice server V, bulk server B); aggregation switches 2 and 3;
access switch 4 with customer G's phone and customer Z's PC. Traffic from the servers goes
1 -> 2 -> 4; the other path 1 -> 3 -> 4 is idle. The link 2:2->4 (30 Mbit/s) is congested by
Z's bulk download, and G's voice across it is degraded.
"""

import dataclasses

from controller.monitor.rootcause import link_name
from controller.policy.model import (Contract, Degradation, Element, PairTraffic, Snapshot,
                                     Suspect)

V, B, G_PHONE, Z_PC = "00:00:00:00:00:0a", "00:00:00:00:00:0b", "00:00:00:00:00:01", \
    "00:00:00:00:00:02"
L12, L13, L24, L34 = link_name(1, 1, 2), link_name(1, 2, 3), link_name(2, 2, 4), \
    link_name(3, 2, 4)
LINKS = {(1, 2): (1, L12), (1, 3): (2, L13), (2, 4): (2, L24), (3, 4): (2, L34)}
HOSTS = {V: (1, 10), B: (1, 11), G_PHONE: (4, 5), Z_PC: (4, 6)}


def contract(customer, service_class="gold", sls=10e6, minimum=1e6, allowed=None, mac=""):
    return Contract(customer, service_class, int(sls), int(minimum),
                    tuple(allowed or (service_class,)), 4, 0x10000 + len(customer), (mac,))


def snapshot(now=1000.0, bulk_bps=32.9e6, voice_class="gold", allowed=None, classes=False,
             z_minimum=2e6, degraded=True, voice_score=3.2, alt_load=1e6, alt_capacity=30e6,
             **changes):
    voice = PairTraffic(V, G_PHONE, "g", "voice", voice_class, 0.1e6, (1, 2, 4), (L12, L24))
    bulk = PairTraffic(B, Z_PC, "z", "bulk", "bronze", bulk_bps, (1, 2, 4), (L12, L24))
    load = voice.rate_bps + bulk.rate_bps
    elements = {
        L12: Element(L12, 1, 1, 1e9, load),
        L24: Element(L24, 2, 2, 30e6, load, 120.0 if load > 30e6 else 0.0, has_classes=classes),
        L13: Element(L13, 1, 2, 1e9, alt_load),
        L34: Element(L34, 3, 2, alt_capacity, alt_load),
    }
    contracts = {"g": contract("g", voice_class, allowed=allowed, mac=G_PHONE),
                 "z": contract("z", "bronze", 40e6, z_minimum, mac=Z_PC)}
    trouble = (Degradation("g", "voice", voice_class, now - 10, voice_score, 4.03),) \
        if degraded else ()
    suspects = (Suspect(L24, 0.9, ("g",)),) if degraded else ()
    snap = Snapshot(now, elements, (voice, bulk), contracts, trouble, suspects,
                    {("g", "voice"): voice_score}, LINKS, HOSTS)
    return dataclasses.replace(snap, **changes)


def with_video(snap, rate=4e6):
    """The snapshot with G's adaptive video from B on the same path as its voice, the
    elements it crosses loaded with it."""
    video = PairTraffic(B, G_PHONE, "g", "video", "gold", rate, (1, 2, 4), (L12, L24))
    elements = dict(snap.elements)
    for name in video.elements:
        elements[name] = dataclasses.replace(elements[name],
                                             load_bps=elements[name].load_bps + rate)
    return dataclasses.replace(snap, pairs=snap.pairs + (video,), elements=elements)
