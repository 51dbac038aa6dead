"""Observability: traces across hops, drift monitors, dashboards and the live view."""
