"""The OpenAPI document is the API reference: every route typed, summarized and described, every
error documented in the shape the server really sends. Needs no model (no lifespan runs)."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from qa.api import create_app, health, lookup, openai, search
from qa.api.errors import ErrorBody
from qa.config import Settings
from qa.retrieve import Citation

ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(Settings(index_dir=tmp_path_factory.mktemp("unused-index"), max_body_bytes=1000))


@pytest.fixture(scope="module")
def spec(app) -> dict:
    r = TestClient(app).get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _operations(spec: dict):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def _empty_schemas(node, where="") -> list[str]:
    """Places where a schema says nothing (`{}`), anywhere in the document."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key in ("schema", "items", "additionalProperties") and value == {}:
                found.append(here)
            if key == "properties":
                found += [f"{here}/{name}" for name, prop in value.items() if prop == {}]
            found += _empty_schemas(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _empty_schemas(value, f"{where}/{i}")
    return found


def test_every_route_is_in_the_document(spec):
    routes = {(r.path, m.lower()) for module in (health, lookup, openai, search) for r in module.router.routes
              if isinstance(r, APIRoute) and r.include_in_schema for m in r.methods}
    documented = {(path, method) for path, method, _ in _operations(spec)}
    assert routes == documented and len(documented) == 8


def test_every_operation_has_a_summary_a_description_and_a_typed_answer(spec):
    for path, method, op in _operations(spec):
        assert op.get("summary") and op.get("description"), (method, path)
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok.get("$ref", "").startswith("#/components/schemas/"), (method, path, ok)
    assert _empty_schemas(spec) == []


def test_errors_are_documented_with_the_real_shape(spec):
    for path, method, op in _operations(spec):
        errors = {int(s): r for s, r in op["responses"].items() if int(s) >= 400}
        expected = {500}
        if path.startswith(("/api/", "/v1/")):
            expected.add(401)
        if method == "post":
            expected |= {400, 413, 422}  # 400: a body that is not UTF-8
        if "{" in path:
            expected.add(404)
        if op.get("parameters") and any(p["in"] == "query" for p in op["parameters"]):
            expected.add(422)  # query parameters are checked too (GET /api/issues)
        assert set(errors) == expected, (method, path, sorted(errors))
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, (path, status)
            assert response["description"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_the_documented_error_shape_is_what_the_server_sends(app):
    client = TestClient(app)
    for r in (client.get("/api/nothing-here"),
              client.post("/api/ask", content=b"x" * 2000, headers={"content-type": "application/json"})):
        assert r.status_code in (404, 413)
        ErrorBody.model_validate(r.json())


def test_citation_schema_follows_the_dataclass(spec):
    """New Citation fields (e.g. gbt7714) appear in the document without touching the API."""
    props = spec["components"]["schemas"]["Citation"]["properties"]
    assert {f.name for f in dataclasses.fields(Citation)} <= set(props)


def test_issue_schema_carries_date_provenance(spec):
    props = spec["components"]["schemas"]["IssueFields"]["properties"]
    assert {"date", "date_source", "date_evidence", "issue", "page", "source"} <= set(props)


def test_ask_warning_is_a_string_when_present(spec):
    """`warning` is left out when there is none, so it is never null; the rest of the answer is
    always there."""
    schema = spec["components"]["schemas"]["AskResponse"]
    assert schema["properties"]["warning"]["type"] == "string" and "warning" not in schema["required"]
    assert set(schema["required"]) == {"answer", "no_answer", "citations"}


def test_chat_messages_take_a_string_or_text_parts(spec):
    schemas = spec["components"]["schemas"]
    request = schemas["ChatRequest"]["properties"]["messages"]["items"]["$ref"].rsplit("/", 1)[1]
    content = schemas[request]["properties"]["content"]["anyOf"]
    part = content[1]["items"]["$ref"].rsplit("/", 1)[1]
    assert content[0] == {"type": "string"} and content[1]["type"] == "array"
    assert schemas[part]["properties"]["type"]["const"] == "text" and schemas[part]["required"] == ["type", "text"]


def test_search_issue_takes_a_string_or_a_number(spec):
    issue = spec["components"]["schemas"]["SearchRequest"]["properties"]["issue"]
    assert [t.get("type") for t in issue["anyOf"]] == ["string", "integer", "null"]
