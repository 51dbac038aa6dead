"""Topology files: the model, the loader and the checks."""

from streamcompose.topology.loader import load_topology, load_topology_text
from streamcompose.topology.model import INPUT, AgentSpec, BatchSpec, ModelSpec, Topology

__all__ = ["INPUT", "AgentSpec", "BatchSpec", "ModelSpec", "Topology", "load_topology",
           "load_topology_text"]
