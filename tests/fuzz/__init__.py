"""Fuzz targets: `make fuzz` runs the full one; tests/unit/test_fuzz_short.py a short one."""
