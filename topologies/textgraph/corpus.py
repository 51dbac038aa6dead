"""The templated training corpus of the inference-graph example: short sentences on three
topics, built from per-topic phrase lists with a seeded choice, so every run builds the
same corpus.

>>> corpus = sentences()
>>> len(corpus), sorted({topic for _, topic in corpus}) == sorted(TOPICS)
(300, True)
>>> corpus[0][1] in TOPICS and corpus[0][0].endswith(".")
True
"""

from __future__ import annotations

import random

SEED = 0
PER_TOPIC = 100

#: each topic's phrase slots: subjects, verbs, objects and endings
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "sports": {
        "subject": ("the team", "our striker", "the goalkeeper", "the coach", "the home side",
                    "the captain", "the young winger", "the champions"),
        "verb": ("scored", "won", "lost", "defended", "celebrated", "missed", "played"),
        "object": ("the final", "a late goal", "the penalty", "the league title", "the match",
                   "the derby", "the cup"),
        "ending": ("in the second half", "before a loud crowd", "at the stadium",
                   "after extra time", "with great passion", "on saturday"),
    },
    "weather": {
        "subject": ("the morning", "the forecast", "the storm", "a cold wind", "heavy rain",
                    "the grey sky", "the sun", "thick fog"),
        "verb": ("brought", "promised", "covered", "swept across", "cleared over",
                 "lingered over", "warmed"),
        "object": ("the valley", "the coast", "the northern hills", "the city",
                   "the mountains", "the harbour", "the fields"),
        "ending": ("until noon", "through the night", "with strong gusts", "by the evening",
                   "after a humid week", "during the weekend"),
    },
    "cooking": {
        "subject": ("the chef", "my grandmother", "the baker", "the cook", "our kitchen team",
                    "the waiter", "my brother", "the pastry chef"),
        "verb": ("roasted", "baked", "stirred", "seasoned", "served", "chopped", "simmered"),
        "object": ("the tomato sauce", "fresh bread", "the garlic", "a spicy soup",
                   "the onions", "the chicken", "a lemon cake"),
        "ending": ("with olive oil", "for twenty minutes", "in a hot oven", "with fresh herbs",
                   "before dinner", "over a low flame"),
    },
}

TEMPLATES = ("{subject} {verb} {object} {ending}.", "{ending}, {subject} {verb} {object}.")


def sentences(per_topic: int = PER_TOPIC, seed: int = SEED) -> list[tuple[str, str]]:
    """``per_topic`` distinct sentences per topic as ``(sentence, topic)`` pairs, topics
    interleaved, the same for the same arguments."""
    rng = random.Random(seed)
    by_topic: dict[str, list[str]] = {}
    for topic, slots in TOPICS.items():
        made: dict[str, None] = {}
        while len(made) < per_topic:
            words = {slot: rng.choice(options) for slot, options in slots.items()}
            made[rng.choice(TEMPLATES).format(**words)] = None
        by_topic[topic] = list(made)
    return [(by_topic[topic][i], topic) for i in range(per_topic) for topic in TOPICS]
