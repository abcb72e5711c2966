"""Everything this package raises on purpose.

The hierarchy::

    ProfileError
    ├── InvalidQuery                 (also a ValueError: bad parameters, nothing was sent)
    ├── ConfigurationError           (the client's settings stop it before sending)
    │   ├── MissingKey
    │   ├── UnsupportedRegion
    │   ├── InsecureEndpoint
    │   └── CassetteError            (no cassette to replay, or a request it did not record)
    ├── ApiError                     (the API, or the way to it, answered with a failure)
    │   ├── InvalidKey               (401 "Invalid Api-Key")
    │   ├── MissingAuthHeader        (401 "Missing Api-Key in Authorization header")
    │   ├── EndpointNotFound         (404, empty body)
    │   ├── PlainHttpRedirect        (301 to HTTPS: never followed, the key would go along)
    │   ├── UnknownUser              ("User id and device id not seen before", any status)
    │   ├── Throttled                (over the organisation's requests per minute) *
    │   ├── ServerUnavailable        (5xx) *
    │   ├── MalformedResponse        (a body that is not the documented JSON)
    │   │   └── ResponseTooLarge     (a body over the size cap, not read past it)
    │   ├── UnexpectedResponse       (any other status)
    │   ├── RequestTimeout           *
    │   └── ConnectionFailed         *
    │       └── ProxyFailed          (the proxy the environment names failed the connection) *
    ├── NotFetched                   (a batch was interrupted before this user was sent)
    ├── NotStored                    (a store-only lookup found no fresh stored answer; nothing was sent)
    └── SectionFailed                (a section plugin's own code raised; it is named, the others carry on)

Classes marked * are retried with backoff (ProxyFailed not on 407). Every message says what happened and what to do,
and none carries the secret key: messages are built from statuses, bodies and URLs, never from request headers. No
exception leaving the package has a cause or context from httpx: their frames hold the request, key included.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "CassetteError",
    "ConfigurationError",
    "ConnectionFailed",
    "EndpointNotFound",
    "InsecureEndpoint",
    "InvalidKey",
    "InvalidQuery",
    "MalformedResponse",
    "MissingAuthHeader",
    "MissingKey",
    "NotFetched",
    "NotStored",
    "PlainHttpRedirect",
    "ProfileError",
    "ProxyFailed",
    "RequestTimeout",
    "ResponseTooLarge",
    "SectionFailed",
    "ServerUnavailable",
    "Throttled",
    "UnexpectedResponse",
    "UnknownUser",
    "UnsupportedRegion",
]

#: Longest API message a failure keeps: an error body can be megabytes, and a batch may keep thousands of failures.
MAX_API_MESSAGE = 1_000

KEY_HINT = (
    "Set the project's secret key with the AMPLITUDE_SECRET_KEY environment variable or "
    "%config ProfileClient.api_key = '...'; or run %ampprofile_emulator to use the bundled emulator."
)


class ProfileError(Exception):
    """Base class of every failure this package reports."""

    #: Short machine-readable name, used in batch failure tables.
    kind: str = "error"
    #: Whether the client retries this failure with backoff.
    retryable: bool = False
    #: What the user should do about it.
    hint: str = ""

    def __init__(self, message: str, *, status: int | None = None, api_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        if api_message is not None and len(api_message) > MAX_API_MESSAGE:
            api_message = f"{api_message[:MAX_API_MESSAGE]}… ({len(api_message) - MAX_API_MESSAGE:,} more characters)"
        self.api_message = api_message

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class InvalidQuery(ProfileError, ValueError):
    """The lookup's parameters are invalid; no request was sent."""

    kind = "invalid_query"

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        # Pickle rebuilds an exception as cls(*args): keep the constructor's arguments there.
        self.args = (parameter, problem)
        self.parameter = parameter


class ConfigurationError(ProfileError):
    """The client's configuration prevents any request from being sent."""

    kind = "configuration"


class MissingKey(ConfigurationError):
    """No secret key is configured."""

    kind = "missing_key"
    hint = KEY_HINT


class UnsupportedRegion(ConfigurationError):
    """The User Profile API is not available in the configured data region."""

    kind = "unsupported_region"
    hint = "Amplitude does not offer the User Profile API for EU-region projects; use a US-region project."


class InsecureEndpoint(ConfigurationError):
    """The endpoint is plain HTTP on a host other than this machine's loopback."""

    kind = "insecure_endpoint"
    hint = "Use an https:// endpoint; plain http:// is only allowed for 127.0.0.1/localhost (the emulator)."


class CassetteError(ConfigurationError):
    """Replay cannot answer: the cassette is missing, unreadable, or did not record this request."""

    kind = "cassette"
    hint = "See ProfileClient.cassette and ProfileClient.cassette_mode (%config ProfileClient)."


