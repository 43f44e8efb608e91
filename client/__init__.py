"""How a client connects to a cems controller (cemsctl, probes, agents, the lab harness)."""
