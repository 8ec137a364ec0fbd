"""Runtime settings, read from ``EVENTLY_*`` environment variables (pydantic-settings).

The defaults point at the local stack that ``make up`` starts. :data:`LOCAL_PORTS` is the one table of its
ports (infra/config.py builds the stack from it; infra/README.md lists them); docker-compose.yml overrides the
URLs with its service host names.

The JWT secret has no default: :func:`require_secure_secret` makes a service refuse to start when it is unset,
shorter than 32 bytes or a value published in this repository, unless ``EVENTLY_ENV=dev`` (the local stack sets
that, and hands every process a random secret it generates once per stack: infra/config.py).
"""
from __future__ import annotations

import sys
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_HOST = "127.0.0.1"
LOCAL_PORTS = {"postgres": 15432, "redis": 16379, "kafka": 19092, "kafka-controller": 19093, "connect": 18083,
               "ferretdb": 27027, "ferretdb-debug": 18088, "command": 8001, "query": 8002, "projector": 8003,
               "devpay": 8004, "smtp": 1025, "mailpit": 8025, "notifier": 8005}
LOCAL_PG = ("evently", "evently", "evently")  # user, password, database of the local stack
# Secrets that were published in this repository's history: never accepted outside EVENTLY_ENV=dev.
PUBLISHED_SECRETS = frozenset({"dev-only-secret-change-me-0123456789abcdef"})
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTLY_", extra="ignore")

    # Backing services
    database_url: str = "postgresql://{0}:{1}@{h}:{p}/{2}".format(*LOCAL_PG, h=LOCAL_HOST, p=LOCAL_PORTS["postgres"])
    redis_url: str = f"redis://{LOCAL_HOST}:{LOCAL_PORTS['redis']}/0"
    kafka_bootstrap: str = f"{LOCAL_HOST}:{LOCAL_PORTS['kafka']}"
    mongo_url: str = f"mongodb://{LOCAL_HOST}:{LOCAL_PORTS['ferretdb']}/"
    mongo_db: str = "evently"

    # "dev" only on a developer's machine (the local stack): allows a weak or published JWT secret
    env: Literal["dev", "production"] = "production"
    # Auth (CONTRACT: HS256 signed with EVENTLY_JWT_SECRET); no default (require_secure_secret)
    jwt_secret: str = ""
    jwt_ttl_seconds: int = 3600
    refresh_ttl_seconds: int = 30 * 24 * 3600  # a refresh token works once, within this long

    # Rate limits (common/ratelimit.py; "<n>/<period>" in the ``limits`` library's notation)
    rate_limits_enabled: bool = True
    rate_key_prefix: str = "evently:rl"  # Redis key prefix of the counters
    rate_password_per_address: str = "30/minute"  # register + token, per client address
    rate_password_per_account: str = "10/minute"  # register + token, per email
    rate_writes_per_account: str = "300/minute"   # every other POST/PATCH/DELETE, per signed-in user
    sse_max_per_address: int = 20                 # concurrent SSE streams per client address, per worker process
    sse_max_per_process: int = 10_000             # concurrent SSE streams per worker process

    # HTTP listeners
    command_host: str = LOCAL_HOST
    command_port: int = LOCAL_PORTS["command"]
    query_host: str = LOCAL_HOST
    query_port: int = LOCAL_PORTS["query"]
    projector_host: str = LOCAL_HOST
    projector_metrics_port: int = LOCAL_PORTS["projector"]

    # Kafka topics written by the Debezium outbox router: evently.<aggregatetype>
    topic_prefix: str = "evently"
    projector_group: str = "evently-projectors"
    projector_batch_size: int = 2000      # max messages the projector applies per batch
    # A rebuild persists the outbox-id claims of each partition's newest messages, this many seconds behind the
    # newest: Debezium re-sends at most what it sent since its last offset flush (1 s here, timeout 5 s).
    projector_claim_window_s: int = Field(default=60, ge=10)
    feed_maxlen: int = 10_000             # entries kept per live seat feed stream (XADD MAXLEN ~)

    log_level: str = "INFO"

    # Command service (see command_service/README.md)
    command_workers: int = 2              # N processes sharing the port with SO_REUSEPORT (2 = one per core here)
    hold_ttl_seconds: float = 600.0       # hold lifetime = Redis seat-lock TTL
    waitlist_offer_ttl_seconds: float = 600.0  # how long a waitlist offer (a hold for that buyer alone) lasts
    sweep_interval_seconds: float = 0.5   # how often the hold sweeper looks for expired holds
    max_body_bytes: int = 1_048_576       # larger request bodies get 413
    pg_pool_size: int = 16                # PostgreSQL connections per process
    redis_pool_size: int = 256            # Redis connections per process (a flash sale has hundreds in flight)
    event_cache_seconds: float = 1.0      # how long an on-sale event's layout/status is cached in-process
    outbox_retention_seconds: int = Field(default=3600, ge=60)  # outbox rows older than this are purged

    # Query service (see query_service/README.md)
    query_workers: int = 2                # uvicorn worker processes (each has its own shared stream readers)
    query_uvloop: bool = True             # uvloop + httptools under uvicorn
    query_cache_seconds: float = 0.5      # public GET responses are micro-cached this long per process
    query_cache_stale_seconds: float = 5.0  # ...then served stale (at most this long) while one request refreshes
    query_cache_max_bytes: int = 64 * 1024 * 1024  # rendered bodies the micro-cache keeps per worker process
    query_mongo_pool_size: int = 50
    query_redis_pool_size: int = 2000     # stream readers hold one connection each while blocked in XREAD
    query_gc_threshold: int = 50_000      # allocations between young GC collections (default 700; see app.py)
    sse_queue_size: int = 256             # frames buffered per SSE client; a client that falls further behind is dropped
    sse_ping_seconds: float = 10.0        # heartbeat comment interval (CONTRACT: at most 15 s)
    sse_send_timeout_seconds: float = 10.0  # a client that does not take a frame for this long is disconnected

    # Payments (CONTRACT v2 "Orders, payments and refunds"; issue 13)
    payment_provider: Literal["devpay", "stripe"] = "devpay"
    payment_window_seconds: float = 600.0  # a pending_payment order keeps its seats this long
    # after the window (+ this grace) the sweeper asks the provider about a payment it heard nothing of
    payment_grace_seconds: float = 120.0
    # where the provider's hosted page sends the buyer back ({order_id} filled in): the query service's page
    payment_return_url: str = f"http://{LOCAL_HOST}:{LOCAL_PORTS['query']}/?order={{order_id}}"
    # Email (issue 15): the SMTP server the notifier sends through; Mailpit in the local stack (its API: mailpit_url)
    smtp_url: str = f"smtp://{LOCAL_HOST}:{LOCAL_PORTS['smtp']}"
    mailpit_url: str = f"http://{LOCAL_HOST}:{LOCAL_PORTS['mailpit']}"
    mail_from: str = "Evently <tickets@evently.localhost>"
    reminder_hours: float = Field(24.0, gt=0, le=24 * 365)  # ticket holders are reminded this long before the start
    notifier_group: str = "evently-notifier"   # the notifier's Kafka consumer group
    notifier_metrics_port: int = LOCAL_PORTS["notifier"]
    notifier_senders: int = Field(8, ge=1, le=64)  # SMTP connections (mails in flight) per notifier process
    notifier_lease_seconds: float = Field(60.0, ge=5)  # a claimed mail not marked sent by then is tried again
    notifier_retry_max_seconds: float = Field(60.0, ge=1)  # the longest pause between two attempts of one mail
    notifier_max_attempts: int = Field(50, ge=1)  # then the mail is recorded failed (a 5xx reply fails it at once)
    notifier_max_age_seconds: float = Field(86400.0, gt=0)  # an older cause fills the inbox but is not mailed
    # where people reach the query service's pages (links in mails)
    query_public_url: str = f"http://{LOCAL_HOST}:{LOCAL_PORTS['query']}"
    # Tickets (issue 14): the secrets that encrypt each event's signing key at rest, comma-separated; the first
    # encrypts, all decrypt (rotation: command_service/adapters/ticket_keys.py). The local stack makes one.
    ticket_key_secrets: str = ""
    # where browsers reach the command service (the seat-map page holds and checks out there)
    command_public_url: str = f"http://{LOCAL_HOST}:{LOCAL_PORTS['command']}"
    # browser origins that may call the command service (the seat-map page is served by the query service)
    cors_origins: list[str] = [f"http://{LOCAL_HOST}:{LOCAL_PORTS['query']}", f"http://localhost:{LOCAL_PORTS['query']}"]
    # devpay, the local payment provider (infra/devpay/): its own process; the same key and secret on both sides
    devpay_host: str = LOCAL_HOST
    devpay_port: int = LOCAL_PORTS["devpay"]
    devpay_url: str = f"http://{LOCAL_HOST}:{LOCAL_PORTS['devpay']}"
    devpay_public_url: str = ""       # where buyers' browsers reach its checkout page (default: devpay_url)
    devpay_api_key: str = ""          # the local stack makes one per stack (infra/config.py)
    devpay_webhook_secret: str = ""   # HMAC key of Devpay-Signature (contracts/payments.py)
    devpay_webhook_url: str = f"http://{LOCAL_HOST}:{LOCAL_PORTS['command']}/api/v1/payments/devpay/webhook"
    devpay_db: str = ".stack/data/devpay/devpay.sqlite3"
    devpay_retry_max_seconds: float = 30.0  # the longest pause between two attempts of one webhook
    devpay_synchronous: Literal["FULL", "NORMAL"] = "NORMAL"  # SQLite: NORMAL survives a process crash (WAL)
    # Stripe (EVENTLY_PAYMENT_PROVIDER=stripe): PaymentIntents through the official SDK
    stripe_api_key: str = ""
    stripe_webhook_secret: str = ""   # the endpoint's signing secret (whsec_...)
    stripe_api_base: str = ""         # empty: Stripe itself; the tests point it at stripe-mock


@lru_cache
def get_settings() -> Settings:
    return Settings()


def secret_problem(s: Settings) -> str | None:
    """Why this JWT secret must not be used outside EVENTLY_ENV=dev, or None."""
    if not s.jwt_secret:
        return "EVENTLY_JWT_SECRET is not set"
    if len(s.jwt_secret.encode()) < MIN_SECRET_BYTES:
        return f"EVENTLY_JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes"
    if s.jwt_secret in PUBLISHED_SECRETS:
        return "EVENTLY_JWT_SECRET is the development value published in the repository"
    return None


def require_secure_secret(s: Settings, service: str) -> None:
    """At a service's start: exit non-zero with one clear line when the secret would let anyone forge tokens."""
    problem = secret_problem(s)
    if problem and (s.env != "dev" or not s.jwt_secret):
        print(f"{service}: refusing to start: {problem} (set a random secret of at least {MIN_SECRET_BYTES} "
              "bytes, e.g. `openssl rand -hex 32`; EVENTLY_ENV=dev allows a weak one on a developer machine)",
              file=sys.stderr)
        raise SystemExit(2)
