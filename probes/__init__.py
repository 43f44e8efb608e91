"""cems probes: passive KPIs from mirrored traffic, active STAMP tests, test traffic."""
