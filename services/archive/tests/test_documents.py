"""Fetching by claim check: what is archived is exactly what the reference announced."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from kanol_archive.documents import DocumentFetcher, DocumentRejected, DocumentUnavailable
from kanol_common.auth import TokenRequestError
from kanol_common.events import DocumentRef

CONTENT = b"%PDF-1.7 deliberation du conseil"
URI = "http://actes.test/v1/actes/a1/documents/acte"


class Tokens:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.issued = 0
        self.invalidated = 0

    async def token(self) -> str:
        if self.fail:
            raise TokenRequestError("identity refused a token to archive: invalid_client")
        self.issued += 1
        return f"token-{self.issued}"

    def invalidate(self) -> None:
        self.invalidated += 1


def _ref(content: bytes = CONTENT, **overrides: object) -> DocumentRef:
    values: dict[str, object] = {
        "role": "acte",
        "uri": URI,
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
        "media_type": "application/pdf",
        "filename": "acte.pdf",
    }
    values.update(overrides)
    return DocumentRef.model_validate(values)


Answer = Callable[[httpx.Request], httpx.Response]


async def _fetch(
    answer: Answer,
    ref: DocumentRef,
    tokens: Tokens | None = None,
    max_bytes: int = 10_000,
    trusted_origins: tuple[str, ...] = (),
) -> bytes:
    fetcher = DocumentFetcher(
        tokens or Tokens(),
        timeout=1.0,
        max_bytes=max_bytes,
        trusted_origins=trusted_origins,
        transport=httpx.MockTransport(answer),
    )
    await fetcher.open()
    try:
        fetched = await fetcher.fetch(ref)
        try:
            return fetched.read()
        finally:
            fetched.close()
    finally:
        await fetcher.close()


async def test_a_matching_document_is_fetched_with_a_service_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=CONTENT)

    content = await _fetch(answer, _ref())

    assert content == CONTENT
    assert seen[0].headers["authorization"] == "Bearer token-1"
    assert str(seen[0].url) == URI


async def test_a_document_with_another_fingerprint_is_rejected() -> None:
    ref = _ref(sha256=hashlib.sha256(b"what was announced").hexdigest())

    with pytest.raises(DocumentRejected, match="SHA-256"):
        await _fetch(lambda _: httpx.Response(200, content=CONTENT), ref)


async def test_a_shorter_document_is_rejected() -> None:
    with pytest.raises(DocumentRejected, match="fetched 3 bytes"):
        await _fetch(lambda _: httpx.Response(200, content=b"%PD"), _ref())


async def test_a_body_longer_than_announced_is_cut_off() -> None:
    with pytest.raises(DocumentRejected, match="more than the"):
        await _fetch(lambda _: httpx.Response(200, content=CONTENT * 100), _ref())


async def test_a_reference_over_the_limit_is_refused_without_a_request() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with pytest.raises(DocumentRejected, match="over the 10 limit"):
        await _fetch(answer, _ref(), max_bytes=10)


async def test_a_reference_outside_http_is_refused() -> None:
    with pytest.raises(DocumentRejected, match="not an http"):
        await _fetch(lambda _: httpx.Response(200), _ref(uri="file:///etc/passwd"))


async def test_a_document_from_an_untrusted_origin_is_refused_before_any_request() -> None:
    tokens = Tokens()

    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with pytest.raises(DocumentRejected, match="not a trusted document owner"):
        await _fetch(
            answer,
            _ref(uri="http://elsewhere.test/x"),
            tokens,
            trusted_origins=("http://actes.test/",),
        )
    assert tokens.issued == 0


async def test_a_document_from_a_trusted_origin_is_fetched() -> None:
    answer = lambda _: httpx.Response(200, content=CONTENT)  # noqa: E731

    assert await _fetch(answer, _ref(), trusted_origins=("HTTP://actes.test",)) == CONTENT


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_a_failing_owner_is_a_transient_error(status: int) -> None:
    with pytest.raises(DocumentUnavailable, match=str(status)):
        await _fetch(lambda _: httpx.Response(status), _ref())


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("too slow")], ids=repr
)
async def test_an_unreachable_owner_is_a_transient_error(error: httpx.HTTPError) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(DocumentUnavailable, match=type(error).__name__):
        await _fetch(answer, _ref())


@pytest.mark.parametrize(("status", "words"), [(404, "no such document"), (403, "refused")])
async def test_a_missing_or_forbidden_document_is_rejected(status: int, words: str) -> None:
    with pytest.raises(DocumentRejected, match=words):
        await _fetch(lambda _: httpx.Response(status), _ref())


async def test_a_refused_token_is_renewed_once() -> None:
    statuses = [401, 200]
    tokens = Tokens()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(statuses.pop(0), content=CONTENT)

    content = await _fetch(answer, _ref(), tokens)

    assert content == CONTENT
    assert (tokens.issued, tokens.invalidated) == (2, 1)


async def test_a_token_refused_twice_is_a_rejection() -> None:
    tokens = Tokens()

    with pytest.raises(DocumentRejected, match="refused archive's token \\(401\\)"):
        await _fetch(lambda _: httpx.Response(401), _ref(), tokens)
    assert tokens.invalidated == 1


async def test_no_token_from_identity_is_a_transient_error() -> None:
    with pytest.raises(DocumentUnavailable, match="no service token"):
        await _fetch(lambda _: httpx.Response(200, content=CONTENT), _ref(), Tokens(fail=True))
