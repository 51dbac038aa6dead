"""The text triage example: a real transformer (all-MiniLM-L6-v2) as a micro-batched
torch agent. Its embeddings through Kafka equal ``SentenceTransformer.encode`` of the
same texts, and each ticket reaches the desk of the class the classifier gives in-process;
the same through the local harness, without Kafka."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from fixtures import TOPOLOGIES, import_topology_module, trained

from streamcompose.client import Client, Result

FILE = TOPOLOGIES / "text_triage.yaml"
corpus = import_topology_module("text_triage.corpus")
steps = import_topology_module("text_triage.steps")
#: tickets of every length bucket: the generated ones, a long one past the model's 256
#: tokens (truncated), accents and an emoji, a single word
TEXTS = [text for text, _ in corpus.tickets()[:16]] + [
    "Refund?",
    "Le colis est arrivé abîmé 📦, merci de me rembourser la commande #61002",
    " ".join(["The dashboard export keeps timing out for every report we run."] * 30),
    "Hi team, since Monday our whole office cannot log in: the password reset emails "
    "never arrive, two-factor codes are rejected, and the admin console says the "
    "account is locked. We have a client demo tomorrow morning and the sales team needs "
    "the reports page working before then, so please call me back at the office number "
    "on file, or escalate this to whoever is on duty tonight. Thanks a lot.",
]


@pytest.fixture(scope="module")
def direct() -> ModuleType:
    """``text_triage.direct``, the models trained where missing."""
    trained("text_triage")
    return import_topology_module("text_triage.direct")


def reference(texts: list[str]) -> np.ndarray:
    """What sentence-transformers gives for the texts, in-process."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(steps.model_dir()), device="cpu").encode(texts)


def assert_same_embeddings(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, atol=1e-4)
    cosine = (got * want).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want,
                                                                                     axis=1)
    assert cosine.min() >= 0.9999, cosine.min()


def assert_routed_like_the_classifier(direct: ModuleType, results: list[dict[str, Any]],
                                      paths: list[tuple], embeddings: np.ndarray) -> None:
    """Each result carries the in-process classifier's label and probabilities and came
    through the desk of that label."""
    labels, proba = direct.classify(embeddings)
    assert [r["label"] for r in results] == labels.tolist()
    np.testing.assert_allclose([r["proba"] for r in results], proba, atol=1e-5)
    assert [p[-1] for p in paths] == [direct.ROUTES[int(label)] for label in labels]
    assert [r["category"] for r in results] == [corpus.CATEGORIES[int(label)] for label in labels]
    assert all("embedding" not in r and "input_ids" not in r for r in results)


def test_texts_cover_every_length_bucket(direct):
    lengths = {len(row["input_ids"]) for row in direct.tokenize(TEXTS)}
    assert lengths == set(steps.BUCKETS)


def test_tokenizer_gives_the_ids_sentence_transformers_uses(direct):
    from sentence_transformers import SentenceTransformer

    features = SentenceTransformer(str(steps.model_dir()), device="cpu").preprocess(TEXTS)
    for row, ids, mask in zip(direct.tokenize(TEXTS), features["input_ids"],
                              features["attention_mask"], strict=True):
        count = int(mask.sum())
        assert row["input_ids"][:count].tolist() == ids[:count].tolist()
        assert row["attention_mask"].sum() == count and not row["input_ids"][count:].any()


def test_local_harness_embeds_and_routes_like_the_models_in_process(direct):
    from streamcompose.testing import LocalRunner
    from streamcompose.topology import load_topology

    run = LocalRunner(load_topology(FILE)).run([(str(i), {"text": t})
                                                for i, t in enumerate(TEXTS)])
    encoded = {r.id: r.payload["embedding"] for r in run.topics["text-triage.encoder"]}
    embeddings = np.stack([encoded[str(i)] for i in range(len(TEXTS))])
    assert_same_embeddings(embeddings, reference(TEXTS))
    by_id = {r.id: r for r in run.results}
    ordered = [by_id[str(i)] for i in range(len(TEXTS))]
    assert_routed_like_the_classifier(direct, [r.payload for r in ordered],
                                      [r.path for r in ordered], embeddings)
    assert not run.dead_letters


async def publish_and_read(bootstrap: str, name: str, texts: list[str]
                           ) -> tuple[list[Result], list[Result]]:
    """Publish the texts; read back each one's encoder record and result, in order."""
    async with Client(bootstrap) as client:
        ids = await client.publish(name, [{"text": t} for t in texts])
        wanted, seen = set(ids), {}
        reader = client.read([f"{name}.encoder", f"{name}.out"], from_beginning=True)
        async with asyncio.timeout(180):
            async for record in reader:
                seen[record.topic, record.id] = record
                if len(seen) == 2 * len(wanted):
                    break
        await reader.aclose()
    return ([seen[f"{name}.encoder", i] for i in ids], [seen[f"{name}.out", i] for i in ids])


@pytest.mark.integration
def test_embeddings_through_kafka_equal_sentence_transformers(direct, deploy, bootstrap):
    m = deploy(FILE)
    encoded, results = asyncio.run(publish_and_read(bootstrap, m["name"], TEXTS))
    embeddings = np.stack([r.payload["embedding"] for r in encoded])
    assert embeddings.shape == (len(TEXTS), 384) and embeddings.dtype == np.float32
    assert_same_embeddings(embeddings, reference(TEXTS))
    assert_routed_like_the_classifier(direct, [r.payload for r in results],
                                      [r.path for r in results], embeddings)
    assert [r.payload["text"] for r in results] == TEXTS
    assert all(r.path[:4] == ("tokenize", "encoder", "classifier", "route") for r in results)
    # the classifier run in-process on sentence-transformers' own embeddings agrees too
    labels, _ = direct.classify(reference(TEXTS))
    assert [r.payload["label"] for r in results] == labels.tolist()
