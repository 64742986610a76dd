"""PES flows per second through the checks of ``POST /v1/pes/flows``, on the real sample.

Each flow goes through what the API runs before storing anything
(``kanol_actes_pes.pes.service.check_flow``): the encoding check and safe parsing, the
PES V2 schema, the header and the organisation, and the verification of every XAdES
signature (digests, RSA-SHA256, certificate at signing time, chain). Two variants of the
real sample in ``services/actes-pes/tests/data/pes`` (222 kB, one signed bordereau, two PDF
attachments): as published, its signer pinned as the trust anchor; and re-signed by a test
authority generated here. Serially, then in worker threads as the API does. Prints
figures; asserts nothing about them.

    uv run python -m bench.pes --seconds 5 --threads 2

``run()`` is the entry point other benches call (``await bench.pes.run(seconds=2)``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from lxml import etree

from bench.infra import percentile
from kanol_actes_pes.pes import pes_xml, service
from kanol_actes_pes.pes.signature import TrustAnchors
from kanol_actes_pes.pes.testing import TestPki, reshape_flow

SAMPLE = (
    Path(__file__).resolve().parents[1]
    / "services/actes-pes/tests/data/pes/PESALR2_25060187900027_190328_001.xml"
)
SIREN = "755800646"


@dataclass(frozen=True)
class Figures:
    name: str
    flows: int
    seconds: float
    threads: int
    p50_ms: float
    p99_ms: float
    size: int

    @property
    def per_second(self) -> float:
        return self.flows / self.seconds

    def line(self) -> str:
        megabytes = self.per_second * self.size / 1_000_000
        return (
            f"  {self.name:<34} {self.threads} thread(s): {self.per_second:7.1f} flows/s"
            f"  ({megabytes:5.1f} MB/s)  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms"
        )


def _pinned_anchor(content: bytes) -> TrustAnchors:
    tree = pes_xml.parse_safely(content)
    encoded = tree.getroot().findtext(f".//{{{pes_xml.NS_DS}}}X509Certificate") or ""
    der = base64.b64decode("".join(encoded.split()))
    return TrustAnchors((x509.load_der_x509_certificate(der),))


def _check_once(content: bytes, anchors: TrustAnchors) -> float:
    started = time.perf_counter()
    checked = service.check_flow(content, SIREN, anchors, accept_unsigned=False)
    assert checked.signer_trusted
    return time.perf_counter() - started


def _measure(
    name: str, content: bytes, anchors: TrustAnchors, seconds: float, threads: int
) -> Figures:
    _check_once(content, anchors)  # compile the schema in this thread, warm the caches
    durations: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    if threads == 1:
        while time.perf_counter() < deadline:
            durations.append(_check_once(content, anchors))
    else:

        def worker() -> list[float]:
            mine: list[float] = []
            while time.perf_counter() < deadline:
                mine.append(_check_once(content, anchors))
            return mine

        with ThreadPoolExecutor(threads) as pool:
            for found in pool.map(lambda _: worker(), range(threads)):
                durations.extend(found)
    elapsed = time.perf_counter() - started
    ordered = sorted(durations)
    return Figures(
        name=name,
        flows=len(durations),
        seconds=elapsed,
        threads=threads,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        size=len(content),
    )


async def run(seconds: float = 5.0, threads: int = 2) -> list[Figures]:
    """Measure both variants serially and with ``threads`` workers; print and return."""
    real = SAMPLE.read_bytes()
    pki = TestPki.create()
    resigned = reshape_flow(real, nom_fic="BENCH", pki=pki)
    variants = [
        ("real sample, signer pinned", real, _pinned_anchor(real)),
        ("re-signed, test authority", resigned, pki.anchors()),
    ]
    etree.clear_error_log()
    print(f"PES checks (parse, PES V2 schema, header, XAdES signature) on {SAMPLE.name}:")
    results: list[Figures] = []
    for name, content, anchors in variants:
        for count in sorted({1, threads}):
            figures = await asyncio.to_thread(_measure, name, content, anchors, seconds, count)
            print(figures.line())
            results.append(figures)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pes", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=2, help="worker threads")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.seconds, arguments.threads))


if __name__ == "__main__":
    main()
