"""The inference-graph example: two small text generators, each followed by a topic
classifier, their results gathered by a joiner (``topologies/inference_graph.yaml``)."""
