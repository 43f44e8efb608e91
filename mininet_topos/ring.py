"""ring: switches in a ring, one host on each, for failover (Mininet topology, data only).

    h1   h2   h3   h4
    |    |    |    |
    s1 - s2 - s3 - s4
    |______________|

Use: mn --custom mininet_topos/ring.py --topo ring,n=4 --switch ovs,datapath=user \\
        --controller remote,ip=127.0.0.1,port=6653
"""

from mininet.link import TCLink
from mininet.topo import Topo

LINK = {"cls": TCLink, "txo": False, "rxo": True}  # txo=False: see access.py


class RingTopo(Topo):
    def build(self, n=4, link_mbps=100):  # pylint: disable=arguments-differ
        if n < 3:
            raise ValueError(f"a ring needs at least 3 switches, got n={n}")
        switches = [self.addSwitch(f"s{i}") for i in range(1, n + 1)]
        for i, switch in enumerate(switches, start=1):
            self.addLink(self.addHost(f"h{i}"), switch, bw=link_mbps, **LINK)
        for i, switch in enumerate(switches):
            self.addLink(switch, switches[(i + 1) % n], bw=link_mbps, **LINK)


topos = {"ring": RingTopo}
