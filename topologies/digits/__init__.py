"""The digits example: steps of the digits topologies and the training of their models."""
