"""Prometheus metrics of the query service (own module: ``python -m query_service.app`` also imports
``query_service.app`` for uvicorn's workers, and a metric must be registered once)."""
from prometheus_client import Histogram

LATENCY = Histogram("evently_query_request_seconds", "query-service request latency", ["method", "route", "status"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
