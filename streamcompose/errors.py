"""The exceptions streamcompose raises.

Every error derives from :class:`StreamComposeError` and carries the data a user needs to
act on it (the file, key, agent, topic, offset involved) as attributes, plus a
``retriable`` flag in the manner of aiokafka: ``True`` when trying the same call again
may succeed.

>>> try:
...     raise TopologyError("unknown key 'bach'", file="demo.yaml", key="agents.inc.bach", line=7)
... except StreamComposeError as exc:
...     print(exc)
demo.yaml:7: agents.inc.bach: unknown key 'bach'
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentError",
    "BrokerError",
    "CodecError",
    "DeploymentError",
    "ModelError",
    "RequestExpiredError",
    "RequestTimeoutError",
    "StreamComposeError",
    "TopologyError",
]


class StreamComposeError(Exception):
    """Root of every streamcompose error."""

    retriable: bool = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class TopologyError(StreamComposeError):
    """A topology file is malformed or inconsistent.

    ``file``, ``key`` (a dotted path such as ``agents.inc.batch.max_size``) and ``line``
    locate the problem.
    """

    def __init__(
        self, message: str, *, file: str | None = None, key: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message, file=file, key=key, line=line)
        self.file, self.key, self.line = file, key, line

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        if self.key:
            where += f"{self.key}: "
        return where + self.message


class CodecError(StreamComposeError):
    """A record's value cannot be decoded or a payload cannot be encoded."""

    def __init__(
        self, message: str, *, topic: str | None = None, partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message, topic=topic, partition=partition, offset=offset)
        self.topic, self.partition, self.offset = topic, partition, offset


class ModelError(StreamComposeError):
    """A model cannot be loaded, or rejects or fails on its input."""

    def __init__(self, message: str, *, agent: str | None = None, model: str | None = None):
        super().__init__(message, agent=agent, model=model)
        self.agent, self.model = agent, model

    def __str__(self) -> str:
        return f"agent {self.agent!r}: {self.message}" if self.agent else self.message


class AgentError(StreamComposeError):
    """An agent worker failed outside of a model call."""

    def __init__(self, message: str, *, agent: str | None = None, topic: str | None = None):
        super().__init__(message, agent=agent, topic=topic)
        self.agent, self.topic = agent, topic


class BrokerError(StreamComposeError):
    """The local Kafka broker cannot be installed, started, reached or stopped."""

    def __init__(self, message: str, *, bootstrap: str | None = None, retriable: bool = False):
        super().__init__(message, bootstrap=bootstrap)
        self.bootstrap = bootstrap
        self.retriable = retriable


class DeploymentError(StreamComposeError):
    """A topology cannot be deployed, found, or stopped."""

    def __init__(self, message: str, *, topology: str | None = None):
        super().__init__(message, topology=topology)
        self.topology = topology


class RequestTimeoutError(StreamComposeError):
    """No result arrived for a request within the time allowed."""

    retriable = True

    def __init__(self, message: str, *, request_id: str | None = None, topic: str | None = None):
        super().__init__(message, request_id=request_id, topic=topic)
        self.request_id, self.topic = request_id, topic


class RequestExpiredError(StreamComposeError):
    """A request's deadline (header ``sc-deadline``) passed before an agent could serve it;
    it goes to the dead-letter topic with reason ``expired`` instead of to a model.

    >>> RequestExpiredError("late", agent="cnn", request_id="r1").reason
    'expired'
    """

    reason = "expired"

    def __init__(self, message: str, *, agent: str | None = None,
                 request_id: str | None = None):
        super().__init__(message, agent=agent, request_id=request_id)
        self.agent, self.request_id = agent, request_id
