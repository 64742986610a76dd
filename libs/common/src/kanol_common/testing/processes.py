"""Waiting for a service started as a process (tests, benchmarks) to answer its probe."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx


def wait_ready(
    name: str, url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0
) -> None:
    """Return once ``url`` answers 200; raise with the end of the log if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready at {url}:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]
