"""The app factory every service uses: health, metrics, problem details, tracing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match

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
    app.middleware("http")(_measure)
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)

    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="livez,readyz,metrics")
    return app


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    app.state.readiness_checks[name] = check


def _route_template(request: Request) -> str:
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", request.url.path))
    return "unmatched"


async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    response = await call_next(request)
    if request.url.path in _HEALTH_PATHS:
        return response

    route = _route_template(request)
    HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
    return response


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
