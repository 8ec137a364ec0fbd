"""Projectors: Kafka consumers that build the MongoDB read models from the outbox topics."""
