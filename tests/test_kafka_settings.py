"""Kafka connection settings without a broker: the security settings read from a
properties file and the environment, the local cluster's broker configuration, and the
topology's ``replication:`` key."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamcompose.cli.main import _register, cli
from streamcompose.errors import BrokerError, DeploymentError, TopologyError
from streamcompose.kafka.broker_config import SecureListeners, cluster_nodes, server_properties
from streamcompose.kafka.security import CONFIG_ENV, load_security
from streamcompose.topology import load_topology_text
from streamcompose.topology.replication import ReplicationSpec

SECRET = "hunter2-very-secret"


def _file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "client.properties"
    path.write_text(text)
    return {CONFIG_ENV: str(path)}


def test_file_settings_and_environment_overrides(tmp_path):
    env = _file(tmp_path, "# a Java client's file\nbootstrap.servers=elsewhere:9092\n"
                "security.protocol = SASL_PLAINTEXT\nsasl.mechanism: SCRAM-SHA-512\n"
                f"sasl.username=alice\nsasl.password={SECRET}\n")
    s = load_security(env)
    assert (s.protocol, s.mechanism, s.username, s.password) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "alice", SECRET)
    assert s.client_options() == {"security_protocol": "SASL_PLAINTEXT",
                                  "sasl_mechanism": "SCRAM-SHA-512",
                                  "sasl_plain_username": "alice",
                                  "sasl_plain_password": SECRET}
    s = load_security({**env, "STREAMCOMPOSE_KAFKA_SASL_USERNAME": "bob"})
    assert s.username == "bob" and s.password == SECRET
    assert "$STREAMCOMPOSE_KAFKA_*" in s.source and "client.properties" in s.source


def test_jaas_config_spanning_lines(tmp_path):
    env = _file(tmp_path, "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n"
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \\\n"
                f'    required username="carol" password="{SECRET}";\n')
    s = load_security(env)
    assert (s.mechanism, s.username, s.password, s.tls) == ("SCRAM-SHA-256", "carol", SECRET,
                                                            True)
    assert isinstance(s.client_options()["ssl_context"], ssl.SSLContext)
    plain = _file(tmp_path, "security.protocol=SASL_PLAINTEXT\nsasl.jaas.config=org.apache."
                  'kafka.common.security.plain.PlainLoginModule required username="u" '
                  'password="p";\n')
    assert load_security(plain).mechanism == "PLAIN"


def test_secrets_are_never_described(tmp_path):
    env = _file(tmp_path, f"security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                f"sasl.username=alice\nsasl.password={SECRET}\nssl.key.password={SECRET}\n")
    s = load_security(env)
    assert SECRET not in repr(s) and SECRET not in str(s.describe()) and SECRET not in s.how()
    assert s.describe()["sasl.username"] == "alice"


@pytest.mark.parametrize(("text", "message"), [
    ("security.protocol=SASL\n", ":1: security.protocol: expected one of PLAINTEXT"),
    ("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n",
     ":2: sasl.mechanism: expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=a\n",
     "sasl.username: SASL needs sasl.username and sasl.password"),
    ("\n\nssl.truststore.location=/x.jks\n", ":3: ssl.truststore.location: not a setting "
     "streamcompose knows (Java key stores: export them to PEM"),
    ("security.protocol=SSL\nssl.cafile=/no/such/ca.pem\n", ":2: ssl.cafile: no such file"),
    ("sasl.jaas.config=nonsense\nsecurity.protocol=SASL_SSL\n",
     ":1: sasl.jaas.config: expected a PlainLoginModule or ScramLoginModule"),
])
def test_wrong_settings_name_file_line_and_key(tmp_path, text, message):
    with pytest.raises(BrokerError) as info:
        load_security(_file(tmp_path, text))
    assert message in str(info.value) and "client.properties" in str(info.value)


def test_wrong_environment_variable_is_named():
    with pytest.raises(BrokerError, match=r"\$STREAMCOMPOSE_KAFKA_SECURITY_PROTOCOL: "):
        load_security({"STREAMCOMPOSE_KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_no_settings_is_plaintext():
    assert load_security({}).client_options() == {"security_protocol": "PLAINTEXT"}


def test_cluster_configuration_replicates_internal_topics(tmp_path):
    nodes = cluster_nodes(19000, 3)
    text = server_properties(nodes[1], nodes, tmp_path)
    lines = set(text.splitlines())
    assert {"node.id=2", "controller.quorum.voters=1@127.0.0.1:19001,2@127.0.0.1:19003,"
            "3@127.0.0.1:19005", "listeners=PLAINTEXT://127.0.0.1:19002,"
            "CONTROLLER://127.0.0.1:19003", "offsets.topic.replication.factor=3",
            "transaction.state.log.min.isr=2", "default.replication.factor=3"} <= lines
    single = set(server_properties(nodes[0], nodes[:1], tmp_path).splitlines())
    assert {"offsets.topic.replication.factor=1", "transaction.state.log.min.isr=1"} <= single


def test_secured_listeners_configuration(tmp_path):
    node = cluster_nodes(19000, 1)[0]
    secure = SecureListeners(sasl_port=19010, scram_users={"alice": SECRET}, ssl_port=19011,
                             ssl_cert=tmp_path / "c.pem", ssl_key=tmp_path / "k.pem",
                             ssl_client_ca=tmp_path / "ca.pem")
    text = server_properties(node, [node], tmp_path, secure, tmp_path / "ks.pem")
    assert "SASL_PLAINTEXT://127.0.0.1:19010" in text and "SSL://127.0.0.1:19011" in text
    assert "listener.name.ssl.ssl.client.auth=required" in text
    assert SECRET not in text and SECRET not in repr(secure)
    assert "SCRAM-SHA-512=[name=alice,password=" + SECRET + "]" in secure.scram_arguments()


def test_replication_key():
    t = load_topology_text("""
name: r
replication: {factor: 2, min_insync: 2}
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
""")
    assert t.replication == ReplicationSpec(2, 2)
    assert t.replication.resolve(brokers=3) == (2, 2)
    with pytest.raises(DeploymentError, match=r"replication\.factor is 2 but the cluster has 1"):
        t.replication.resolve(brokers=1)
    assert load_topology_text("""
name: r
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
""").replication.resolve(brokers=5) == (3, 2)


@pytest.mark.parametrize(("value", "message"), [
    ("{factor: 2, min_insync: 3}", "3: replication.min_insync: min_insync (3) cannot exceed"),
    ("{factor: 0}", "3: replication.factor: must be an integer >= 1"),
    ("{replicas: 3}", "3: replication.replicas: unknown key 'replicas'"),
    ("3", "3: replication: must be a mapping"),
])
def test_replication_key_errors(value, message):
    with pytest.raises(TopologyError) as info:
        load_topology_text(f"""
name: r
replication: {value}
agents:
  a: {{inputs: [$input], model: {{runtime: python, entrypoint: "copy:copy"}}}}
""")
    assert message in str(info.value)


def test_kafka_config_option_names_the_bad_line(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "")  # the option sets it: undone after the test
    bad = tmp_path / "client.properties"
    bad.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-1\n")
    _register()
    done = CliRunner().invoke(cli, ["--kafka-config", str(bad), "broker", "status", "--port",
                                    "1", "--data-dir", str(tmp_path / "none")])
    assert done.exit_code == 2
    assert f"{bad}:2: sasl.mechanism: expected one of" in done.output
    assert os.environ[CONFIG_ENV] == str(bad)
