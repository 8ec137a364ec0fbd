"""The Prometheus exposition both HTTP services serve at /metrics: with several worker processes
(``PROMETHEUS_MULTIPROC_DIR`` set by the launcher) it aggregates every worker's files, else this process's own."""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]


def exposition() -> bytes:
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
