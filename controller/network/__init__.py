"""The network as cems sees it: topology, paths, forwarding and rates (core)."""
