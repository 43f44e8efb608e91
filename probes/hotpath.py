"""Which passive-probe hot path runs: the compiled one (probes/_fast.pyx, built by
scripts/setup.sh) or the pure-Python reference (probes.decode, probes.flows) (shell).

`new_table()` gives the compiled FastFlowTable when the extension imports, else the Python
FlowTable; both produce the same records (tests/unit/probes/test_fast_differential.py),
except that only the compiled one runs nDPI and names each flow's application.
CEMS_PROBE_HOTPATH=python forces the reference (to compare, or to rule the extension out).
HOTPATH and HOTPATH_REASON say which runs and why, for `cems-probe --version` and health.
"""

import os

from probes.flows import FlowTable

_WANTED = os.environ.get("CEMS_PROBE_HOTPATH", "")
if _WANTED not in ("", "compiled", "python"):
    raise ImportError(f"CEMS_PROBE_HOTPATH={_WANTED!r}: allowed values are 'compiled' and "
                      "'python'")

fast = None
if _WANTED == "python":
    HOTPATH, HOTPATH_REASON = "python", "CEMS_PROBE_HOTPATH=python"
else:
    try:
        from probes import _fast as fast  # pylint: disable=no-name-in-module
        HOTPATH, HOTPATH_REASON = "compiled", "probes/_fast (Cython)"
    except ImportError as err:
        if _WANTED == "compiled":
            raise
        HOTPATH = "python"
        HOTPATH_REASON = (f"compiled hot path not built ({err}); run scripts/setup.sh "
                          "(Cython, build-essential, python3-dev)")


def new_table(max_flows: int = 100_000, idle_timeout_s: float = 60.0, ndpi: bool = True):
    """A flow table on the hot path in use; on the compiled one, with nDPI unless `ndpi` is
    False (the Python path has no nDPI: its records name no application)."""
    if fast is not None:
        return fast.FastFlowTable(max_flows=max_flows, idle_timeout_s=idle_timeout_s,
                                  ndpi=ndpi)
    return FlowTable(max_flows=max_flows, idle_timeout_s=idle_timeout_s)


def describe() -> str:
    ndpi = f", nDPI {fast.ndpi_version()}" if fast is not None else ", no nDPI"
    return f"hot path: {HOTPATH} ({HOTPATH_REASON}{ndpi})"
