"""identity's errors: problem details for its own API, RFC 6749 errors for the token endpoint."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from kanol_common.errors import Conflict, NotFound


class OrganisationNotFound(NotFound):
    type_slug = "organisation-not-found"
    title = "Organisation not found"


class OrganisationAlreadyRegistered(Conflict):
    type_slug = "organisation-already-registered"
    title = "Organisation already registered"


class ApiClientAlreadyRegistered(Conflict):
    type_slug = "api-client-already-registered"
    title = "API client already registered"


class OAuthError(Exception):
    """An error of the token endpoint, answered in the shape OAuth clients expect.

    RFC 6749 §5.2 defines a JSON body with ``error`` and ``error_description``, not problem
    details: client libraries read that shape.
    """

    status = 400
    error = "invalid_request"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error, "error_description": self.description}
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="kanol-identity"'
        return JSONResponse(body, status_code=self.status, headers=headers)


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    status = 401
    error = "invalid_client"


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"
