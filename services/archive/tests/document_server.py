"""A stand-in for the owners of documents (actes-pes) and for identity's token endpoint.

A real HTTP server on loopback, run by uvicorn in a thread: archive reaches it over TCP with
its own httpx client, exactly as it reaches actes-pes. ``POST /oauth/token`` hands out
client-credentials tokens signed by a :class:`TokenFactory`; ``GET /documents/{name}``
serves a document only to a bearer of ``documents:read``.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Form, Header, Response
from fastapi.responses import JSONResponse

from kanol_common.auth import InvalidToken
from kanol_common.testing.auth import TokenFactory

SERVICE_SIREN = "253514491"


@dataclass
class DocumentServer:
    """What the server serves, and what it was asked."""

    tokens: TokenFactory
    client_id: str
    client_secret: str
    url: str = ""
    documents: dict[str, bytes] = field(default_factory=dict)
    # Names whose next requests answer with an error status, one entry per request.
    failures: dict[str, list[int]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    tokens_issued: int = 0

    def uri(self, name: str) -> str:
        return f"{self.url}/documents/{name}"

    def app(self) -> FastAPI:
        app = FastAPI()
        verifier = self.tokens.verifier()

        @app.post("/oauth/token")
        async def token(
            grant_type: str = Form(),
            scope: str = Form(""),
            authorization: str = Header(""),
        ) -> JSONResponse:
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode())
            if authorization != f"Basic {expected.decode()}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if grant_type != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            self.tokens_issued += 1
            access_token = self.tokens.issue(SERVICE_SIREN, scope, client_id=self.client_id)
            return JSONResponse(
                {"access_token": access_token, "token_type": "Bearer", "expires_in": 300}
            )

        @app.get("/documents/{name}")
        async def document(name: str, authorization: str = Header("")) -> Response:
            self.requests[name] += 1
            try:
                caller = await verifier.verify(authorization.removeprefix("Bearer "))
            except InvalidToken:
                return Response(status_code=401)
            if "documents:read" not in caller.scopes:
                return Response(status_code=403)
            pending = self.failures.get(name)
            if pending:
                return Response(status_code=pending.pop(0))
            if name not in self.documents:
                return Response(status_code=404)
            return Response(self.documents[name], media_type="application/octet-stream")

        return app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_document_server(server: DocumentServer) -> Iterator[DocumentServer]:
    port = _free_port()
    config = uvicorn.Config(
        server.app(), host="127.0.0.1", port=port, log_config=None, log_level="warning"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="document-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the document server did not start")
        time.sleep(0.02)
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
