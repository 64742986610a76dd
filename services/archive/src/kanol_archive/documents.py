"""Fetching documents from their owners by claim check, and checking them on the way in.

An event carries a :class:`DocumentRef` (URI, SHA-256, size), never the bytes. The archive
fetches each document with its own service token (scope ``documents:read``) and accepts it
only if its size and SHA-256 match the reference: what is archived is what was announced.
A document is spooled as it arrives (in memory up to a megabyte, then in a temporary file),
so a large scan costs a chunk of memory, not its size.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol
from urllib.parse import urlsplit

import httpx

from kanol_common.auth import TokenRequestError
from kanol_common.events import DocumentRef
from kanol_common.logging import get_logger

log = get_logger(__name__)

DOCUMENTS_SCOPE = "documents:read"


class DocumentUnavailable(Exception):
    """The owner could not hand the document over right now (network, 5xx): try later."""


class DocumentRejected(Exception):
    """The document can never be archived as referenced (missing, refused, altered)."""


class TokenSource(Protocol):
    async def token(self) -> str: ...

    def invalidate(self) -> None: ...


SPOOL_MEMORY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FetchedDocument:
    """A document, checked against the reference that announced them, spooled; close it."""

    ref: DocumentRef
    file: IO[bytes]

    def read(self) -> bytes:
        """The whole content (tests and small documents only)."""
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


def close_all(documents: Sequence[FetchedDocument]) -> None:
    for document in documents:
        document.close()


class DocumentFetcher:
    """Fetches documents by reference with a service token, and verifies them.

    Its HTTP client lives between :meth:`open` and :meth:`close` (the service's lifespan).
    """

    def __init__(
        self,
        tokens: TokenSource,
        *,
        timeout: float,
        max_bytes: int,
        trusted_origins: Sequence[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``trusted_origins``: where documents may come from; empty trusts any origin."""
        self.tokens = tokens
        self.trusted_origins = frozenset(origin.rstrip("/").lower() for origin in trusted_origins)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), transport=self._transport
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("The document fetcher is not open.")
        return self._client

    async def fetch_all(self, refs: Sequence[DocumentRef]) -> list[FetchedDocument]:
        """Every document, or the first failure with none of the spooled files left open."""
        # At once: an acte's documents come from the same owner, which answers in parallel.
        results = await asyncio.gather(*(self.fetch(ref) for ref in refs), return_exceptions=True)
        fetched = [result for result in results if isinstance(result, FetchedDocument)]
        failure = next((result for result in results if isinstance(result, BaseException)), None)
        if failure is not None:
            close_all(fetched)
            raise failure
        return fetched

    async def fetch(self, ref: DocumentRef) -> FetchedDocument:
        """The document, spooled; raises DocumentUnavailable or DocumentRejected."""
        url = urlsplit(ref.uri)
        if url.scheme not in {"http", "https"}:
            raise DocumentRejected(f"{ref.filename}: {ref.uri} is not an http(s) URL")
        origin = f"{url.scheme}://{url.netloc}".lower()
        if self.trusted_origins and origin not in self.trusted_origins:
            # Checked before any request: the service token never leaves for a stranger.
            raise DocumentRejected(f"{ref.filename}: {origin} is not a trusted document owner")
        if ref.size > self.max_bytes:
            raise DocumentRejected(
                f"{ref.filename}: announced at {ref.size} bytes, over the {self.max_bytes} limit"
            )

        # Not a with-block: the spool outlives this call, the FetchedDocument closes it.
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        try:
            sha256, size = await self._download(ref, spool, retry_unauthorized=True)
            if size != ref.size or sha256 != ref.sha256:
                raise DocumentRejected(
                    f"{ref.filename}: fetched {size} bytes with SHA-256 {sha256}, "
                    f"the reference announced {ref.size} bytes with SHA-256 {ref.sha256}"
                )
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        log.info("document.fetched", uri=ref.uri, sha256=sha256, size=size)
        return FetchedDocument(ref, spool)

    async def _download(
        self, ref: DocumentRef, spool: IO[bytes], *, retry_unauthorized: bool
    ) -> tuple[str, int]:
        headers = {"Authorization": f"Bearer {await self._token()}"}
        try:
            async with self.client.stream("GET", ref.uri, headers=headers) as response:
                if response.status_code == 401 and retry_unauthorized:
                    # The cached token may have expired early (clock skew, key rotation):
                    # one more try with a fresh token before calling it a refusal.
                    self.tokens.invalidate()
                else:
                    _check_status(ref, response)
                    return await _spool_at_most(ref, response, spool)
        except httpx.HTTPError as exc:
            raise DocumentUnavailable(
                f"{ref.filename}: cannot fetch {ref.uri}: {type(exc).__name__}: {exc}"
            ) from exc
        return await self._download(ref, spool, retry_unauthorized=False)

    async def _token(self) -> str:
        try:
            return await self.tokens.token()
        except TokenRequestError as exc:
            # identity away or refusing: either way the document cannot be fetched now,
            # and a later try (or a replay from the DLQ once fixed) may succeed.
            raise DocumentUnavailable(f"no service token for {DOCUMENTS_SCOPE}: {exc}") from exc


def _check_status(ref: DocumentRef, response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    if status >= 500 or status in {408, 425, 429}:
        raise DocumentUnavailable(f"{ref.filename}: {ref.uri} answered {status}")
    if status in {401, 403}:
        raise DocumentRejected(
            f"{ref.filename}: {ref.uri} refused archive's token ({status}); check that the "
            f"archive client is granted {DOCUMENTS_SCOPE}"
        )
    if status in {404, 410}:
        raise DocumentRejected(f"{ref.filename}: {ref.uri} answered {status}, no such document")
    raise DocumentRejected(f"{ref.filename}: {ref.uri} answered {status}")


async def _spool_at_most(
    ref: DocumentRef, response: httpx.Response, spool: IO[bytes]
) -> tuple[str, int]:
    """Write the body to ``spool`` while hashing it; its SHA-256 and size.

    Stops as soon as the body outgrows its announced size: a wrong or hostile reference
    cannot make the archive take an unbounded body.
    """
    digest = hashlib.sha256()
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if received > ref.size:
            raise DocumentRejected(
                f"{ref.filename}: {ref.uri} sent more than the {ref.size} bytes announced"
            )
        digest.update(chunk)
        # A chunk goes to memory, or to the page cache once spooled to disk: no thread hop.
        spool.write(chunk)
    return digest.hexdigest(), received
