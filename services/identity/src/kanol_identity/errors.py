"""identity's errors: problem details for its own API, RFC 6749 errors for the token endpoint."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from kanol_common.errors import Conflict, Forbidden, InvalidContent, NotFound


class OrganisationNotFound(NotFound):
    type_slug = "organisation-not-found"
    title = "Organisation not found"


class OrganisationAlreadyRegistered(Conflict):
    type_slug = "organisation-already-registered"
    title = "Organisation already registered"


class ApiClientAlreadyRegistered(Conflict):
    type_slug = "api-client-already-registered"
    title = "API client already registered"


class OrganisationParentInvalid(InvalidContent):
    type_slug = "organisation-parent-invalid"
    title = "The organisation cannot have this parent"


class AgentNotFound(NotFound):
    type_slug = "agent-not-found"
    title = "Agent not found"


class AgentLoginTaken(Conflict):
    type_slug = "agent-login-taken"
    title = "Login already taken"


class AgentInactive(Conflict):
    type_slug = "agent-inactive"
    title = "The agent is deactivated"


class TotpNotEnrolled(Conflict):
    type_slug = "totp-not-enrolled"
    title = "No second factor is being enrolled"


class TotpCodeInvalid(InvalidContent):
    type_slug = "totp-code-invalid"
    title = "The code is not valid"


class ApiClientNotFound(NotFound):
    type_slug = "api-client-not-found"
    title = "API client not found"


class ClientRevoked(Conflict):
    type_slug = "api-client-revoked"
    title = "The API client is revoked"


class ClientKeyInvalid(InvalidContent):
    type_slug = "client-key-invalid"
    title = "The client's public key cannot be used"


class NotSubscribed(InvalidContent):
    """A scope or a role names a service the organisation is not subscribed to."""

    type_slug = "not-subscribed"
    title = "The organisation is not subscribed to this service"


class NotGrantable(Forbidden):
    """An organisation's admin tried to grant what only the syndicate's operators grant."""

    type_slug = "not-grantable"
    title = "Only the platform's operators may grant this"


class OperatorOnly(Forbidden):
    type_slug = "operator-only"
    title = "Only the platform's operators may do this"


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
