"""Kafka plumbing: the local broker control and the jars it needs."""
