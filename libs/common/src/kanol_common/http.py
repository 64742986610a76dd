"""The app factory every service uses: health, metrics, problem details, tracing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanol_common.errors import install_problem_handlers
from kanol_common.logging import configure_logging, get_logger
from kanol_common.metrics import HTTP_LATENCY, HTTP_REQUESTS
from kanol_common.settings import CommonSettings
from kanol_common.tracing import configure_tracing

ReadinessCheck = Callable[[], Awaitable[None]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

log = get_logger(__name__)

_HEALTH_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


def create_app(
    settings: CommonSettings,
    *,
    title: str,
    description: str = "",
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """A FastAPI app with ``/livez``, ``/readyz``, ``/metrics`` and RFC 9457 errors.

    Readiness checks are coroutines that raise when a dependency is not ready; the
    service's lifespan registers them with :func:`add_readiness_check`.
    """
    configure_logging(settings)
    configure_tracing(settings)

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("service.starting", service=settings.service_name)
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield
        log.info("service.stopped", service=settings.service_name)

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=_lifespan)
    app.state.settings = settings
    app.state.readiness_checks = {}
    install_problem_handlers(app)
    app.add_middleware(_MeasureMiddleware)
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)

    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # One server span per request; the spans of each ASGI send and receive would only
    # repeat it, at a cost on every request.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="livez,readyz,metrics", exclude_spans=["receive", "send"]
    )
    return app


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    app.state.readiness_checks[name] = check


def _route_template(request: Request) -> str:
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", request.url.path))
    return "unmatched"


class _MeasureMiddleware:
    """Counts requests and times them until the response starts, per route template.

    Plain ASGI rather than ``@app.middleware("http")``, whose wrapping runs the rest of the
    app in a task of its own with streams between the two: a cost paid on every request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _HEALTH_PATHS:
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def measured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = _route_template(Request(scope))
                HTTP_REQUESTS.labels(scope["method"], route, str(message["status"])).inc()
                HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, measured_send)


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/livez", summary="The process answers")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz", summary="The database, Kafka and the outbox are ready")
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        ready = True
        for name, check in request.app.state.readiness_checks.items():
            try:
                await check()
            except Exception as exc:  # any failure means "not ready"
                checks[name] = f"failing: {exc}"
                ready = False
            else:
                checks[name] = "ok"
        status = 200 if ready else 503
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
