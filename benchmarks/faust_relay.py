"""A faust-streaming per-event relay, the third variant of ``benchmarks/overhead.py``.

One ``@app.agent`` reads every event of the input topic, decodes its value with
:func:`streamcompose.codec.decode_payload`, encodes it again and sends it, with the same
key and headers, to the output topic: the per-event equivalent of the aiokafka relay and
of the identity agent. ``overhead.py`` starts it as a subprocess::

    BENCH_BOOTSTRAP=127.0.0.1:9092 BENCH_APP_ID=relay-1 BENCH_INPUT=in BENCH_OUTPUT=out \\
        python benchmarks/faust_relay.py worker -l warn
"""

from __future__ import annotations

import os
from typing import Any

import faust

from streamcompose.codec import decode_payload, encode_payload

app = faust.App(
    os.environ.get("BENCH_APP_ID", "streamcompose-bench-faust"),
    broker=f"kafka://{os.environ.get('BENCH_BOOTSTRAP', '127.0.0.1:9092')}",
    value_serializer="raw",
    key_serializer="raw",
    store="memory://",
    web_enabled=False,
    topic_disable_leader=True,
    producer_linger_ms=2,  # as streamcompose's worker and the aiokafka relay
    producer_max_batch_size=1 << 20,
)
source = app.topic(os.environ.get("BENCH_INPUT", "bench.in"))
sink = app.topic(os.environ.get("BENCH_OUTPUT", "bench.out"))


@app.agent(source)
async def relay(stream: Any) -> None:
    """Decode, re-encode and forward each event."""
    async for event in stream.events():
        value = encode_payload(decode_payload(event.value))
        await sink.send(key=event.key, value=value, headers=event.headers)


if __name__ == "__main__":
    app.main()
