"""streamcompose: compose machine-learning models over Kafka.

>>> from streamcompose import load_topology_text
>>> load_topology_text('''
... name: demo
... agents:
...   same: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
... ''').output_topic
'demo.out'
"""

from streamcompose.client import Client, Result
from streamcompose.deploy import deploy, set_weights, status, stop
from streamcompose.errors import (
    BrokerError,
    CodecError,
    DeploymentError,
    ModelError,
    RequestTimeoutError,
    StreamComposeError,
    TopologyError,
)
from streamcompose.topology import Topology, load_topology, load_topology_text

__all__ = [
    "BrokerError",
    "Client",
    "CodecError",
    "DeploymentError",
    "ModelError",
    "RequestTimeoutError",
    "Result",
    "StreamComposeError",
    "Topology",
    "TopologyError",
    "deploy",
    "load_topology",
    "load_topology_text",
    "set_weights",
    "status",
    "stop",
]
