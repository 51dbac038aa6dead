"""OpenTelemetry traces across hops: the W3C ``traceparent`` header travels with every
record, and each agent records its part of a request's journey under it.

Per request and hop, an agent records ``<agent>`` (the hop, a consumer span whose parent
is the upstream produce span named by the record's ``traceparent``) with three children:
``queue`` (fetched until its batch closed), ``inference`` (the step's call on the batch)
and ``produce`` (encoding and storing its records; the ``traceparent`` it writes names
this span, so the next hop hangs under it). One ``<agent> batch`` span per batch links to
the hop spans of its requests, and each ``inference`` span links back to it. A joiner's
``<agent> join`` span hangs under its first branch and links to the others. The client
starts the trace (:func:`start_request`).

Tracing is off, and costs a few ``None`` checks per record, unless the OpenTelemetry API is
installed and a tracer provider is configured: by the process itself
(``opentelemetry.trace.set_tracer_provider``), by :func:`using` (tests), or from the
standard ``OTEL_*`` variables by :func:`configure` (``pip install "streamcompose[otel]"``).

>>> from streamcompose.codec import Trace
>>> with_traceparent(Trace("r1", 0, extra=(("traceparent", b"00-a-b-01"), ("x", b"1"))),
...                  "00-c-d-01").extra
(('x', b'1'), ('traceparent', b'00-c-d-01'))
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from streamcompose.codec import Trace

try:  # the API alone is a few small modules; the SDK and exporters are the `otel` extra
    from opentelemetry import trace as otel
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised where the extra is absent
    otel = None

log = logging.getLogger("streamcompose.tracing")
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
CARRIED = (TRACEPARENT, TRACESTATE)
SCOPE = "streamcompose"
_override: Any = None
_configured = False


def _provider() -> Any:
    """The tracer provider in use, or None when tracing is off."""
    if otel is None:
        return None
    if _override is not None:
        return _override
    _configure_once()
    provider = otel.get_tracer_provider()
    return None if isinstance(provider, otel.ProxyTracerProvider | otel.NoOpTracerProvider) \
        else provider


@contextlib.contextmanager
def using(provider: Any) -> Iterator[None]:
    """Trace with ``provider`` (an SDK ``TracerProvider``) inside the block, whatever the
    process's global provider is: for tests and embedding."""
    global _override
    previous, _override = _override, provider
    try:
        yield
    finally:
        _override = previous


def _configure_once() -> None:
    global _configured
    if not _configured:
        _configured = True
        configure()


def configure(service_name: str = "streamcompose") -> bool:
    """Install a tracer provider from the standard variables: ``OTEL_TRACES_EXPORTER``
    (``otlp``, ``console``, ``none``; comma separated) or, without it, an
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (then
    ``otlp``). ``OTEL_SDK_DISABLED=true`` keeps tracing off; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` name the service (default ``service_name``), and the
    exporter reads its own ``OTEL_EXPORTER_OTLP_*`` settings. Returns whether a provider
    was installed; does nothing when the process already has one."""
    env = os.environ
    if otel is None or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")
             if n.strip() and n.strip() != "none"]
    if "OTEL_TRACES_EXPORTER" not in env and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                               or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    if not names or not isinstance(otel.get_tracer_provider(), otel.ProxyTracerProvider):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        exporters = [_exporter(name) for name in names]
    except ImportError as exc:
        log.error("OTEL_* variables ask for traces, but %s; install the extra: pip install "
                  "\"streamcompose[otel]\"", exc)
        return False
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    otel.set_tracer_provider(provider)
    log.info("tracing on: exporting spans with %s", ", ".join(names))
    return True


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ImportError(f"OTEL_TRACES_EXPORTER names {name!r}, which streamcompose does not "
                          "know (otlp, console, none)")
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                      os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def flush() -> None:
    """Export the spans still buffered (before a worker exits)."""
    provider = _provider()
    if provider is not None and hasattr(provider, "force_flush"):
        provider.force_flush()


def with_traceparent(trace: Trace, traceparent: str, tracestate: str = "") -> Trace:
    """``trace`` carrying ``traceparent`` (and ``tracestate``) in place of the ones it
    came with."""
    extra = tuple((k, v) for k, v in trace.extra if k not in CARRIED)
    extra += ((TRACEPARENT, traceparent.encode()),)
    if tracestate:
        extra += ((TRACESTATE, tracestate.encode()),)
    return replace(trace, extra=extra)


def _context(headers: Iterable[tuple[str, bytes]]) -> Any:
    carrier = {k: v.decode("latin-1") for k, v in headers if k in CARRIED}
    return TraceContextTextMapPropagator().extract(carrier) if carrier else Context()


def _carrier(span: Any) -> dict[str, str]:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, otel.set_span_in_context(span))
    return carrier


@dataclass
class Hop:
    """One request's passage through one agent: its hop span and its produce span."""

    span: Any
    fetched_ns: int
    produce: Any = None


