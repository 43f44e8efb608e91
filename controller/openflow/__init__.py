"""The one place that turns cems' desired flows into OpenFlow messages (core)."""

from controller.openflow.pipeline import (
    COOKIE_BASE, COOKIE_BASE_MASK, Component, FlowEntry, PRIORITY, TABLES, apply_diff,
    component_of, cookie_for, diff_flows)
from controller.openflow.messages import (
    build_flow_add, build_flow_delete, build_flow_stats_request, entry_from_stats, format_actions,
    format_match)

__all__ = [
    "COOKIE_BASE", "COOKIE_BASE_MASK", "Component", "FlowEntry", "PRIORITY", "TABLES",
    "apply_diff", "component_of", "cookie_for", "diff_flows", "build_flow_add", "build_flow_delete",
    "build_flow_stats_request", "entry_from_stats", "format_actions", "format_match",
]
