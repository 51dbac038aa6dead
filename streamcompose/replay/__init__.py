"""Replay and diff: a candidate model on recorded requests, or a shadow, against the live
agent's answers (:func:`replay`, :func:`shadow_report`)."""

from streamcompose.replay.run import Selection, replay, shadow_report

__all__ = ["Selection", "replay", "shadow_report"]
