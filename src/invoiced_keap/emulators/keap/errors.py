"""Keap v2's error body, `Error {code, message, status, details}`, shared by every Keap emulator route."""

from __future__ import annotations

from http import HTTPStatus

from starlette.responses import JSONResponse


class KeapError(Exception):
    """Raised by the core of a route; rendered with `error_response` at the HTTP edge."""

    def __init__(self, status_code: int, message: str, *, resource: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.resource = resource

    def response(self) -> JSONResponse:
        return error_response(self.status_code, self.message, resource=self.resource)


def error_body(status_code: int, message: str, *, resource: str | None = None) -> dict[str, object]:
    """The JSON body: `status` is the HTTP reason phrase, `details` names the resource when there is one."""
    details = [{"domain": "crm", "resource": resource}] if resource else []
    return {
        "code": status_code,
        "message": message,
        "status": HTTPStatus(status_code).phrase,
        "details": details,
    }


def error_response(status_code: int, message: str | None = None, *, resource: str | None = None) -> JSONResponse:
    text = message if message is not None else HTTPStatus(status_code).description
    return JSONResponse(error_body(status_code, text, resource=resource), status_code=status_code)
