"""The HTTP adapter of the Hélios port.

The contract (which the Hélios simulator serves):

- ``POST /v1/depots`` with the PES_Aller as body (``application/xml``), an
  ``Idempotency-Key`` header and the file name in ``Content-Disposition``: 202 and
  ``{"depot_id", "idempotency_key", "received_at"}``, the same answer for the same key;
  4xx problem+json when the file itself is refused at the gateway; 5xx when it fails.
- ``GET /v1/depots?idempotency_key=K``: 200 and ``{"depots": [receipt]}``, empty when
  Hélios never took that key.
- ``GET /v1/acquits?after=<cursor>&wait=<seconds>`` and ``GET /v1/retours?after=<cursor>``:
  200 and ``{"files": [...], "cursor"}``, each file ``{"cursor", "id", "depot_id",
  "id_coll", "filename", "received_at", "content_base64"}``.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import httpx

from kanol_actes_pes.pes.helios.port import (
    DepositReceipt,
    DepositRejected,
    HeliosFile,
    HeliosUnavailable,
    PesDeposit,
)

MEDIA_TYPE_XML = "application/xml"


class HttpHeliosGateway:
    """A :class:`~kanol_actes_pes.pes.helios.port.HeliosGateway` over HTTP."""

    def __init__(self, client: httpx.AsyncClient, *, timeout: float = 30.0) -> None:
        self._client = client
        self._timeout = timeout

    @classmethod
    def for_url(cls, base_url: str, *, timeout: float = 30.0) -> HttpHeliosGateway:
        return cls(httpx.AsyncClient(base_url=base_url), timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deposit(self, deposit: PesDeposit) -> DepositReceipt:
        headers = {
            "Content-Type": MEDIA_TYPE_XML,
            "Idempotency-Key": deposit.idempotency_key,
            "Content-Disposition": f'attachment; filename="{deposit.filename}"',
        }
        response = await self._request(
            "POST", "/v1/depots", content=deposit.content, headers=headers
        )
        if response.status_code >= 500 or response.status_code == 429:
            raise HeliosUnavailable(f"Hélios answered {response.status_code}: {_detail(response)}")
        if response.status_code not in (200, 201, 202):
            raise DepositRejected(_detail(response))
        return _receipt(response.json())

    async def find_deposit(self, idempotency_key: str) -> DepositReceipt | None:
        response = await self._request(
            "GET", "/v1/depots", params={"idempotency_key": idempotency_key}
        )
        if response.status_code != 200:
            raise HeliosUnavailable(f"Hélios answered {response.status_code}: {_detail(response)}")
        found = response.json()["depots"]
        return _receipt(found[0]) if found else None

    async def fetch_acquits(
        self, after_cursor: str | None, wait_seconds: float
    ) -> list[HeliosFile]:
        params: dict[str, str] = {"wait": f"{wait_seconds:g}"}
        if after_cursor is not None:
            params["after"] = after_cursor
        return await self._files("/v1/acquits", params, self._timeout + wait_seconds)

    async def fetch_retours(self, after_cursor: str | None) -> list[HeliosFile]:
        params = {} if after_cursor is None else {"after": after_cursor}
        return await self._files("/v1/retours", params, self._timeout)

    async def _files(self, url: str, params: dict[str, str], seconds: float) -> list[HeliosFile]:
        response = await self._request("GET", url, params=params, read_seconds=seconds)
        if response.status_code != 200:
            raise HeliosUnavailable(f"Hélios answered {response.status_code}: {_detail(response)}")
        try:
            return [_file(item) for item in response.json()["files"]]
        except (KeyError, ValueError, TypeError) as exc:
            raise HeliosUnavailable(f"Hélios answered an unreadable feed: {exc!r}") from exc

    async def _request(
        self, method: str, url: str, *, read_seconds: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method, url, timeout=read_seconds or self._timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise HeliosUnavailable(f"Hélios unreachable: {exc!r}") from exc


def _receipt(body: dict[str, Any]) -> DepositReceipt:
    return DepositReceipt(
        helios_id=str(body["depot_id"]),
        idempotency_key=str(body["idempotency_key"]),
        received_at=datetime.fromisoformat(body["received_at"]),
    )


def _file(item: dict[str, Any]) -> HeliosFile:
    depot_id = item.get("depot_id")
    return HeliosFile(
        cursor=str(item["cursor"]),
        helios_id=str(item["id"]),
        depot_id=None if depot_id is None else str(depot_id),
        id_coll=str(item["id_coll"]),
        filename=str(item["filename"]),
        content=base64.b64decode(item["content_base64"], validate=True),
        received_at=datetime.fromisoformat(item["received_at"]),
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]
