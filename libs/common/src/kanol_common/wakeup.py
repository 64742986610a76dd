"""A background loop's doorbell: rung when work arrives, waited on with a polling fallback."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    """``ring()`` from the code that made work (a commit, a request); ``await wait(poll)``
    in the loop returns at the ring, or after ``poll`` seconds if nobody rang."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, poll_seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), poll_seconds)
        self._event.clear()
