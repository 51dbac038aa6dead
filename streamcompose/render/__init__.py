"""Rendering a topology for a cluster: Kubernetes manifests (with KEDA autoscaling) and a
docker compose file. Nothing here talks to a cluster; the output is plain YAML."""
