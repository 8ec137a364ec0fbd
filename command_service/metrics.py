"""Prometheus metrics of the command service (served on GET /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_LATENCY = Histogram(
    "evently_command_request_duration_seconds", "HTTP request latency", ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
HOLDS = Counter("evently_holds_total", "Holds created", ["kind"])
HOLDS_ENDED = Counter("evently_holds_ended_total", "Holds that ended without an order", ["reason"])
ORDERS = Counter("evently_orders_total", "Orders placed (free ones confirmed, paid ones pending payment)", ["kind"])
PAYMENTS = Counter("evently_payments_total", "Payment outcomes applied to orders", ["outcome"])
TICKETS = Counter("evently_tickets_total", "Tickets issued and voided", ["what"])
CHECKINS = Counter("evently_checkins_total", "Check-in attempts, by result", ["result"])
REFUNDS = Counter("evently_refunds_total", "Refunds settled, by final status", ["status"])
ORDER_CANCELLATIONS = Counter("evently_order_cancellations_total", "Orders cancelled", ["reason"])
WAITLIST = Counter("evently_waitlist_total", "Waitlist transitions", ["what"])
REJECTIONS = Counter("evently_rejections_total", "Requests refused, by error code", ["code"])
LOCK_CONTENTION = Counter(
    "evently_seat_lock_contention_total",
    "Seated hold attempts that found a seat taken: stage=redis (lock script) or postgres (arbiter)", ["stage"])
