"""The small JSON file through which a worker tells the supervisor and ``status`` how it
is doing: pid, status, whether it joined its group, its partitions and metrics port.

>>> import tempfile, pathlib
>>> s = WorkerState(pathlib.Path(tempfile.mkdtemp()) / "inc-0.json")
>>> s.update(status="running", joined=True)
>>> WorkerState.read(s.path)["status"]
'running'
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class WorkerState:
    """Writes a worker's state file atomically on each update."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {"pid": os.getpid(), "status": "starting",
                                     "joined": False, "started": time.time()}

    @classmethod
    def disabled(cls) -> WorkerState:
        """A state that is kept in memory only (in-process use and tests)."""
        return cls(None)

    def update(self, **fields: Any) -> None:
        self.data.update(fields, updated=time.time())
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """A worker's last written state, or an empty dict."""
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
