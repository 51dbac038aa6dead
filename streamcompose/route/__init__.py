"""Request routing: switch conditions, traffic splits, mixtures of experts and shadows."""
