"""The service's own error hierarchy. Each error has a stable machine `code` and an HTTP status;
the API layer maps them to problem+json (and to HTML pages for browsers) in one place."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base class. `detail` is safe to show to the caller: it never contains a secret."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    # The scheme a 401 asks for (RFC 9110: a 401 names one in WWW-Authenticate).
    www_authenticate: ClassVar[str | None] = None
    # Whether every answer of this kind carries Retry-After (declared so in the OpenAPI).
    retry_after_always: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        self.detail = detail or self.title
        self.retry_after = retry_after
        super().__init__(self.detail)


class InvalidRequest(ServiceError):
    code = "invalid_request"
    status = 400
    title = "The request is malformed"


class ValidationFailed(ServiceError):
    """A parameter or body does not match the documented schema (raised by FastAPI)."""

    code = "validation_error"
    status = 422
    title = "The request is invalid"


class PayloadTooLarge(ServiceError):
    """The request body is over MAX_BODY_BYTES (refused before it is read)."""

    code = "payload_too_large"
    status = 413
    title = "The request body is too large"


class ReturnToNotAllowed(ServiceError):
    code = "return_to_not_allowed"
    status = 400
    title = "return_to is not an allowed origin"


class InvalidState(ServiceError):
    """The OAuth state is missing, unknown, expired, used, or belongs to another browser."""

    code = "invalid_state"
    status = 400
    title = "This authorization link is invalid or has expired"


class InvalidSession(ServiceError):
    code = "invalid_session"
    status = 400
    title = "This connect link is invalid, already used, or expired"


class AuthorizationDenied(ServiceError):
    code = "authorization_denied"
    status = 400
    title = "Authorization was not granted at TikTok"


class AuthorizationFailed(ServiceError):
    """TikTok refused the code itself (used, expired or unknown): the person starts again."""

    code = "authorization_failed"
    status = 400
    title = "TikTok did not accept the authorization"


class AppCredentialsRejected(ServiceError):
    """TikTok refused our app in the code exchange (secret, app blocked, app mismatch):
    our configuration, not the browser's doing."""

    code = "app_credentials_rejected"
    status = 502
    title = "TikTok refused this service's app credentials"


class Unauthenticated(ServiceError):
    code = "unauthenticated"
    status = 401
    title = "A valid API key is required"
    www_authenticate = "Bearer"


class SessionRequired(ServiceError):
    """/authorize needs a link from POST /connect-sessions (CONNECT_SESSIONS_REQUIRED)."""

    code = "connect_session_required"
    status = 401
    title = "A connect link is required"
    www_authenticate = 'ConnectSession realm="/connect-sessions"'


class Forbidden(ServiceError):
    code = "forbidden"
    status = 403
    title = "This API key may not access this subject"


class NotConnected(ServiceError):
    code = "not_connected"
    status = 404
    title = "No authorization is stored for this subject"


class ConnectSessionNotFound(ServiceError):
    """No connect session of this id was opened with this API key (or it is past its
    retention): another key's sessions are answered the same, so none can be probed."""

    code = "connect_session_not_found"
    status = 404
    title = "No connect session of this id was opened with this API key"


class ReauthorizationRequired(ServiceError):
    code = "reauthorization_required"
    status = 409
    title = "The authorization was revoked or expired; the user must authorize again"


class RateLimited(ServiceError):
    """No slot in the app's TikTok call budget (budget.RateBudget) comes soon
    enough; always says when to come back."""

    code = "rate_limited"
    status = 429
    title = "TikTok's call budget is spent for now; try again later"
    retry_after_always = True


class SubjectRequired(InvalidRequest):
    """A gateway call names no advertiser or TikTok account, so no grant can serve it."""

    code = "subject_required"
    title = "The call names no advertiser_id, advertiser_ids or business_id"


class SubjectsSpanGrants(InvalidRequest):
    """A gateway call names subjects that no single token serves (TikTok takes one token a
    call)."""

    code = "subjects_span_grants"
    title = "The subjects of this call are not all served by one authorization"


class PathNotAllowed(ServiceError):
    """A gateway path that could leave /open_api/v1.3/: dot segments, encoded characters,
    empty segments, an absolute URL."""

    code = "path_not_allowed"
    status = 400
    title = "This path cannot be forwarded to TikTok"


class EndpointRefused(ServiceError):
    """The gateway never forwards TikTok's OAuth endpoints: they need the app secret."""

    code = "endpoint_refused"
    status = 403
    title = "This TikTok endpoint is not available through the gateway"


class UpstreamUnavailable(ServiceError):
    code = "upstream_unavailable"
    status = 503
    title = "TikTok is unavailable; try again later"


class DatabaseUnavailable(ServiceError):
    code = "database_unavailable"
    status = 503
    title = "The database is unavailable; try again later"

    def __init__(self, detail: str | None = None, *, retry_after: int | None = 5) -> None:
        # Every answer of this kind says when to come back (a restart takes seconds).
        super().__init__(detail, retry_after=retry_after)


class TokenUnreadable(ServiceError):
    """A stored ciphertext does not decrypt: its key was removed from TOKEN_ENCRYPTION_KEYS,
    or the row was tampered with."""

    code = "token_unreadable"
    status = 500
    title = "The stored token cannot be decrypted with the configured keys"
