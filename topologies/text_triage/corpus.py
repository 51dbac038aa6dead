"""Support tickets written by a script: a few hundred sentences across five categories.

Each category has its own templates and slot values; :func:`tickets` fills them with a
seeded generator, so the corpus is the same on every machine. Some tickets carry one or
two extra clauses, so their lengths range from a handful of words to about eighty
tokens (the length buckets of the tokenizer all get used).

>>> corpus = tickets()
>>> len(corpus), sorted({c for _, c in corpus}) == sorted(CATEGORIES)
(300, True)
>>> corpus[:2] == tickets()[:2]
True
"""

from __future__ import annotations

import random

CATEGORIES = ("billing", "technical", "account", "shipping", "feedback")
PER_CATEGORY = 60
SEED = 11

TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged {amount} twice for my {plan} subscription",
        "Why does my invoice for {month} show {amount} instead of the usual price?",
        "Please refund the {amount} you took from my {card} card",
        "The {plan} plan renewal failed and now my payment is overdue",
        "Can I get a receipt with our VAT number for the {month} invoice?",
        "Cancel my {plan} subscription and stop billing my {card} card",
    ),
    "technical": (
        "The {app} app crashes every time I open the {screen} screen",
        "I get error {code} when I try to sync my {device}",
        "Since the last update the {app} app is very slow on my {device}",
        "The {screen} page shows a blank screen after loading",
        "Your API returns error {code} for every request since {month}",
        "Notifications stopped working on my {device} after the update",
    ),
    "account": (
        "I cannot log in to my account, the password reset email never arrives",
        "Please change the email address on my account to my work address",
        "How do I enable two-factor authentication for my {plan} account?",
        "My account was locked after too many login attempts on my {device}",
        "Delete my account and all the personal data you hold about me",
        "Add a second user to our {plan} team account",
    ),
    "shipping": (
        "My order {order} has not arrived yet, it was due last {day}",
        "The parcel with order {order} arrived damaged",
        "Can you ship order {order} to a different address?",
        "Tracking for order {order} has not moved since {day}",
        "I received the wrong item in order {order}",
        "How long does express delivery to {city} take?",
    ),
    "feedback": (
        "I love the new {screen} design, great work",
        "It would be nice if the {app} app had a dark mode",
        "Your support agent on the {day} chat was very helpful, thank you",
        "Please bring back the old {screen} layout, the new one is confusing",
        "Great product, I recommended it to my colleagues in {city}",
        "A suggestion: let us export reports from the {screen} page",
    ),
}

SLOTS: dict[str, tuple[str, ...]] = {
    "amount": ("$9.99", "$19", "€45", "£120", "$249.50"),
    "plan": ("basic", "pro", "family", "business", "annual"),
    "month": ("January", "March", "June", "September", "November"),
    "card": ("Visa", "Mastercard", "Amex", "debit"),
    "app": ("iOS", "Android", "desktop", "web"),
    "screen": ("dashboard", "settings", "calendar", "reports", "inbox"),
    "code": ("500", "403", "E1042", "timeout 504", "429"),
    "device": ("iPhone", "Pixel phone", "Windows laptop", "iPad", "MacBook"),
    "order": ("#48213", "#50977", "#61002", "#73419", "#80556"),
    "day": ("Monday", "Tuesday", "Thursday", "Friday", "weekend"),
    "city": ("Berlin", "Lyon", "Toronto", "Osaka", "Melbourne"),
}

CLAUSES = (
    "I have already tried restarting everything and reinstalling.",
    "This is the third time I am writing about this.",
    "Could you please look into it as soon as possible, it is blocking my whole team.",
    "I have been a customer for five years and this never happened before, so I would "
    "really appreciate a quick answer and an explanation of what went wrong.",
    "Thanks in advance.",
)


def _fill(template: str, rng: random.Random) -> str:
    """A template with each of its slots filled by a random value of that slot."""
    return template.format(**{name: rng.choice(values) for name, values in SLOTS.items()})


def tickets(per_category: int = PER_CATEGORY, seed: int = SEED) -> list[tuple[str, str]]:
    """``(text, category)`` pairs, ``per_category`` of each category, shuffled."""
    rng = random.Random(seed)
    corpus = []
    for category in CATEGORIES:
        for _ in range(per_category):
            text = _fill(rng.choice(TEMPLATES[category]), rng)
            extra = rng.choice((0, 0, 1, 2))
            corpus.append((" ".join([text, *rng.sample(CLAUSES, extra)]), category))
    rng.shuffle(corpus)
    return corpus
