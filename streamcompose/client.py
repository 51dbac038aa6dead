"""The Python client: publish requests, subscribe to results, infer over Kafka.

Targets are a deployed topology's name (its input and output topics are looked up) or a
topic name. ``send()`` returns a future in the manner of aiokafka; ``send_and_wait()``
awaits it.

Example (needs a broker and the deployed digits cascade)::

    async def main():
        async with Client("127.0.0.1:9092") as client:
            result = await client.infer("digits", {"pixels": [0.0] * 64}, timeout=10)
            return result.payload["label"]

Results are :class:`~streamcompose.codec.result.Result` records; targets resolve to
topics by :func:`~streamcompose.deploy.targets.resolve_topics`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from streamcompose.codec import JSON, MSGPACK, Trace, encode_payload
from streamcompose.codec.record import new_request_id, now_ms
from streamcompose.codec.result import Result
from streamcompose.deploy.targets import Topics, resolve_topics
from streamcompose.errors import (
    ModelError,
    RequestExpiredError,
    RequestTimeoutError,
)
from streamcompose.kafka.admin import topic_partitions
from streamcompose.kafka.clients import make_consumer, make_producer
from streamcompose.kafka.diagnose import raise_security_failure, unreachable
from streamcompose.observe import tracing
from streamcompose.serving.deadline import deadline_header
from streamcompose.serving.lanes import PRIORITY

__all__ = ["Client", "Result", "Topics", "resolve_topics"]


async def _start(client: Any, bootstrap: str) -> None:
    try:
        await client.start()
    except (KafkaConnectionError, OSError) as exc:
        await client.stop()
        await raise_security_failure(bootstrap)
        raise unreachable(bootstrap, exc) from exc


async def _assigned_consumer(bootstrap: str, topics: Iterable[str],
                             from_beginning: bool) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of the topics, positioned at the start or
    at the current end (the position is fixed before this returns)."""
    partitions = await topic_partitions(bootstrap, list(topics))
    consumer = make_consumer(bootstrap)
    await _start(consumer, bootstrap)
    consumer.assign(partitions)
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    return consumer


