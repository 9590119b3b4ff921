"""Invoiced's error bodies: `{type, message, param?}`, the type following the status as the real server does."""

from __future__ import annotations

from starlette.responses import JSONResponse

API_HEADERS = {"Cache-Control": "no-cache, no-store", "WWW-Authenticate": 'Basic realm="Invoiced"'}


class ApiError(Exception):
    """Raised anywhere in a request; turned into Invoiced's error JSON with this status."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "api_error" if status >= 500 else "invalid_request"


def error_body(status: int, message: str, param: str | None = None) -> dict[str, str]:
    """`param` is left out when absent, as the real 401 body shows."""
    body = {"type": error_type(status), "message": message}
    if param is not None:
        body["param"] = param
    return body


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status, headers=API_HEADERS)


def api_error_response(error: ApiError) -> JSONResponse:
    return error_response(error.status, error.message, error.param)
