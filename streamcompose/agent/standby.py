"""A standby worker: one started to take over a replica during a rolling upgrade
(:mod:`streamcompose.deploy.rolling`). It loads and warms its model like any worker, then
says ``warm`` in its own state file and waits, holding no Kafka client, until the
supervisor sends SIGUSR1 (once the replica's old worker has committed and exited); from
then on it is the replica's worker and writes the replica's state file.

>>> import asyncio, os, signal, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> state = WorkerState(folder / "cnn-0.standby.json")
>>> async def demo():
...     loop = asyncio.get_running_loop()
...     loop.call_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
...     await Standby(folder / "cnn-0.json").wait(state)
>>> asyncio.run(demo())
>>> state.path.name, WorkerState.read(folder / "cnn-0.json")["status"]
('cnn-0.json', 'taking over')
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from streamcompose.agent.state import WorkerState

log = logging.getLogger("streamcompose.agent")
GO = signal.SIGUSR1


class Standby:
    """Holds a warmed worker back until the replica it is to run is free."""

    def __init__(self, state_file: Path | None) -> None:
        self.state_file = state_file  # the replica's own, written once taken over

    async def wait(self, state: WorkerState) -> None:
        """Say ``warm``, wait for :data:`GO`, then write the replica's state file."""
        go = asyncio.Event()
        # replaces mode's SIGUSR1 handler (which dumps the stacks) for good: a later
        # SIGUSR1 then does nothing
        asyncio.get_running_loop().add_signal_handler(GO, go.set)
        state.update(status="warm")
        log.info("standby: warm, waiting to take over")
        await go.wait()
        standby = state.path
        state.path = self.state_file
        state.update(status="taking over")
        if standby is not None:
            standby.unlink(missing_ok=True)
