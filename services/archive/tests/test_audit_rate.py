"""The audit's pacing: reads wait just long enough to hold the configured rate."""

from __future__ import annotations

from kanol_archive.audit import RateLimit


class Clock:
    """Time that moves only when the pacing sleeps; records the sleeps asked for."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


async def test_reads_wait_to_hold_the_rate() -> None:
    clock = Clock()
    limit = RateLimit(2.0, clock=clock, sleep=clock.sleep)  # 2 MB/s

    await limit.spend(1_000_000)
    await limit.spend(1_000_000)
    clock.now += 1.0  # hashing took a second: the next read owes less
    await limit.spend(3_000_000)

    assert clock.sleeps == [0.5, 0.5, 0.5]


async def test_no_rate_means_no_wait() -> None:
    clock = Clock()
    for unlimited in (RateLimit(None, clock=clock, sleep=clock.sleep), RateLimit(0)):
        await unlimited.spend(10_000_000)

    assert clock.sleeps == []