class HopTracer:
    """Records the spans of one agent; build it with :func:`hop_tracer`."""

    def __init__(self, tracer: Any, agent: str) -> None:
        self.tracer, self.agent = tracer, agent

    def received(self, request_id: str, headers: Iterable[tuple[str, bytes]],
                 where: str = "") -> Hop:
        """A request was fetched (from ``where``, a topic[partition]@offset)."""
        now = time.time_ns()
        span = self.tracer.start_span(
            self.agent, _context(headers), kind=otel.SpanKind.CONSUMER, start_time=now,
            attributes={"streamcompose.agent": self.agent, "streamcompose.request_id":
                        request_id, **({"streamcompose.record": where} if where else {})})
        return Hop(span, now)

    def batch(self, hops: Sequence[Hop], started_ns: int, ended_ns: int) -> None:
        """Record one step call on a batch: the batch span, and each request's queue and
        inference spans."""
        if not hops:
            return
        batch = self.tracer.start_span(
            f"{self.agent} batch", Context(), start_time=started_ns,
            links=[otel.Link(h.span.get_span_context()) for h in hops],
            attributes={"streamcompose.agent": self.agent, "streamcompose.batch_size": len(hops)})
        batch.end(ended_ns)
        link = [otel.Link(batch.get_span_context())]
        for hop in hops:
            parent = otel.set_span_in_context(hop.span)
            self.tracer.start_span("queue", parent, start_time=hop.fetched_ns).end(started_ns)
            self.tracer.start_span("inference", parent, start_time=started_ns, links=link,
                                   attributes={"streamcompose.batch_size": len(hops)}
                                   ).end(ended_ns)

    def produced(self, hop: Hop, trace: Trace, error: BaseException | None = None) -> Trace:
        """Start storing the request's records; returns ``trace`` naming the produce span
        as the parent of the next hop. ``error``: the request is dead-lettered."""
        if error is not None:
            hop.span.set_status(otel.Status(otel.StatusCode.ERROR, str(error)))
        if hop.produce is None:
            hop.produce = self.tracer.start_span(
                "produce", otel.set_span_in_context(hop.span), kind=otel.SpanKind.PRODUCER)
        carrier = _carrier(hop.produce)
        return with_traceparent(trace, carrier[TRACEPARENT], carrier.get(TRACESTATE, ""))

    @staticmethod
    def done(hops: Iterable[Hop | None]) -> None:
        """The requests' records are stored (their transaction committed)."""
        now = time.time_ns()
        for hop in hops:
            if hop is not None:
                if hop.produce is not None:
                    hop.produce.end(now)
                hop.span.end(now)

    def joined(self, trace: Trace, branches: Sequence[str], first_ms: int) -> Trace:
        """A stateful step answers a request made of several records (a joiner's
        branches): its span hangs under the first and links to the others; returns
        ``trace`` naming its produce span."""
        contexts = [c for b in branches if (c := otel.get_current_span(
            _context([(TRACEPARENT, b.encode())])).get_span_context()).is_valid]
        parent = (otel.set_span_in_context(otel.NonRecordingSpan(contexts[0])) if contexts
                  else Context())
        span = self.tracer.start_span(
            f"{self.agent} join", parent, kind=otel.SpanKind.CONSUMER,
            start_time=first_ms * 1_000_000, links=[otel.Link(c) for c in contexts[1:]],
            attributes={"streamcompose.agent": self.agent,
                        "streamcompose.request_id": trace.request_id,
                        "streamcompose.branches": len(branches)})
        hop = Hop(span, first_ms * 1_000_000)
        traced = self.produced(hop, trace)
        self.done([hop])
        return traced


def traceparent_of(trace: Trace) -> str | None:
    """The ``traceparent`` a record carries, if any.

    >>> traceparent_of(Trace("r1", 0, extra=(("traceparent", b"00-ab-cd-01"),)))
    '00-ab-cd-01'
    """
    value = dict(trace.extra).get(TRACEPARENT)
    return value.decode("latin-1") if value else None


def hop_tracer(agent: str) -> HopTracer | None:
    """The span recorder of ``agent``, or None when tracing is off."""
    provider = _provider()
    return None if provider is None else HopTracer(provider.get_tracer(SCOPE), agent)


def start_request(name: str, request_id: str) -> tuple[Any, list[tuple[str, bytes]]]:
    """Start a request's trace (under the caller's current span, if any): returns the
    span to end once the request is sent, or answered, and the headers naming it; (None,
    []) when tracing is off."""
    provider = _provider()
    if provider is None:
        return None, []
    span = provider.get_tracer(SCOPE).start_span(
        name, kind=otel.SpanKind.PRODUCER, attributes={"streamcompose.request_id": request_id})
    return span, [(k, v.encode()) for k, v in _carrier(span).items()]
