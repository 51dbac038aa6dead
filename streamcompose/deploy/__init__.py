"""Deploying topologies as supervised worker processes."""

from streamcompose.deploy.control import deploy, status, stop

__all__ = ["deploy", "status", "stop"]
