"""Every failure the service reports, each with its HTTP status.

One handler (`function.app`) renders any `ServiceError` as `{"error": message}`.
"""


class ServiceError(Exception):
    """Base class: `status` is the HTTP status the client receives."""

    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    status = 400


class NotFound(ServiceError):
    status = 404


class MethodNotAllowed(ServiceError):
    status = 405

    def __init__(self, message: str, *, allowed: tuple[str, ...]):
        super().__init__(message, headers={"Allow": ", ".join(allowed)})


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class ModelUnavailable(ServiceError):
    """The model cannot be loaded now; the next request tries again."""

    status = 503


class ConfigError(ValueError):
    """A setting is invalid: raised at start-up, naming the variable and its value."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's text, for one-line error messages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
