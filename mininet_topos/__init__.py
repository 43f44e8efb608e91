"""Mininet topologies of cems, as data (Topo.build); usable with `mn --custom FILE --topo NAME`.

Each file is self-contained (it imports only Mininet), because `mn --custom` executes it
outside the cems package.
"""

from mininet_topos.access import AccessTopo
from mininet_topos.dumbbell import DumbbellTopo
from mininet_topos.ring import RingTopo

TOPOS = {"access": AccessTopo, "dumbbell": DumbbellTopo, "ring": RingTopo}

__all__ = ["TOPOS", "AccessTopo", "DumbbellTopo", "RingTopo"]
