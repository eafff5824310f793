"""The agent's counters (``http.health.status_handler`` shows them on /metrics)."""

from __future__ import annotations

from cloudseed.http.metrics import Registry


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = registry = Registry()
        self.requests = registry.counter(
            "cloudseed_agent_requests_total",
            "Guest requests by the router or network they came through.",
            ("scope", "scope_id"),
        )
        self.responses = registry.counter(
            "cloudseed_agent_responses_total", "Responses by HTTP status.", ("status",)
        )
        self.resolutions = registry.counter(
            "cloudseed_agent_resolutions_total",
            "Guest requests answered from a prepared answer (hit) or resolved from the "
            "address map (miss); neither reads the store.",
            ("result",),
        )
        self.upstream_seconds = registry.histogram(
            "cloudseed_agent_upstream_seconds", "Time for the metadata API to answer."
        )
        self.upstream_errors = registry.counter(
            "cloudseed_agent_upstream_errors_total",
            "Requests the metadata API did not answer (unavailable, timeout).",
            ("kind",),
        )
        self.rate_limited = registry.counter(
            "cloudseed_agent_rate_limited_total", "Requests refused with 429 by the agent."
        )
        self.map_ports = registry.gauge(
            "cloudseed_agent_map_ports", "Ports held in the address map."
        )
        self.feed_revision = registry.gauge(
            "cloudseed_agent_feed_revision", "Store revision the address map reflects."
        )
