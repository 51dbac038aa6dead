"""The security settings of every Kafka connection streamcompose makes, read in one place.

Settings use the standard client names. They come from a properties file named by
``$STREAMCOMPOSE_KAFKA_CONFIG`` (the CLI's ``--kafka-config`` sets it, so workers inherit
it), then from environment variables ``STREAMCOMPOSE_KAFKA_<NAME>`` (the name upper-cased,
dots as underscores: ``STREAMCOMPOSE_KAFKA_SASL_PASSWORD``), which win over the file.
Secrets (``sasl.password``, ``sasl.jaas.config``, ``ssl.key.password``) are never part of
:meth:`KafkaSecurity.describe` nor of the object's ``repr``.

>>> s = load_security({"STREAMCOMPOSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
...                    "STREAMCOMPOSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
...                    "STREAMCOMPOSE_KAFKA_SASL_USERNAME": "alice",
...                    "STREAMCOMPOSE_KAFKA_SASL_PASSWORD": "s3cret"})
>>> s.describe()
{'security.protocol': 'SASL_PLAINTEXT', 'sasl.mechanism': 'SCRAM-SHA-512', 'sasl.username': 'alice'}
>>> "s3cret" in repr(s)
False
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from streamcompose.errors import BrokerError

__all__ = ["CONFIG_ENV", "KEYS", "KafkaSecurity", "client_options", "load_security",
           "read_properties"]

CONFIG_ENV = "STREAMCOMPOSE_KAFKA_CONFIG"
ENV_PREFIX = "STREAMCOMPOSE_KAFKA_"
KEYS = ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
        "sasl.jaas.config", "ssl.cafile", "ssl.certfile", "ssl.keyfile", "ssl.key.password",
        "ssl.endpoint.identification.algorithm")
SECRETS = frozenset({"sasl.password", "sasl.jaas.config", "ssl.key.password"})
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_FAMILIES = ("security.", "sasl.", "ssl.")  # names of these families must be known ones
_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')
_JAAS_MODULES = {"PlainLoginModule": ("PLAIN",),
                 "ScramLoginModule": ("SCRAM-SHA-256", "SCRAM-SHA-512")}


@dataclasses.dataclass(frozen=True)
class KafkaSecurity:
    """How to connect: protocol, SASL credentials, TLS files; ``source`` says where from."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    key_password: str | None = dataclasses.field(default=None, repr=False)
    check_hostname: bool = True
    source: str = "defaults"

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def describe(self) -> dict[str, str]:
        """The settings without secrets, for status output and logs."""
        shown = {"security.protocol": self.protocol, "sasl.mechanism": self.mechanism,
                 "sasl.username": self.username, "ssl.cafile": self.cafile,
                 "ssl.certfile": self.certfile}
        return {k: v for k, v in shown.items() if v is not None}

    def how(self) -> str:
        """In words, for error messages: ``SASL SCRAM-SHA-512 as 'alice' over TLS``."""
        text = f"SASL {self.mechanism} as {self.username!r}" if self.sasl else "no SASL"
        return text + (" over TLS" if self.tls else " without TLS")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of every aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def ssl_context(self) -> ssl.SSLContext:
        try:
            context = create_ssl_context(cafile=self.cafile, certfile=self.certfile,
                                         keyfile=self.keyfile, password=self.key_password)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot load the TLS files of {self.source} (ssl.cafile "
                              f"{self.cafile}, ssl.certfile {self.certfile}, ssl.keyfile "
                              f"{self.keyfile}): {exc}") from exc
        context.check_hostname = self.check_hostname
        return context


