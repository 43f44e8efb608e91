"""Monitoring: probe records and what they say per customer and service, active tests, and
what traffic is mirrored to the probes (cores; the rules' persistence is injected)."""
