"""The API description: valid OpenAPI 3.1, the same as docs/openapi.json, and the
same routes as the router tables (web/routes.py GATE_ROUTES, web/admin.py
ADMIN_ROUTES), each way round."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from openapi_spec_validator import OpenAPIV31SpecValidator

from synapse_email_gate.web import openapi
from synapse_email_gate.web.admin import ADMIN_ROUTES
from synapse_email_gate.web.resource import BASE_PATH
from synapse_email_gate.web.routes import GATE_ROUTES

DOCS_FILE = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def served_routes() -> set[tuple[str, str]]:
    """(METHOD, full path template) of everything the routers answer."""
    served = set()
    for route in GATE_ROUTES:
        if route.path == "admin/*":
            served |= {
                (route.method, f"{BASE_PATH}/admin/{admin.template}")
                for admin in ADMIN_ROUTES
                if admin.method == route.method
            }
        elif route.path == "static/*":
            served.add((route.method, f"{BASE_PATH}/static/{{file}}"))
        else:
            assert not route.path.endswith("*"), f"describe the wildcard route {route.path}"
            served.add((route.method, f"{BASE_PATH}/{route.path}"))
    return served


def described_routes() -> set[tuple[str, str]]:
    doc = openapi.description()
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def test_description_is_valid_openapi_3_1() -> None:
    doc = json.loads(openapi.render())
    assert doc["openapi"].startswith("3.1.")
    errors = [e.message for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []


def test_docs_file_is_the_description() -> None:
    assert DOCS_FILE.read_bytes() == openapi.render(), (
        "docs/openapi.json is stale: python -m synapse_email_gate.web.openapi > docs/openapi.json"
    )


def test_every_served_route_is_described() -> None:
    missing = served_routes() - described_routes()
    assert not missing, f"routes served but not described: {sorted(missing)}"


def test_every_described_route_is_served() -> None:
    extra = described_routes() - served_routes()
    assert not extra, f"routes described but not served: {sorted(extra)}"


def test_every_admin_route_is_reachable_through_the_gate() -> None:
    wildcard_methods = {r.method for r in GATE_ROUTES if r.path == "admin/*"}
    assert {r.method for r in ADMIN_ROUTES} <= wildcard_methods


def test_path_parameters_are_named_as_in_the_routes() -> None:
    doc = openapi.description()
    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, (method, path)


def test_admin_operations_need_the_bearer_token_but_the_description() -> None:
    doc = openapi.description()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            needs_auth = path.startswith(BASE_PATH + "/admin/") and not path.endswith(
                "/openapi.json"
            )
            assert (op.get("security") == [{"bearer": []}]) == needs_auth, (method, path)
            if needs_auth:
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def errcodes(schema: dict[str, Any]) -> list[str]:
    """The errcodes an error schema allows (in its allOf parts)."""
    found = []
    for part in [schema, *schema.get("allOf", [])]:
        errcode = part.get("properties", {}).get("errcode", {})
        found += errcode.get("enum", []) + ([errcode["const"]] if "const" in errcode else [])
    return found


def test_every_json_error_answer_names_its_errcodes() -> None:
    doc = openapi.description()
    shared = doc["components"]["responses"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for status, answer in op["responses"].items():
                if "$ref" in answer:
                    answer = shared[answer["$ref"].rsplit("/", 1)[-1]]
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith(("4", "5")) and schema is not None:
                    codes = errcodes(schema)
                    assert codes, (method, path, status)
                    assert all(re.fullmatch(r"(M|EMAIL_GATE)_[A-Z_]+", c) for c in codes), codes
