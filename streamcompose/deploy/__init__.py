"""Deploying topologies as supervised worker processes."""

from streamcompose.deploy.control import deploy, set_weights, status, stop

__all__ = ["deploy", "set_weights", "status", "stop"]