class ApiError(ProfileError):
    """The API, or the connection to it, answered with a failure."""

    kind = "api_error"


class InvalidKey(ApiError):
    """The API rejected the secret key (HTTP 401 "Invalid Api-Key")."""

    kind = "invalid_key"
    hint = (
        "Check that AMPLITUDE_SECRET_KEY holds the project's *secret* key (not its API key) "
        "and belongs to a project that uses the Profile API."
    )


class MissingAuthHeader(ApiError):
    """The API saw no valid Authorization header (HTTP 401 "Missing Api-Key in Authorization header")."""

    kind = "missing_auth_header"
    hint = "A proxy may strip the Authorization header, or the key is empty; check ProfileClient.endpoint and the key."


class EndpointNotFound(ApiError):
    """The endpoint or path is wrong (HTTP 404 with an empty body)."""

    kind = "not_found"
    hint = "Check ProfileClient.endpoint (or AMPLITUDE_PROFILE_URL): it should be https://profile-api.amplitude.com."


class PlainHttpRedirect(ApiError):
    """The API redirected a plain-HTTP request to HTTPS; the redirect is not followed so the key is not resent."""

    kind = "http_redirect"
    hint = "Use the https:// endpoint the API named."

    def __init__(self, message: str, *, status: int | None = None, location: str | None = None) -> None:
        super().__init__(message, status=status)
        self.location = location


class UnknownUser(ApiError):
    """The API has never seen this user or device id in this project."""

    kind = "unknown_user"
    hint = "Check the id's spelling and format, and that the key belongs to the project the user is in."


class Throttled(ApiError):
    """The organisation's requests-per-minute limit was exceeded."""

    kind = "throttled"
    retryable = True
    hint = (
        "Lower ProfileClient.requests_per_minute: the limit (600/minute by default) is shared by every job of the "
        "organisation."
    )

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        api_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, api_message=api_message)
        self.retry_after = retry_after


class ServerUnavailable(ApiError):
    """The API answered with a server error (HTTP 5xx)."""

    kind = "server_error"
    retryable = True
    hint = "Amplitude may be having trouble; retry later, and serve a default experience meanwhile."


class MalformedResponse(ApiError):
    """The API answered with a body that is not the documented JSON."""

    kind = "malformed_response"
    hint = "Check ProfileClient.endpoint: something other than the Profile API may be answering."

    def __init__(
        self, message: str, *, status: int | None = None, api_message: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, status=status, api_message=api_message)
        #: The offending value's path in the response (``recommendations[0].last_updated``), when one was named.
        self.field = field


class ResponseTooLarge(MalformedResponse):
    """The answer's body is larger than any User Profile API answer; it was not read past the cap."""

    kind = "response_too_large"
    hint = "Check ProfileClient.endpoint: a Profile API answer is a few kB, so something else may be answering."


class UnexpectedResponse(ApiError):
    """The API answered with a status this client does not know."""

    kind = "unexpected_response"
    hint = "Check the parameters and ProfileClient.endpoint."


class RequestTimeout(ApiError):
    """The API did not answer within the configured timeout."""

    kind = "timeout"
    retryable = True
    hint = "Raise ProfileClient.timeout, or retry later."


class ConnectionFailed(ApiError):
    """The connection to the API could not be made or was dropped."""

    kind = "connection_failed"
    retryable = True
    hint = "Check the network and ProfileClient.endpoint."


class ProxyFailed(ConnectionFailed):
    """The proxy named by HTTPS_PROXY / ALL_PROXY refused or failed the connection to the API (the proxy's error)."""

    kind = "proxy"
    hint = "Check the proxy variable the message names, or list the API's host in NO_PROXY to go around the proxy."

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        # Retrying with the same credentials cannot satisfy a proxy that asks for them.
        self.retryable = status != 407


class NotFetched(ProfileError):
    """A batch was interrupted before this user's request completed."""

    kind = "not_fetched"
    hint = "Run the batch again for the missing users."


class NotStored(ProfileError):
    """A store-only lookup found no fresh answer for this user in the local store, so nothing was sent."""

    kind = "not_stored"


class SectionFailed(ProfileError):
    """A section's own code (a plugin's ``request``, ``params``, ``read`` or ``frame``) raised; it is named."""

    kind = "section_failed"
    hint = "Report it to the plugin's authors, or uninstall the plugin: the other sections work without it."

    @classmethod
    def of(cls, section: object, hook: str, error: BaseException) -> SectionFailed:
        """The failure of ``section``'s ``hook``; only the error's type is kept (its message may quote a secret)."""
        kind = type(section)
        name = getattr(section, "name", kind.__name__)
        return cls(
            f"The {name} section ({kind.__module__}.{kind.__qualname__}) failed in {hook}(): {type(error).__name__}."
        )
