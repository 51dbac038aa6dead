"""Agent workers: the processes that run one model on a stream."""
