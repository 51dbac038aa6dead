"""Rolling upgrades on the real broker: the digits cascade's CNN upgraded to a retrained
version under a steady stream (every request answered once, by a named version, versions
never going backwards within a partition, order kept, only the new version afterwards);
a model that fails to load changing nothing; a restarted worker running the upgraded
version; rollback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures import ROOT, TOPOLOGIES, trained

from streamcompose import Client
from streamcompose.client import Result
from streamcompose.deploy.registry import Deployment
from streamcompose.deploy.upgrade import upgrade
from streamcompose.topology import load_topology
from streamcompose.topology.versions import agent_version

pytestmark = pytest.mark.integration

RATE = 20.0  # requests per second
MARGIN_S = 1.5  # of the stream before the upgrade, and after it returned


@pytest.fixture(scope="session")
def cnn_v2(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN retrained with another seed, by the training script (kept in
    pytest's cache between runs, where it has one)."""
    trained("digits")
    cache = getattr(request.config, "cache", None)
    out = cache.mkdir("cnn-v2") if cache is not None else tmp_path_factory.mktemp("cnn-v2")
    if not (out / "digits_cnn.pt").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "train_digits.py"), "--only",
                        "digits_cnn.pt", "--seed", "1", "--out", str(out)], check=True,
                       capture_output=True)
    return out / "digits_cnn.pt"


def digits_cascade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
                   ) -> Path:
    """The digits cascade with two CNN replicas, in ``tmp_path``; its python modules on
    the import path of this process and of ``env`` (the CLI's, so the workers')."""
    monkeypatch.syspath_prepend(str(TOPOLOGIES))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TOPOLOGIES), env.get("PYTHONPATH"))
                                        if p)
    data = yaml.safe_load((TOPOLOGIES / "digits_cascade.yaml").read_text())
    data["agents"]["cnn"]["replicas"] = 2
    data["agents"]["cnn"]["model"]["path"] = str(TOPOLOGIES / "models" / "digits_cnn.pt")
    file = tmp_path / "digits.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    return file


def cnn_version(result: Result) -> str:
    (version,) = [e["version"] for e in result.lineage if e["agent"] == "cnn"]
    return version


async def stream_through_upgrade(bootstrap: str, name: str, new: Path
                                 ) -> tuple[list[str], list[Result], float]:
    """Send requests at RATE from MARGIN_S before the upgrade to MARGIN_S after it;
    return the ids sent, every result read (duplicates included, in the order read) and
    when the upgrade returned (ms since the epoch)."""
    from sklearn.datasets import load_digits

    pixels = load_digits().data.tolist()
    results: list[Result] = []
    upgraded = asyncio.Event()
    done_ms = 0.0
    async with Client(bootstrap) as client:

        async def read() -> None:
            async for r in client.read([f"{name}.out"], from_beginning=True):
                results.append(r)

        async def send() -> list[str]:
            pending, i = [], 0
            while not upgraded.is_set():
                pending.append(await client.send(name, {"pixels": pixels[i % len(pixels)]},
                                                 f"r{i:05d}"))
                i += 1
                await asyncio.sleep(1 / RATE)
            return list(await asyncio.gather(*pending))

        async def swap() -> None:
            nonlocal done_ms
            await asyncio.sleep(MARGIN_S)
            await asyncio.to_thread(upgrade, name, "cnn", path=new, version="2")
            done_ms = time.time() * 1000
            await asyncio.sleep(MARGIN_S)
            upgraded.set()

        reader = asyncio.create_task(read())
        sent, _ = await asyncio.gather(send(), swap())
        deadline = time.monotonic() + 60
        while len({r.id for r in results}) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # a duplicate would come now
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return sent, results, done_ms


