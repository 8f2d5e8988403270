"""Scripts that run a real third-party reader in a fresh interpreter.

TensorFlow and PyTorch do not share a process well (importing one after the other can
crash), so each client runs as ``python -m tests.clients.<name> ARGS`` and prints JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_client(name: str, *args: str) -> Any:
    """Run ``tests/clients/<name>.py`` with ``args``; return the JSON it prints."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", f"tests.clients.{name}", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(f"client {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
