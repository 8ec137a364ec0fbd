"""The stack manager's pure parts: ports, refusal of held ports, generated configs."""
from __future__ import annotations

import socket

import pytest

from infra import components, config
from infra.progress import StepFailed


def test_port_overrides_flow_into_the_service_urls(monkeypatch):
    monkeypatch.setenv("EVENTLY_PG_PORT", "25999")
    monkeypatch.setenv("EVENTLY_KAFKA_PORT", "29999")
    env = config.service_env()
    assert env["EVENTLY_DATABASE_URL"].endswith(":25999/evently")
    assert env["EVENTLY_CDC_PG_PORT"] == "25999"
    assert env["EVENTLY_KAFKA_BOOTSTRAP"] == "127.0.0.1:29999"


def test_every_port_is_distinct():
    values = [p.default for p in config.PORTS.values()]
    assert len(values) == len(set(values))


def test_a_port_held_by_someone_else_is_refused_with_the_override_to_use(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.setenv("EVENTLY_REDIS_PORT", str(port))
        comp = components.ProcessComponent("redis", ["redis"])
        with pytest.raises(StepFailed) as err:
            comp.check_ports_free()
    assert f"port {port} (redis) is already in use" in str(err.value)
    assert "EVENTLY_REDIS_PORT" in str(err.value)


def test_generated_kafka_and_connect_configs_bind_loopback_only(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "STACK", tmp_path)
    kafka = dict(line.split("=", 1) for line in components.kafka_properties().read_text().splitlines())
    for listener in kafka["listeners"].split(","):
        assert "//127.0.0.1:" in listener
    assert kafka["auto.create.topics.enable"] == "false"
    connect = dict(line.split("=", 1) for line in components.connect_properties().read_text().splitlines())
    assert connect["listeners"].startswith("http://127.0.0.1:")
    assert connect["config.providers"] == "env"


def test_a_kafka_cluster_id_never_starts_with_a_dash(monkeypatch):
    # A first byte of 0xF8 encodes to '-' in URL-safe base64: the storage tool's parser would
    # read such an id as an option. The id is drawn again, as Kafka's Uuid.randomUuid() does.
    import uuid

    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x01" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(components.uuid, "uuid4", lambda: next(draws))
    cluster_id = components.kafka_cluster_id()
    assert cluster_id == "EBAQEBAQEBAQEBAQEBAQEA"
    assert len(cluster_id) == 22


def test_the_rebuilds_claim_window_covers_what_connect_can_resend(monkeypatch, tmp_path):
    # A rebuild writes only the outbox-id claims of each partition's last EVENTLY_PROJECTOR_CLAIM_WINDOW_S;
    # Debezium re-sends what it sent after its last offset flush, so the window must dwarf flush + timeout.
    from common.settings import Settings

    monkeypatch.setattr(config, "STACK", tmp_path)
    connect = dict(line.split("=", 1) for line in components.connect_properties().read_text().splitlines())
    resendable_ms = int(connect["offset.flush.interval.ms"]) + int(connect.get("offset.flush.timeout.ms", 5000))
    assert Settings().projector_claim_window_s * 1000 >= 10 * resendable_ms