class Client:
    """An asynchronous client of deployed topologies."""

    def __init__(self, bootstrap: str = "127.0.0.1:9092") -> None:
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._waiting: dict[str, asyncio.Future[Result]] = {}
        self._listeners: dict[tuple[str, str], asyncio.Task] = {}
        self._listen_lock = asyncio.Lock()

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._producer = make_producer(self.bootstrap, "streamcompose-client", linger_ms=5)
        await _start(self._producer, self.bootstrap)

    async def close(self) -> None:
        for task in self._listeners.values():
            task.cancel()
        await asyncio.gather(*self._listeners.values(), return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, target: str, payload: dict[str, Any], request_id: str | None = None,
                   json: bool = False, *, priority: str | int | None = None,
                   deadline_ms: float | None = None) -> asyncio.Future[str]:
        """Queue one request; the returned future resolves to its request id once the
        broker has stored it.

        ``priority`` (else the payload's ``priority`` field): a lane name or 0-9 (9 the
        most urgent); a target with priority lanes gets the request on that lane's
        topic, and it carries the header ``sc-priority``. ``deadline_ms``: the request
        must be served within that many milliseconds from now, or it is dead-lettered
        as expired (header ``sc-deadline``). With tracing on, the request starts a trace (a
        ``publish`` span under the caller's current span) whose ``traceparent`` travels
        with it."""
        request_id = request_id or new_request_id()
        span, headers = tracing.start_request(f"publish {target}", request_id)
        done = await self._send(target, payload, request_id, json, headers,
                                priority=priority, deadline_ms=deadline_ms)
        if span is not None:
            done.add_done_callback(lambda _: span.end())
        return done

    async def _send(self, target: str, payload: dict[str, Any], request_id: str, json: bool,
                    headers: list[tuple[str, bytes]], *, priority: str | int | None,
                    deadline_ms: float | None) -> asyncio.Future[str]:
        assert self._producer is not None, "call start() or use `async with Client()`"
        content_type = JSON if json else MSGPACK
        trace = Trace(request_id=request_id, entered_ms=now_ms(), extra=tuple(headers))
        topic, lane = resolve_topics(target).route(
            payload.get("priority") if priority is None else priority)
        headers = [*trace.headers(content_type),
                   *([(PRIORITY, lane.encode())] if lane is not None else []),
                   *([deadline_header(trace.entered_ms + int(deadline_ms))]
                     if deadline_ms is not None else [])]
        delivery = await self._producer.send(
            topic, encode_payload(payload, content_type), key=trace.key, headers=headers)
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        delivery.add_done_callback(lambda f: done.set_exception(f.exception())
                                   if f.exception() else done.set_result(request_id))
        return done

    async def send_and_wait(self, target: str, payload: dict[str, Any],
                            request_id: str | None = None, json: bool = False,
                            **options: Any) -> str:
        """Send one request and wait until the broker stored it; returns its id.
        ``options``: those of :meth:`send` (``priority``, ``deadline_ms``)."""
        return await (await self.send(target, payload, request_id, json, **options))

    async def publish(self, target: str, payloads: Iterable[dict[str, Any]],
                      ids: Iterable[str | None] | None = None, **options: Any) -> list[str]:
        """Send many requests, then wait for all; returns their ids in order.
        ``options``: those of :meth:`send` (``priority``, ``deadline_ms``)."""
        pending = [await self.send(target, p, i, **options)
                   for p, i in zip(payloads, ids if ids is not None else _nones(), strict=False)]
        return list(await asyncio.gather(*pending))

    def subscribe(self, target: str, from_beginning: bool = False,
                  include_dead_letters: bool = False) -> AsyncIterator[Result]:
        """Yield results of a target as they arrive (optionally its dead letters too)."""
        topics = resolve_topics(target)
        wanted = [topics.output, topics.dlq] if include_dead_letters else [topics.output]
        return self.read(wanted, from_beginning)

    async def read(self, topics: list[str], from_beginning: bool = False
                   ) -> AsyncIterator[Result]:
        """Yield the records of any topics (an agent's intermediate topic, say)."""
        consumer = await _assigned_consumer(self.bootstrap, topics, from_beginning)
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        yield Result.from_record(record)
        finally:
            await consumer.stop()

    async def infer(self, target: str, payload: dict[str, Any], timeout: float = 30.0,
                    request_id: str | None = None, priority: str | int | None = None
                    ) -> Result:
        """Send one request and wait for its result. Raises :class:`ModelError` when the
        request went to the dead-letter topic (:class:`RequestExpiredError` when it
        expired there), :class:`RequestTimeoutError` on timeout. The request carries
        the deadline ``timeout`` seconds from now, so no agent spends model time on it
        once this call gave up. With tracing on, an ``infer`` span covers the whole
        round trip."""
        topics = resolve_topics(target)
        await self._listen(topics)
        request_id = request_id or new_request_id()
        reply = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        span, headers = tracing.start_request(f"infer {target}", request_id)
        try:
            await (await self._send(target, payload, request_id, False, headers,
                                    priority=priority, deadline_ms=timeout * 1000))
            result = await asyncio.wait_for(reply, timeout)
        except TimeoutError:
            raise RequestTimeoutError(f"no result for request {request_id} on {topics.output} "
                                      f"within {timeout}s", request_id=request_id,
                                      topic=topics.output) from None
        finally:
            self._waiting.pop(request_id, None)
            if span is not None:
                span.end()
        if result.topic == topics.dlq and result.topic != topics.output:
            if result.payload.get("error_type") == RequestExpiredError.reason:
                raise RequestExpiredError(f"request {request_id} expired: "
                                          f"{result.payload.get('error')}",
                                          agent=result.payload.get("agent"),
                                          request_id=request_id)
            raise ModelError(f"request {request_id} failed: {result.payload.get('error')}",
                             agent=result.payload.get("agent"))
        return result

    async def _listen(self, topics: Topics) -> None:
        key = (topics.output, topics.dlq)
        async with self._listen_lock:  # concurrent infer() calls share one listener
            if key not in self._listeners:
                consumer = await _assigned_consumer(self.bootstrap, key, from_beginning=False)
                self._listeners[key] = asyncio.create_task(self._dispatch(consumer))

    async def _dispatch(self, consumer: AIOKafkaConsumer) -> None:
        """Hand each result or dead letter to the infer() call waiting for it."""
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        waiter = self._waiting.get((record.key or b"").decode())
                        if waiter is not None and not waiter.done():
                            waiter.set_result(Result.from_record(record))
        finally:
            await consumer.stop()


def _nones() -> Iterable[None]:
    while True:
        yield None
