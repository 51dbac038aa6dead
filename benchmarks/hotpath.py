"""What a worker spends on each record besides the model, piece by piece, in-process.

The records are those of ``topologies/digits_ensemble.yaml`` across Kafka: ``features``
writes ``pixels``, ``flat`` and ``image`` (three float32 arrays of 64 values) to the four
members, each member writes ``pixels`` and its ``proba`` to ``vote``, and every record
carries the headers an agent writes (content type, entry time, path, lineage of two
micro-batches). Each figure is the best of ``--rounds`` timings of ``--calls`` calls:

* ``decode``, ``encode``: :func:`~streamcompose.codec.decode_payload` and
  :func:`~streamcompose.codec.encode_payload` of a ``features`` result; the encoding
  against ``msgpack.packb`` of the payload with a hook that packs each array's header by
  ``msgpack.packb`` too, the same bytes as the codec wrote them until it kept a
  ``msgpack.Packer`` per thread (each ``packb`` makes a Packer with a 256 KiB buffer,
  and the hook's, made while the payload's is in use, is not reused memory);
* ``trace``: :meth:`~streamcompose.codec.Trace.from_record` of a member's result;
* ``lineage``: what the joiner does with the lineage of a request's four branch results
  (read each, merge them), per request;
* ``look``: the joiner's look at its open requests for timeouts (``JoinStep.due``), per
  open request, with ``--open`` requests each missing ``cnn``, once while every branch
  delivers (most requests are passed over unread) and once with a silent branch (each
  is judged branch by branch).

Nothing passes or fails and no broker is needed. Usage::

    python benchmarks/hotpath.py [--calls 20000] [--rounds 5] [--open 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
from overhead import machine

from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.codec.lineage import LineageStamp, merge_lineage, read_lineage
from streamcompose.codec.wire import NDARRAY_EXT
from streamcompose.join.step import JoinStep
from streamcompose.steps.stateful import Arrival
from streamcompose.topology.loader import load_topology

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "digits_ensemble.yaml"
MEMBERS = ("logreg", "forest", "mlp", "cnn")


def best_us(call: Callable[[], object], calls: int, rounds: int) -> float:
    """The best of ``rounds`` timings, in µs per call."""
    return min(timeit.repeat(call, number=calls, repeat=rounds)) / calls * 1e6


def packb_hook(obj: object) -> msgpack.ExtType:
    """An array as the codec packed it before it kept its packers: by ``msgpack.packb``."""
    assert isinstance(obj, np.ndarray)
    return msgpack.ExtType(NDARRAY_EXT, msgpack.packb([obj.dtype.str, list(obj.shape),
                                                       obj.tobytes()]))


def member_headers() -> list[list[tuple[str, bytes]]]:
    """The headers of one request's four member results, as the members write them."""
    features = LineageStamp("features", "1", 0)
    upstream = features.stamp(Trace("r", 1_700_000_000_000, ("features",)).headers(),
                              features.next_batch(32))
    headers = []
    for member in MEMBERS:
        stamp = LineageStamp(member, "1", 0)
        passed = Trace.from_record(b"r", upstream).passed(member)
        headers.append(stamp.stamp(passed.headers(), stamp.next_batch(32)))
    return headers


def look_us(open_requests: int, silent: bool, calls: int, rounds: int) -> float:
    """µs per open request of the joiner's look at ``open_requests`` requests that miss
    ``cnn``; with ``silent``, ``logreg`` has said nothing for longer than the timeout."""
    topology = load_topology(TOPOLOGY)
    step = JoinStep(topology, "vote")
    value = encode_payload({"pixels": np.zeros(64, np.float32),
                            "proba": np.full(10, 0.1, np.float32)})
    timeout = int(topology.agent("vote").join.timeout_ms)
    now = 1_700_000_000_000
    old = now - timeout - 1000  # every request waits past its timeout: each is looked at
    arrivals = [Arrival(topology.topic_of(member), i % 3, i, old, value,
                        Trace(f"r{i}", old - 500, ("features", member)))
                for i in range(open_requests) for member in MEMBERS[:3]]
    arrivals.append(Arrival(topology.topic_of("cnn"), 0, 0, now, value,
                            Trace("heard", old - 600, ("features", "cnn"))))
    step.handle(arrivals[:-1] if silent else arrivals, old if silent else now, False, False)
    if silent:  # the first three delivered long ago, cnn just now
        step.handle(arrivals[-1:], now, False, False)
    assert step.store.pending_count() == open_requests + 1, "requests answered"
    return best_us(lambda: step.due(now), max(calls // open_requests, 1), rounds) / open_requests


def measure(calls: int, rounds: int, open_requests: int) -> dict[str, float]:
    features = decode_payload(encode_payload({
        "pixels": np.zeros(64, np.float32), "flat": np.zeros(64, np.float32),
        "image": np.zeros((1, 8, 8), np.float32)}))
    packed = encode_payload(features)
    assert packed == msgpack.packb(features, default=packb_hook, use_bin_type=True)
    headers = member_headers()

    def lineage() -> None:
        merged: list = []
        for h in headers:
            merged = merge_lineage(merged, read_lineage(h))

    return {
        "decode_us": best_us(lambda: decode_payload(packed, "application/msgpack"),
                             calls, rounds),
        "encode_us": best_us(lambda: encode_payload(features), calls, rounds),
        "msgpack_packb_us": best_us(
            lambda: msgpack.packb(features, default=packb_hook, use_bin_type=True),
            calls, rounds),
        "trace_us": best_us(lambda: Trace.from_record(b"r", headers[0]), calls, rounds),
        "lineage_us_per_request": best_us(lineage, calls, rounds),
        "look_us_per_open": look_us(open_requests, False, calls * 10, rounds),
        "look_us_per_open_silent_branch": look_us(open_requests, True, calls * 10, rounds),
    }


def main(argv: list[str] | None = None) -> None:
    """Measure and print the figures (and the JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per timing")
    parser.add_argument("--rounds", type=int, default=5, help="timings; the best counts")
    parser.add_argument("--open", type=int, default=10000, help="the joiner's open requests")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    info = machine()
    figures = measure(args.calls, args.rounds, args.open)
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; load "
          f"{info['loadavg_1m_at_start']} (1 min) at start, {info['loadavg_1m_at_end']} at end")
    print(f"µs per call, best of {args.rounds} timings of {args.calls}:")
    print(f"  decode a features result  {figures['decode_us']:7.2f}")
    print(f"  encode it                 {figures['encode_us']:7.2f}   "
          f"msgpack.packb: {figures['msgpack_packb_us']:.2f} "
          f"({figures['msgpack_packb_us'] / figures['encode_us']:.1f}x)")
    print(f"  a member result's trace   {figures['trace_us']:7.2f}")
    print(f"  a request's lineage (4)   {figures['lineage_us_per_request']:7.2f}")
    print(f"joiner's look, µs per open request ({args.open} open): "
          f"{figures['look_us_per_open']:.3f} while every branch delivers, "
          f"{figures['look_us_per_open_silent_branch']:.3f} with one silent")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
