"""Validate API responses against the one contract, ``helper/openapi.json``."""

from __future__ import annotations

from typing import Any

import jsonschema

from helper.service.api import openapi_document

DOC = openapi_document()


def response_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    operation = DOC["paths"][path][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} → {status} is not in the contract"
    if "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content", {})
    if "application/json" not in content:
        return None
    return content["application/json"]["schema"]


def validate(body: Any, path: str, method: str, status: int) -> None:
    """Raise if ``body`` does not match what the contract says ``method path`` answers with ``status``."""
    schema = response_schema(path, method, status)
    if schema is None:
        return
    rooted = {**schema, "components": DOC["components"]}
    jsonschema.Draft202012Validator(rooted).validate(body)
