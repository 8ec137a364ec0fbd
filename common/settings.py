"""Runtime settings, read from ``EVENTLY_*`` environment variables (pydantic-settings).

The defaults point at the local stack that ``make up`` starts (see infra/README.md for the
port table); docker-compose.yml overrides the URLs with its service host names.
"""
from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTLY_", extra="ignore")

    # Backing services
    database_url: str = "postgresql://evently:evently@127.0.0.1:15432/evently"
    redis_url: str = "redis://127.0.0.1:16379/0"
    kafka_bootstrap: str = "127.0.0.1:19092"
    mongo_url: str = "mongodb://127.0.0.1:27027/"
    mongo_db: str = "evently"

    # Auth (CONTRACT: HS256 signed with EVENTLY_JWT_SECRET)
    jwt_secret: str = "dev-only-secret-change-me-0123456789abcdef"
    jwt_ttl_seconds: int = 3600

    # HTTP listeners
    command_host: str = "127.0.0.1"
    command_port: int = 8001
    query_host: str = "127.0.0.1"
    query_port: int = 8002
    projector_host: str = "127.0.0.1"
    projector_metrics_port: int = 8003

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
    query_mongo_pool_size: int = 50
    query_redis_pool_size: int = 2000     # stream readers hold one connection each while blocked in XREAD
    query_gc_threshold: int = 50_000      # allocations between young GC collections (default 700; see app.py)
    sse_queue_size: int = 256             # frames buffered per SSE client; a client that falls further behind is dropped
    sse_ping_seconds: float = 10.0        # heartbeat comment interval (CONTRACT: at most 15 s)
    sse_send_timeout_seconds: float = 10.0  # a client that does not take a frame for this long is disconnected


@lru_cache
def get_settings() -> Settings:
    return Settings()
