"""The HTTP adapter of the prefecture port: posts transmissions, long-polls return messages.

The contract (which the prefecture simulator serves):

- ``POST /v1/transmissions`` with the tar.gz as body (``application/gzip``) and an
  ``Idempotency-Key`` header: 202 and ``{"transmission_id", "idempotency_key",
  "received_at"}``, the same answer for the same key; 429 with ``Retry-After`` beyond the
  hourly volume; 4xx problem+json when the archive itself is refused.
- ``GET /v1/transmissions?idempotency_key=K``: 200 and ``{"transmissions": [receipt]}``,
  empty when the gateway never took that key.
- ``GET /v1/messages?after=<cursor>&wait=<seconds>``: 200 and ``{"messages": [...],
  "cursor"}``, each message ``{"cursor", "code", "filename", "transmission_id",
  "identifiant_acte", "received_at", "content_base64"}`` and, for a letter with files or a
  classification, ``"files": [{"name", "media_type", "content_base64"}]`` and
  ``"departement"``.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import httpx

from kanol_actes_pes.prefecture.port import (
    ArchiveFile,
    GatewayBusy,
    GatewayUnavailable,
    ReturnMessage,
    TransmissionArchive,
    TransmissionReceipt,
    TransmissionRejected,
)
from kanol_actes_pes.prefecture.transmission import MEDIA_TYPE_ARCHIVE

DEFAULT_RETRY_AFTER_SECONDS = 60.0


class HttpPrefectureGateway:
    """A :class:`~kanol_actes_pes.prefecture.port.PrefectureGateway` over HTTP."""

    def __init__(self, client: httpx.AsyncClient, *, timeout: float = 30.0) -> None:
        self._client = client
        self._timeout = timeout

    @classmethod
    def for_url(cls, base_url: str, *, timeout: float = 30.0) -> HttpPrefectureGateway:
        return cls(httpx.AsyncClient(base_url=base_url), timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def transmit(self, archive: TransmissionArchive) -> TransmissionReceipt:
        headers = {
            "Content-Type": MEDIA_TYPE_ARCHIVE,
            "Idempotency-Key": archive.idempotency_key,
            "Content-Disposition": f'attachment; filename="{archive.filename}"',
        }
        response = await self._request(
            "POST", "/v1/transmissions", content=archive.content, headers=headers
        )
        if response.status_code == 429:
            raise GatewayBusy(_detail(response), _retry_after(response))
        if response.status_code >= 500:
            raise GatewayUnavailable(
                f"gateway answered {response.status_code}: {_detail(response)}"
            )
        if response.status_code not in (200, 201, 202):
            raise TransmissionRejected(_detail(response))
        return _receipt(response.json())

    async def has_transmission(self, idempotency_key: str) -> TransmissionReceipt | None:
        response = await self._request(
            "GET", "/v1/transmissions", params={"idempotency_key": idempotency_key}
        )
        if response.status_code != 200:
            raise GatewayUnavailable(
                f"gateway answered {response.status_code}: {_detail(response)}"
            )
        found = response.json()["transmissions"]
        return _receipt(found[0]) if found else None

    async def fetch_messages(
        self, after_cursor: str | None, wait_seconds: float
    ) -> list[ReturnMessage]:
        params: dict[str, str] = {"wait": f"{wait_seconds:g}"}
        if after_cursor is not None:
            params["after"] = after_cursor
        response = await self._request(
            "GET", "/v1/messages", params=params, read_seconds=self._timeout + wait_seconds
        )
        if response.status_code != 200:
            raise GatewayUnavailable(
                f"gateway answered {response.status_code}: {_detail(response)}"
            )
        return [_return_message(item) for item in response.json()["messages"]]

    async def _request(
        self, method: str, url: str, *, read_seconds: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method, url, timeout=read_seconds or self._timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"gateway unreachable: {exc!r}") from exc


def _receipt(body: dict[str, Any]) -> TransmissionReceipt:
    return TransmissionReceipt(
        transmission_id=str(body["transmission_id"]),
        idempotency_key=str(body["idempotency_key"]),
        received_at=datetime.fromisoformat(body["received_at"]),
    )


def _return_message(item: dict[str, Any]) -> ReturnMessage:
    return ReturnMessage(
        cursor=str(item["cursor"]),
        code=str(item["code"]),
        filename=str(item["filename"]),
        content=base64.b64decode(item["content_base64"], validate=True),
        transmission_id=item.get("transmission_id"),
        identifiant_acte=item.get("identifiant_acte"),
        received_at=datetime.fromisoformat(item["received_at"]),
        departement=item.get("departement"),
        files=tuple(
            ArchiveFile(
                name=str(file["name"]),
                content=base64.b64decode(file["content_base64"], validate=True),
                media_type=str(file.get("media_type", "application/pdf")),
            )
            for file in item.get("files", [])
        ),
    )


def _unavailable(response: httpx.Response) -> GatewayUnavailable:
    return GatewayUnavailable(f"gateway answered {response.status_code}: {_detail(response)}")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