def read_properties(path: str | Path) -> dict[str, tuple[str, int]]:
    """A Java properties file: key -> (value, line). ``#``/``!`` comments, ``=`` or ``:``,
    a trailing backslash continues the line.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as f:
    ...     _ = f.write("# client\\nsecurity.protocol = SSL\\nsasl.jaas.config=a \\\\\\n  b;\\n")
    >>> read_properties(f.name)
    {'security.protocol': ('SSL', 2), 'sasl.jaas.config': ('a b;', 3)}
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise BrokerError(f"cannot read the Kafka client config {path}: {exc}") from exc
    found: dict[str, tuple[str, int]] = {}
    pending, start = "", 0
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#!"):
            continue
        start = start or number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        line, pending = pending + line, ""
        match = re.match(r"([^=:\s]+)\s*[=:\s]?\s*(.*)", line)
        if match:
            found[match[1]] = (match[2].strip(), start)
        start = 0
    return found


def load_security(environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The settings of ``environ`` (default ``os.environ``): its config file, then its
    ``STREAMCOMPOSE_KAFKA_*`` variables. Raises BrokerError naming the file, line and key
    (or the variable) of a wrong setting."""
    environ = os.environ if environ is None else environ
    settings: dict[str, tuple[str, str]] = {}  # key -> (value, where)
    sources = []
    if path := environ.get(CONFIG_ENV):
        sources.append(path)
        for key, (value, line) in read_properties(path).items():
            where = f"{path}:{line}"
            if key.startswith(_FAMILIES) and key not in KEYS:
                hint = (" (Java key stores: export them to PEM for ssl.cafile, ssl.certfile "
                        "and ssl.keyfile)" if "store" in key else "")
                raise BrokerError(f"{where}: {key}: not a setting streamcompose knows{hint}; "
                                  f"use {', '.join(KEYS)}")
            if key in KEYS:
                settings[key] = (value, where)
    variables = {ENV_PREFIX + key.upper().replace(".", "_"): key for key in KEYS}
    for variable, key in variables.items():
        if variable in environ:
            settings[key] = (environ[variable], f"${variable}")
    if any(v in environ for v in variables):
        sources.append(f"${ENV_PREFIX}*")
    return _build(settings, ", ".join(sources) or "defaults")


def _build(settings: dict[str, tuple[str, str]], source: str) -> KafkaSecurity:
    def get(key: str) -> str | None:
        return settings[key][0] or None if key in settings else None

    def fail(key: str, message: str) -> BrokerError:
        where = settings[key][1] if key in settings else source
        return BrokerError(f"{where}: {key}: {message}")

    protocol = (get("security.protocol") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise fail("security.protocol", f"expected one of {', '.join(PROTOCOLS)}, "
                                        f"got {protocol!r}")
    mechanism = (get("sasl.mechanism") or "").upper() or None
    username, password = get("sasl.username"), get("sasl.password")
    if jaas := get("sasl.jaas.config"):
        options = dict(_JAAS_OPTION.findall(jaas))
        module = next((m for m in _JAAS_MODULES if m in jaas), None)
        if module is None or "username" not in options or "password" not in options:
            raise fail("sasl.jaas.config", 'expected a PlainLoginModule or ScramLoginModule '
                       'with username="..." password="..."')
        if mechanism and mechanism not in _JAAS_MODULES[module]:
            raise fail("sasl.jaas.config", f"a {module} does not do sasl.mechanism {mechanism}")
        mechanism = mechanism or _JAAS_MODULES[module][0]
        username, password = options["username"], options["password"]
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            raise fail("sasl.mechanism", f"expected one of {', '.join(MECHANISMS)} with "
                                         f"security.protocol {protocol}, got {mechanism!r}")
        if not username or password is None:
            raise fail("sasl.username", "SASL needs sasl.username and sasl.password "
                                        "(or sasl.jaas.config)")
    for key in ("ssl.cafile", "ssl.certfile", "ssl.keyfile"):
        if (path := get(key)) and not Path(path).is_file():
            raise fail(key, f"no such file {path!r}")
    if get("ssl.keyfile") and not get("ssl.certfile"):
        raise fail("ssl.keyfile", "a client key needs its ssl.certfile")
    return KafkaSecurity(
        protocol=protocol, mechanism=mechanism if protocol.startswith("SASL_") else None,
        username=username if protocol.startswith("SASL_") else None, password=password,
        cafile=get("ssl.cafile"), certfile=get("ssl.certfile"), keyfile=get("ssl.keyfile"),
        key_password=get("ssl.key.password"),
        check_hostname=settings.get("ssl.endpoint.identification.algorithm",
                                    ("https", ""))[0].lower() == "https",
        source=source)


def client_options() -> dict[str, Any]:
    """The aiokafka keyword arguments of the current environment's settings.

    >>> sorted(load_security({}).client_options())
    ['security_protocol']
    """
    return load_security().client_options()
