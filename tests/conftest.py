"""Fixtures live in fixtures.py (quixstreams-style); this makes pytest see them."""

from fixtures import *  # noqa: F403
