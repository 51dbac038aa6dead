"""Secured Kafka: a broker of the test's own with a SASL_PLAINTEXT listener (SCRAM-SHA-512,
the user created by ``kafka-storage format --add-scram``) and a TLS listener (a CA and
broker certificate made here with openssl, client certificates required). Deploy,
publish and subscribe work with the right settings; wrong credentials fail within
seconds with exit code 1 and a message naming the mechanism and the broker; the password
appears nowhere.

``$STREAMCOMPOSE_SECURE_PORT`` pins the first of the four ports the broker needs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import free_ports, subscribe

from streamcompose.kafka.broker import SecureListeners, start_broker, stop_broker

pytestmark = [pytest.mark.integration,
              pytest.mark.timeout(480)]  # the first pays for the broker: minutes when loaded

USER, PASSWORD = "alice", "alice-Pa55-word"

STEPS = '''
def inc(batch):
    return [{"x": p["x"] + 1} for p in batch]

inc.inputs = ("x",)
'''

TOPOLOGY = '''
name: secured
fields: [x]
agents:
  inc: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:inc"}}
'''



def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, and a broker certificate for 127.0.0.1 and a client certificate it signed
    (PEM, unencrypted keys)."""
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca), "-days", "2", "-subj", "/CN=streamcompose test CA")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    made = {"ca": ca}
    for who, subject in (("broker", "/CN=127.0.0.1"), ("client", "/CN=streamcompose")):
        key, csr, cert = (folder / f"{who}.{ext}" for ext in ("key", "csr", "pem"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                 "-subj", subject)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(cert), "-days", "2",
                 "-extfile", str(folder / "san.ext"))
        made[f"{who}_key"], made[f"{who}_cert"] = key, cert
    return made


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The secured broker: its listeners' addresses and client properties files."""
    folder = tmp_path_factory.mktemp("secured")
    port = free_ports(4, "STREAMCOMPOSE_SECURE_PORT", 29700)
    pems = make_certificates(folder)
    data_dir = folder / "broker"
    start_broker(port, data_dir, fresh=True, secure=SecureListeners(
        sasl_port=port + 2, scram_users={USER: PASSWORD}, ssl_port=port + 3,
        ssl_cert=pems["broker_cert"], ssl_key=pems["broker_key"], ssl_client_ca=pems["ca"]))

    def properties(name: str, text: str) -> Path:
        path = folder / f"{name}.properties"
        path.write_text(text)
        return path

    scram = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
    yield {
        "sasl": f"127.0.0.1:{port + 2}", "ssl": f"127.0.0.1:{port + 3}",
        "scram": properties("scram", f"{scram}sasl.username={USER}\n"
                                     f"sasl.password={PASSWORD}\n"),
        "jaas": properties("jaas", scram + "sasl.jaas.config=org.apache.kafka.common."
                           "security.scram.ScramLoginModule required \\\n"
                           f'  username="{USER}" password="{PASSWORD}";\n'),
        "wrong": properties("wrong", f"{scram}sasl.username={USER}\nsasl.password=nope\n"),
        "tls": properties("tls", f"security.protocol=SSL\nssl.cafile={pems['ca']}\n"
                                 f"ssl.certfile={pems['client_cert']}\n"
                                 f"ssl.keyfile={pems['client_key']}\n"),
        "untrusted": properties("untrusted", "security.protocol=SSL\n"),
        "anonymous": properties("anonymous",
                                f"security.protocol=SSL\nssl.cafile={pems['ca']}\n"),
    }
    stop_broker(port, data_dir)


def test_deploy_publish_subscribe_over_sasl_and_tls(cli, write_topology, unique, secured,
                                                     sc_env):
    sasl, tls = ["--kafka-config", str(secured["scram"])], ["--kafka-config", str(secured["tls"])]
    file = write_topology(TOPOLOGY, STEPS)
    deployed = cli(*sasl, "deploy", str(file), "--name", unique, "--bootstrap",
                   str(secured["sasl"]), "--json")
    try:
        requests = "\n".join(json.dumps({"id": f"r{i}", "x": i}) for i in range(20))
        cli("publish", unique, *tls, "--bootstrap", str(secured["ssl"]), input=requests)
        jaas = ["--kafka-config", str(secured["jaas"]), "--bootstrap", str(secured["sasl"])]
        results = subscribe(cli, unique, 20, *jaas)
        assert sorted(r["payload"]["x"] for r in results) == list(range(1, 21))

        status = cli(*sasl, "status", unique, "--json")
        home = Path(sc_env["STREAMCOMPOSE_HOME"])
        written = [p.read_bytes() for p in home.rglob("*") if p.is_file()]
        assert written, "the deployment wrote nothing?"
        for text in (deployed.stdout, deployed.stderr, status.stdout, status.stderr):
            assert PASSWORD not in text
        assert not [b for b in written if PASSWORD.encode() in b]
    finally:
        cli(*sasl, "stop", unique, check=False)


@pytest.mark.parametrize(("settings", "listener", "named"), [
    ("wrong", "sasl", "SASL SCRAM-SHA-512 as 'alice'"),
    ("untrusted", "ssl", "TLS handshake"),
    ("anonymous", "ssl", "closed the TLS connection"),  # without a client certificate
])
def test_wrong_credentials_fail_fast_naming_mechanism_and_broker(
        cli, write_topology, unique, secured, settings, listener, named):
    config = ["--kafka-config", str(secured[settings])]
    address = str(secured[listener])
    file = write_topology(TOPOLOGY, STEPS)
    for command in (["deploy", str(file), "--name", unique], ["publish", unique],
                    ["subscribe", unique, "--count", "1"]):
        started = time.monotonic()
        done = cli(*config, *command, "--bootstrap", address, input="{\"x\": 1}\n",
                   check=False, timeout=60)
        took = time.monotonic() - started
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert named in done.stderr and address in done.stderr, done.stderr
        assert took < 15, f"{command[0]} took {took:.1f}s to fail"
        assert "nope" not in done.stderr + done.stdout
