"""The Kafka consumers and producers every streamcompose process uses, configured once.

Every client takes the connection's security settings from
:mod:`streamcompose.kafka.security`. Consumers read with
``isolation_level="read_committed"``: exactly-once agents write their results in
transactions, and a result of an aborted transaction must never reach anyone.
``max_message_bytes`` is the largest record a topology's topics take (``deploy`` creates
them with that ``max.message.bytes``); producers refuse larger records before sending.

Example (needs a broker)::

    consumer = make_consumer("127.0.0.1:9092", group="g", client_id="me")
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from streamcompose.kafka.diagnose import raise_security_failure
from streamcompose.kafka.security import client_options

DEFAULT_MESSAGE_BYTES = 1 << 20
FETCH_BYTES = 16 << 20
log = logging.getLogger("streamcompose.kafka")


def make_consumer(bootstrap: str, group: str | None = None, client_id: str | None = None,
                  max_message_bytes: int = FETCH_BYTES, **options: Any) -> AIOKafkaConsumer:
    """A consumer that commits by hand and starts at the earliest record of new groups."""
    fetch = max(max_message_bytes, FETCH_BYTES)
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, client_id=client_id or "streamcompose",
        enable_auto_commit=False, auto_offset_reset="earliest",
        isolation_level="read_committed", max_partition_fetch_bytes=fetch,
        fetch_max_bytes=4 * fetch, **{**client_options(), **options})


def make_producer(bootstrap: str, client_id: str | None = None,
                  max_message_bytes: int = FETCH_BYTES, **options: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for every replica to acknowledge and refuses,
    before sending, a record larger than ``max_message_bytes``."""
    settings: dict[str, Any] = {**client_options(), "acks": "all", "enable_idempotence": True,
                                "linger_ms": 2, "max_batch_size": min(1 << 20, max_message_bytes),
                                "max_request_size": max_message_bytes}
    settings.update(options)
    return AIOKafkaProducer(bootstrap_servers=bootstrap,
                            client_id=client_id or "streamcompose", **settings)


async def start_patiently(start: Callable[[], Awaitable[None]], what: str, bootstrap: str,
                          retry_s: float) -> None:
    """Start a client, retrying while the broker cannot be reached (a worker started
    during a broker outage waits for it instead of exiting)."""
    attempt = 0
    while True:
        try:
            await start()
            return
        except (KafkaConnectionError, OSError) as exc:
            attempt += 1
            if attempt == 1:  # refused credentials are fatal, not an outage to wait out
                await raise_security_failure(bootstrap)
            if attempt == 1 or attempt % 30 == 0:
                log.warning("%s: cannot reach Kafka at %s (%s); retrying every %.1fs", what,
                            bootstrap, exc, retry_s)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("%s: %s; retrying", what, exc)
        await asyncio.sleep(retry_s)