def test_cnn_upgraded_under_a_steady_stream(
        cli: Callable[..., subprocess.CompletedProcess], sc_env: dict[str, str],
        bootstrap: str, unique: str, tmp_path: Path, cnn_v2: Path,
        monkeypatch: pytest.MonkeyPatch):
    file = digits_cascade(tmp_path, monkeypatch, sc_env)
    old = agent_version(load_topology(file), "cnn")
    cli("deploy", str(file), "--name", unique)
    try:
        sent, results, done_ms = asyncio.run(stream_through_upgrade(bootstrap, unique, cnn_v2))
        state = json.loads(cli("status", unique, "--json", "--no-lag").stdout)
    finally:
        cli("stop", unique, check=False)

    counts = Counter(r.id for r in results)
    assert set(counts) == set(sent) and max(counts.values()) == 1, "lost or duplicated"
    versions = Counter(cnn_version(r) for r in results)
    assert set(versions) == {old, "2"} and min(versions.values()) > 0, versions
    by_partition: dict[int, list[Result]] = defaultdict(list)
    for r in results:
        assert [e["agent"] for e in r.lineage] == ["preprocess", "cnn", "postprocess"]
        by_partition[r.partition].append(r)
    for answers in by_partition.values():
        seen = [cnn_version(r) for r in answers]
        assert seen == sorted(seen, key=lambda v: v == "2"), "a version went backwards"
        assert [r.id for r in answers] == sorted(r.id for r in answers), "order not kept"
    assert all(cnn_version(r) == "2" for r in results if r.entered_ms > done_ms)
    cnn = next(a for a in state["agents"] if a["name"] == "cnn")
    assert [w["version"] for w in cnn["workers"]] == ["2", "2"]
    snapshot = yaml.safe_load(Deployment(unique).snapshot_file.read_text())
    assert snapshot["agents"]["cnn"]["model"] == {
        **snapshot["agents"]["cnn"]["model"], "path": str(cnn_v2.resolve()), "version": "2"}


TAGGER = '''
class Tag:
    inputs = ("x",)
    outputs = ("x", "tag")

    def __init__(self):
        {setup}

    def __call__(self, batch):
        return [{{"x": p["x"], "tag": "{tag}"}} for p in batch]
'''

TOPOLOGY = '''
name: tagger
fields: [x]
partitions: 2
agents:
  tag:
    inputs: [$input]
    model: {{runtime: python, entrypoint: "{module}:Tag"}}
'''


def test_failed_load_restart_and_rollback(cli: Callable[..., subprocess.CompletedProcess],
                                          bootstrap: str, unique: str, tmp_path: Path):
    modules = {}
    for tag, setup in (("one", "pass"), ("two", "pass"),
                       ("broken", "raise RuntimeError('no weights here')")):
        modules[tag] = f"tag_{tag}_{tmp_path.name}"
        (tmp_path / f"{modules[tag]}.py").write_text(TAGGER.format(setup=setup, tag=tag))
    file = tmp_path / "tagger.yaml"
    file.write_text(TOPOLOGY.format(module=modules["one"]))
    cli("deploy", str(file), "--name", unique)

    def answer() -> tuple[str, str]:
        async def ask() -> Result:
            async with Client(bootstrap) as client:
                return await client.infer(unique, {"x": 1}, timeout=60)
        r = asyncio.run(ask())
        return r.payload["tag"], r.lineage[-1]["version"]

    def workers() -> list[dict[str, Any]]:
        return json.loads(cli("status", unique, "--json", "--no-lag").stdout)[
            "agents"][0]["workers"]

    try:
        tag, v1 = answer()
        assert tag == "one" and workers()[0]["version"] == v1

        failed = cli("upgrade", unique, "tag", "--entrypoint", f"{modules['broken']}:Tag",
                     check=False)
        assert failed.returncode == 1 and "exited" in failed.stderr, failed.stderr
        assert answer() == ("one", v1)
        assert not Deployment(unique).next_snapshot_file.exists()

        done = json.loads(cli("upgrade", unique, "tag", "--entrypoint",
                              f"{modules['two']}:Tag", "--json").stdout)
        tag, v2 = answer()
        assert (tag, done["from_version"], done["to_version"]) == ("two", v1, v2) and v2 != v1

        os.kill(workers()[0]["pid"], signal.SIGKILL)  # its successor runs the snapshot
        assert answer() == ("two", v2)

        rolled = json.loads(cli("rollback", unique, "tag", "--json").stdout)
        assert (rolled["from_version"], rolled["to_version"]) == (v2, v1)
        assert answer() == ("one", v1) and workers()[0]["version"] == v1
        again = cli("rollback", unique, "tag", check=False)
        assert again.returncode == 1 and "no earlier version" in again.stderr
    finally:
        cli("stop", unique, check=False)
