"""The mixture-of-experts example: its data, the training of its gate and experts, and
the same routing computed directly in numpy."""
