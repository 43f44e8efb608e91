"""access: an ISP access network for cems (Mininet topology, data only).

    iptv  voice  web                 service hosts on the head-end switch s1
       \\   |   /
          s1          head-end / server switch
          |
          s2 --- probe (port 10)    core switch; port 10 is reserved for mirroring to the probe
         /  \\
       s3 -- s4       aggregation, meshed with each other and the core
       | \\  / |
       |  \\/  |      every access switch has redundant uplinks to both aggregation switches
       |  /\\  |
       s5    s6       access switches
   c1*, c2*  c3*, c4* customers: each has a phone, a set-top box and a PC

Capacities (Mbit/s): service hosts 1000, s1-s2 1000, core-aggregation 1000,
aggregation-aggregation 1000, aggregation-access 100, customer lines 20.
Use: mn --custom mininet_topos/access.py --topo access --switch ovs,datapath=user \\
        --controller remote,ip=127.0.0.1,port=6653
"""

from mininet.link import TCLink
from mininet.topo import Topo

# Interfaces on a userspace-datapath bridge need TX checksum offload off (txo=False), or
# TCP and UDP through the switch fail silently.
LINK = {"cls": TCLink, "txo": False, "rxo": True}
PROBE_SWITCH, PROBE_PORT = "s2", 10
SERVICE_HOSTS = ("iptv", "voice", "web")
CUSTOMER_DEVICES = ("phone", "stb", "pc")


class AccessTopo(Topo):
    """customers_per_access: customers on each of the two access switches (default 2);
    agg_mbps: the aggregation-access links (default 100)."""

    def build(self, customers_per_access=2, line_mbps=20, agg_mbps=100):  # pylint: disable=arguments-differ
        s1, s2, s3, s4, s5, s6 = (self.addSwitch(f"s{i}") for i in range(1, 7))
        for name in SERVICE_HOSTS:
            self.addLink(self.addHost(name), s1, bw=1000, **LINK)
        self.addLink(s1, s2, bw=1000, **LINK)
        self.addLink(self.addHost("probe"), s2, port2=PROBE_PORT, bw=1000, **LINK)
        for agg in (s3, s4):
            self.addLink(s2, agg, bw=1000, **LINK)
        self.addLink(s3, s4, bw=1000, **LINK)
        for access in (s5, s6):
            for agg in (s3, s4):
                self.addLink(agg, access, bw=agg_mbps, **LINK)
        number = 0
        for access in (s5, s6):
            for _ in range(customers_per_access):
                number += 1
                for device in CUSTOMER_DEVICES:
                    host = self.addHost(f"c{number}{device}")
                    self.addLink(host, access, bw=line_mbps, **LINK)


topos = {"access": AccessTopo}
