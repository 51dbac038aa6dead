"""Where consumed records are committed: offsets, and the delivery policy."""

from streamcompose.delivery.checkpoint import Checkpoint, Closing, Output

__all__ = ["Checkpoint", "Closing", "Output"]
