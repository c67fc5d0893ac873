"""The ModelArts error envelope: every failure leaves the API as ``{"error_code", "error_msg"}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorEnvelope(BaseModel):
    """Every error body (ModelArts format)."""

    error_code: str
    error_msg: str


_ERROR = {"model": ErrorEnvelope}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "invalid request (ModelArts.01xx/4xxx codes)"},
    401: {**_ERROR, "description": "missing or invalid X-Auth-Token"},
    403: {**_ERROR, "description": "token not valid for this project, or result not ready"},
    404: {**_ERROR, "description": "no such API"},
    413: {**_ERROR, "description": "request body too large"},
    429: {**_ERROR, "description": "too many requests (see Retry-After)"},
    500: {**_ERROR, "description": "internal error"},
}


class ApiError(Exception):
    """Root of the api package's errors: a ModelArts code, a client-safe message and an HTTP status."""

    def __init__(self, code: str, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers


def invalid(msg: str) -> ApiError:
    return ApiError("ModelArts.0101", msg)


def envelope(code: str, msg: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error_code": code, "error_msg": msg}, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            return "ModelArts.4105", "Incorrect JSON format"
    if any(err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",) for err in errors):
        return "ModelArts.4202", "Empty request"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg')}")
    return "ModelArts.0101", "Invalid argument: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return envelope(exc.code, exc.msg, exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, msg = _describe_validation(exc)
        return envelope(code, msg, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return envelope("ModelArts.4204", "API does not exist", 404)
        if exc.status_code == 405:
            return envelope("ModelArts.4204", "method not allowed on this API", 405, exc.headers)
        if exc.status_code == 413:
            return envelope("ModelArts.4200", "request body too large", 413)
        return envelope("ModelArts.4200", str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope("ModelArts.6102", "internal error", 500)
