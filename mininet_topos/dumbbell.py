"""dumbbell: customers on both sides of one bottleneck link (Mininet topology, data only).

    l1 ..ln -- s1 ==bottleneck== s2 -- r1 .. rn

Use: mn --custom mininet_topos/dumbbell.py --topo dumbbell,n=2,bottleneck_mbps=10 \\
        --switch ovs,datapath=user --controller remote,ip=127.0.0.1,port=6653
"""

from mininet.link import TCLink
from mininet.topo import Topo

LINK = {"cls": TCLink, "txo": False, "rxo": True}  # txo=False: see access.py


class DumbbellTopo(Topo):
    def build(self, n=2, bottleneck_mbps=10, edge_mbps=100):  # pylint: disable=arguments-differ
        left, right = self.addSwitch("s1"), self.addSwitch("s2")
        self.addLink(left, right, bw=bottleneck_mbps, **LINK)
        for i in range(1, n + 1):
            self.addLink(self.addHost(f"l{i}"), left, bw=edge_mbps, **LINK)
            self.addLink(self.addHost(f"r{i}"), right, bw=edge_mbps, **LINK)


topos = {"dumbbell": DumbbellTopo}
