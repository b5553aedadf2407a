"""The one driver table: used by selection, loading, ``ofelia plugins``, errors and docs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Concern:
    """A swappable concern and how its driver is chosen."""

    key: str
    title: str
    namespace: str
    baseline: str
    optimized: str
    optimized_distribution: str
    optimized_path: str
    flag: str
    override: str
    factory_hook: str


CONCERNS: tuple[Concern, ...] = (
    Concern(
        key="docker-client",
        title="Docker client",
        namespace="ofelia.docker_client",
        baseline="baseline",
        optimized="pooled",
        optimized_distribution="ofelia-docker-pooled",
        optimized_path="plugins/docker-pooled",
        flag="OFELIA_USE_OPTIMIZED_DOCKER_CLIENT",
        override="OFELIA_DOCKER_CLIENT",
        factory_hook="ofelia_make_docker_client",
    ),
    Concern(
        key="token-manager",
        title="token manager",
        namespace="ofelia.token_manager",
        baseline="baseline",
        optimized="heap",
        optimized_distribution="ofelia-tokens-heap",
        optimized_path="plugins/tokens-heap",
        flag="OFELIA_USE_OPTIMIZED_TOKEN_MANAGER",
        override="OFELIA_TOKEN_MANAGER",
        factory_hook="ofelia_make_token_manager",
    ),
    Concern(
        key="buffer-pool",
        title="buffer pool",
        namespace="ofelia.buffer_pool",
        baseline="baseline",
        optimized="tiered",
        optimized_distribution="ofelia-buffers-tiered",
        optimized_path="plugins/buffers-tiered",
        flag="OFELIA_USE_ENHANCED_BUFFER_POOL",
        override="OFELIA_BUFFER_POOL",
        factory_hook="ofelia_make_buffer_pool",
    ),
    Concern(
        key="metrics",
        title="metrics",
        namespace="ofelia.metrics",
        baseline="noop",
        optimized="performance",
        optimized_distribution="ofelia-metrics-perf",
        optimized_path="plugins/metrics-perf",
        flag="OFELIA_ENABLE_PERFORMANCE_METRICS",
        override="OFELIA_METRICS",
        factory_hook="ofelia_make_metrics_recorder",
    ),
)

BY_KEY: dict[str, Concern] = {c.key: c for c in CONCERNS}
