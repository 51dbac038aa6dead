"""The Kafka consumers and producers every streamcompose process uses, configured once.

Consumers read with ``isolation_level="read_committed"``: joiners write their results
in transactions, and a result of an aborted transaction must never reach anyone.

Example (needs a broker)::

    consumer = make_consumer("127.0.0.1:9092", group="g", client_id="me")
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

MAX_MESSAGE_BYTES = 16 << 20


def make_consumer(bootstrap: str, group: str | None = None, client_id: str | None = None,
                  **options: Any) -> AIOKafkaConsumer:
    """A consumer that commits by hand and starts at the earliest record of new groups."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, client_id=client_id or "streamcompose",
        enable_auto_commit=False, auto_offset_reset="earliest",
        isolation_level="read_committed", max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES, **options)


def make_producer(bootstrap: str, client_id: str | None = None, **options: Any
                  ) -> AIOKafkaProducer:
    """An idempotent producer that waits for every replica to acknowledge."""
    settings: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 2,
                                "max_batch_size": 1 << 20,
                                "max_request_size": MAX_MESSAGE_BYTES}
    settings.update(options)
    return AIOKafkaProducer(bootstrap_servers=bootstrap,
                            client_id=client_id or "streamcompose", **settings)
