"""RFC 9457 problem details: one root error carrying its HTTP status and a stable type."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kanol_common.logging import get_logger

PROBLEM_BASE_URI = "https://kanol.fr/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

log = get_logger(__name__)


class Problem(Exception):
    """An error a caller can act on. Subclasses set the status, a stable type and a title."""

    status: int = 500
    type_slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE_URI + self.type_slug

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class BadRequest(Problem):
    status = 400
    type_slug = "bad-request"
    title = "Bad request"


class Unauthorized(Problem):
    status = 401
    type_slug = "unauthorized"
    title = "Authentication required"


class Forbidden(Problem):
    status = 403
    type_slug = "forbidden"
    title = "Forbidden"


class NotFound(Problem):
    status = 404
    type_slug = "not-found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    type_slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(Problem):
    status = 413
    type_slug = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(Problem):
    status = 415
    type_slug = "unsupported-media-type"
    title = "Unsupported media type"


class InvalidContent(Problem):
    status = 422
    type_slug = "invalid-content"
    title = "Invalid content"


class ServiceUnavailable(Problem):
    status = 503
    type_slug = "service-unavailable"
    title = "Service unavailable"


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return JSONResponse(
        problem.to_dict(instance=request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    log.info(
        "http.problem",
        status=exc.status,
        type=exc.type_slug,
        detail=exc.detail,
        path=request.url.path,
    )
    return problem_response(exc, request)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": list(error.get("loc", ())), "message": error.get("msg", "")}
        for error in exc.errors()
    ]
    problem = InvalidContent("The request does not match the expected shape.", errors=errors)
    log.info("http.invalid_request", path=request.url.path, errors=errors)
    return problem_response(problem, request)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    problem = Problem(str(exc.detail))
    problem.status = exc.status_code
    problem.type_slug = f"http-{exc.status_code}"
    problem.title = str(exc.detail)
    return problem_response(problem, request)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("http.unexpected_error", path=request.url.path)
    return problem_response(Problem("An unexpected error occurred."), request)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
