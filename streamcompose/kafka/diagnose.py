"""Why a Kafka client could not start: told apart so that wrong credentials fail at once.

aiokafka reports any failed bootstrap as "unable to bootstrap"; a worker would then wait
for the broker forever. :func:`security_failure` opens one connection to each bootstrap
server itself and returns a non-retriable :class:`BrokerError` naming the mechanism, the
user and the broker when the broker refused the credentials or the TLS handshake failed,
or None when the broker simply cannot be reached (an outage, worth waiting for):
:func:`unreachable` is the error then.

Example (needs a broker)::

    error = asyncio.run(security_failure("127.0.0.1:9092"))
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streamcompose.errors import BrokerError
from streamcompose.kafka.security import KafkaSecurity, load_security

PROBE_TIMEOUT_S = 5.0
_REFUSED = (SaslAuthenticationFailed, AuthenticationFailedError, UnsupportedSaslMechanismError)


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            servers.append((host.strip("[]"), int(port)))
    return servers


async def security_failure(bootstrap: str,
                           security: KafkaSecurity | None = None) -> BrokerError | None:
    """The authentication or TLS error the brokers of ``bootstrap`` answer, if any."""
    security = security or load_security()
    options = security.client_options()
    for host, port in _servers(bootstrap):
        broker = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(create_conn(
                host, port, request_timeout_ms=int(PROBE_TIMEOUT_S * 1000), **options),
                PROBE_TIMEOUT_S)
        except _REFUSED as exc:
            return BrokerError(
                f"the broker at {broker} refused {security.how()} "
                f"(security.protocol {security.protocol}): {exc}; check sasl.mechanism, "
                f"sasl.username and sasl.password in {security.source}",
                bootstrap=bootstrap)
        except IllegalSaslStateError as exc:
            return BrokerError(
                f"the listener at {broker} does not take SASL (security.protocol "
                f"{security.protocol}, {security.how()}): {exc}; check the port, and "
                f"security.protocol in {security.source}", bootstrap=bootstrap)
        except ssl.SSLError as exc:
            return BrokerError(
                f"the TLS handshake with the broker at {broker} failed "
                f"(security.protocol {security.protocol}, {security.how()}): {exc}; check "
                f"ssl.cafile, ssl.certfile and ssl.keyfile in {security.source}, and that "
                "the listener speaks TLS", bootstrap=bootstrap)
        except KafkaConnectionError as exc:
            if security.tls and security.certfile is None:  # closed after the handshake
                return BrokerError(
                    f"the broker at {broker} closed the TLS connection (security.protocol "
                    f"{security.protocol}, {security.how()}, no client certificate): {exc}; "
                    "if it requires client certificates, set ssl.certfile and ssl.keyfile "
                    f"in {security.source}", bootstrap=bootstrap)
        except (OSError, KafkaError, TimeoutError):
            continue  # unreachable, or a mismatch we cannot tell: the caller's own error
        else:
            conn.close()
    return None


def unreachable(bootstrap: str, exc: Exception) -> BrokerError:
    """The error of a broker that cannot be reached (retriable: it may come back).

    >>> print(unreachable("127.0.0.1:1", OSError("refused")))  # doctest: +ELLIPSIS
    cannot reach Kafka at 127.0.0.1:1 (refused) with security.protocol PLAINTEXT; ...
    """
    protocol = load_security().protocol
    return BrokerError(f"cannot reach Kafka at {bootstrap} ({exc}) with security.protocol "
                       f"{protocol}; start the local broker with `streamcompose broker start`, "
                       "or pass --bootstrap, or the security settings the broker needs "
                       "(--kafka-config)", bootstrap=bootstrap, retriable=True)


async def raise_security_failure(bootstrap: str) -> None:
    """Raise :func:`security_failure`'s error, if any."""
    if (error := await security_failure(bootstrap)) is not None:
        raise error
