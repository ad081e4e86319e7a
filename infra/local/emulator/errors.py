"""Answers and the Snowflake-style errors of the SQL API.

Error conventions (HTTP status, code, sqlState)
-----------------------------------------------
* 400 390142: invalid request - body not a JSON object, no ``statement``, bad field types,
  binding value not a string, missing User-Agent header, a result partition that does not exist.
* 401 390101 08001: missing/malformed ``Authorization: Bearer`` header, or the token type
  header missing or not KEYPAIR_JWT / PROGRAMMATIC_ACCESS_TOKEN (exact, upper-case).
* 401 390144 08001 "JWT token is invalid. [<uuid>]" (rule 3).
* 401 394400 08004 "Programmatic access token is invalid.": unknown, expired or revoked PAT.
* 401 390422 08004 "Incoming request with IP/Token <address> is not allowed to access
  Snowflake. Contact your account administrator.": the user's network policy (rule 8).
* 422: SQL errors: fakesnow's errno as six digits and its sqlState, e.g. 002003 42S02 (object
  does not exist), 001003 42000 (syntax), 090105/090106 22000 (no current database/schema),
  391918 / 000606 / 390189 (rule 1), 100069 22P02 (rule 2), 000904 42000 / 002023 22000 /
  100038 22018 (rule 4), 100072 22000 (NULL into a NOT NULL column), 100037 22018 (bad bind
  value), 000008 0A000 (statement count mismatch), 000608 57P03 (warehouse suspended), 000604
  57014 (cancelled), 090064/090063 22000 (warehouse cannot be suspended / resumed in its state).
  The body has statementHandle and statementStatusUrl.
* 408 000630 57014: statement timeout.
* 500 000603 XX000: unhandled emulator exception (a bug or an unsupported feature; see the log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from tracklayer_local.emulator.statements import Statement


@dataclass
class Answer:
    """An HTTP answer: status, Snowflake JSON body, optional extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


class ApiError(Exception):
    """A Snowflake-style error answer."""

    def __init__(self, status: int, code: str, message: str, sql_state: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.sql_state = status, code, message, sql_state

    def answer(self, stmt: Statement | None = None) -> Answer:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.sql_state:
            body["sqlState"] = self.sql_state
        if stmt is not None:
            body |= stmt.links()
        return Answer(self.status, body)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "390142", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "390101", message, "08001")


def sql_error(code: str, sql_state: str, message: str) -> ApiError:
    return ApiError(422, code, message, sql_state)


def internal_error(exc: BaseException) -> ApiError:
    return ApiError(500, "000603", f"Emulator internal error: {type(exc).__name__}: {exc}", "XX000")
