"""RFC 9457 problem details: the one shape of every error the API answers.

Every refusal and failure, whoever raises it (a view's ``abort``, the request validation of
flask-smorest and marshmallow, Werkzeug's 404/405/413, the store being down, an unexpected
exception, the intake call's WSGI fast path), is answered as ``application/problem+json``::

    {"type": "about:blank", "title": "Not Found", "status": 404,
     "detail": "no message 7 with content to replay", "instance": "urn:uuid:…",
     "code": 404, "message": "no message 7 with content to replay"}

``type`` is ``about:blank`` (the status says what kind of problem it is), ``title`` the status
phrase, ``detail`` what is wrong for a person to act on (never patient data), ``instance`` an id
of this occurrence that the server's log line of a 5xx carries too (``request_id``). Extension
members: ``code`` and ``message`` repeat ``status`` and ``detail`` for clients of the earlier error
shape; ``errors`` holds the field errors of a 422 (``{"query": {"limit": ["Not a valid
integer."]}}``) or, for a refused payload, each message's fate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Response, g
from flask_smorest import Api
from flask_smorest.spec import prepare_response
from werkzeug.exceptions import HTTPException, MethodNotAllowed

MEDIA_TYPE = "application/problem+json"
ABOUT_BLANK = "about:blank"

# what a status says when the code that refused gave no words of its own
_DEFAULT_DETAIL = {
    400: "the request cannot be read",
    401: "a valid API key is needed: Authorization: Bearer <key>",
    403: "this key may not make this call",
    404: "no such resource or API route",
    409: "the request conflicts with the stored state",
    413: "the payload is larger than this server takes",
    415: "this Content-Type is not read here",
    422: "the request's parameters or body are not valid; see errors",
    429: "too many requests for this key; slow down",
    500: "an unexpected error; the server's log has it under this problem's instance id",
    503: "the service cannot answer now; retry later",
}


class ProblemSchema(ma.Schema):
    """The error document (RFC 9457), for the OpenAPI document; answers are built by ``problem``."""

    type = ma.fields.String(metadata={"description": "a URI reference naming the kind of problem; about:blank: "
                                                     "the status says it"})
    title = ma.fields.String(metadata={"description": "the HTTP status phrase"})
    status = ma.fields.Integer(metadata={"description": "the HTTP status code"})
    detail = ma.fields.String(metadata={"description": "what is wrong, for a person to act on (no patient data)"})
    instance = ma.fields.String(metadata={"description": "this occurrence's id (urn:uuid:...), also in the "
                                                         "server's log line of a 5xx"})
    code = ma.fields.Integer(metadata={"description": "extension: the status again (the earlier error shape)"})
    message = ma.fields.String(metadata={"description": "extension: the detail again (the earlier error shape)"})
    errors = ma.fields.Dict(metadata={"description": "extension: field errors by location ({query: {field: "
                                                     "[reasons]}}), or each message's fate of a refused payload"})


def problem(status: int, detail: str | None = None, *, errors: Any = None,
            instance: str | None = None) -> dict[str, Any]:
    """The problem document of one refusal."""
    title = HTTPStatus(status).phrase
    text = detail or _DEFAULT_DETAIL.get(status) or title
    body: dict[str, Any] = {"type": ABOUT_BLANK, "title": title, "status": status, "detail": text,
                            "instance": instance or new_instance(), "code": status, "message": text}
    if errors is not None:
        body["errors"] = errors
    return body


def new_instance() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def request_instance() -> str:
    """The instance id of the current request's problem, made once: the log line of an unexpected error and
    the answer carry the same."""
    instance = g.get("problem_instance")
    if instance is None:
        instance = g.problem_instance = new_instance()
    return str(instance)


def problem_bytes(status: int, detail: str | None = None, *, errors: Any = None) -> bytes:
    return json.dumps(problem(status, detail, errors=errors)).encode()


def problem_response(status: int, detail: str | None = None, *, errors: Any = None,
                     headers: Mapping[str, str] | None = None) -> Response:
    body = problem(status, detail, errors=errors, instance=request_instance())
    response = Response(json.dumps(body), status=status, content_type=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _detail_of(error: HTTPException) -> str | None:
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        return f"this route does not take this method; it takes {', '.join(sorted(error.valid_methods))}"
    return None


class HubApi(Api):
    """flask-smorest's ``Api`` with every error answered, and documented, as a problem document."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        errors = data.get("errors", data.get("messages"))  # webargs puts validation errors in "messages"
        detail = data.get("message") or _detail_of(error)
        if errors is not None and not detail:
            detail = _validation_detail(errors)
        headers = dict(data.get("headers") or {})
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers.setdefault("Allow", ", ".join(error.valid_methods))
        return problem_response(status, detail, errors=errors, headers=headers)

    def _register_responses(self) -> None:
        """The error responses of the document in the problem media type (flask-smorest's own use JSON)."""
        for status in HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, MEDIA_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "an error, as a problem document (RFC 9457)", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, MEDIA_TYPE)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)


def document_problems(api: Api) -> None:
    """Every error answer of the OpenAPI document (401, 403, 404, ... each route lists) says its body: a
    problem document."""
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in api.spec._paths.values():
        for operation in operations.values():
            for status, response in (operation.get("responses") or {}).items() if isinstance(operation, dict) \
                    else ():
                if str(status)[:1] in ("4", "5") and "$ref" not in response and "content" not in response:
                    response["content"] = dict(content)


def _validation_detail(errors: Any) -> str:
    """One line naming the invalid parameters: "invalid query parameter limit: Not a valid integer."."""
    parts = []
    if isinstance(errors, Mapping):
        for location, fields in errors.items():
            if isinstance(fields, Mapping):
                for name, reasons in fields.items():
                    reason = reasons[0] if isinstance(reasons, list) and reasons and isinstance(reasons[0], str) \
                        else "not valid"
                    parts.append(f"{_where(location)} {name}: {reason}")
    return "invalid " + "; ".join(parts[:5]) if parts else _DEFAULT_DETAIL[422]


def _where(location: str) -> str:
    return {"query": "query parameter", "json": "body field", "form": "form field", "headers": "header",
            "files": "file", "path": "path parameter"}.get(location, location)
