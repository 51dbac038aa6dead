"""Serving quality on the worker's hot path: request deadlines, priority lanes at the
topology's input and result caches. Each module is a small step the worker core calls
with a few lines; none touches the model or the delivery. The Kafka half of a shared
cache (its topic) is :mod:`streamcompose.agent.shared_cache`."""
