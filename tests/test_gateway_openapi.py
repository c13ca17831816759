"""The gateway's OpenAPI description (``GET /api/v1/openapi.json``) against the gateway.

The document is valid OpenAPI 3.1 (the OpenAPI 3.1 meta-schema, then structure: responses
everywhere, every ``$ref`` resolves, path parameters match the templates); the routes the
gateway registers under ``/api/v1`` and the spec's operations are the same set. Real
answers against the spec's schemas: test_gateway_openapi_answers.py and _errors.py;
schemathesis over every operation: test_gateway_openapi_schemathesis.py.
"""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator

from broker import __version__
from tests.support.openapi import operations, resolve, walk
from tests.support.openapi import service, spec  # fixtures
from tests.support.web import Api

pytestmark = pytest.mark.timeout(240)


# --- the document


def test_the_spec_is_served_as_openapi_3_1_json(service, spec):
    answer = Api(service).get("/api/v1/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "Scanbridge"
    assert spec["info"]["version"] == __version__
    assert spec["servers"] == [{"url": "/"}]
    assert len(spec["paths"]) >= 20
    # Served as written in actors/gateway/openapi.py.
    from actors.gateway.openapi import SPEC
    assert spec == json.loads(json.dumps(SPEC))


def test_the_spec_validates_against_the_openapi_3_1_schema(spec):
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:
        validate(spec)
    # The OpenAPI 3.1 meta-schema (2022-10-07) as schemathesis ships it.
    from schemathesis.specs.openapi.definitions import OPENAPI_31
    assert OPENAPI_31["$id"].startswith("https://spec.openapis.org/oas/3.1/schema/")
    meta = Draft202012Validator(OPENAPI_31)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in meta.iter_errors(spec)]
    assert not errors, errors
    broken = copy.deepcopy(spec)
    broken["paths"]["/api/v1/status"]["get"]["responses"] = ["200"]
    assert not meta.is_valid(broken)  # the meta-schema does look at operations
    # Every schema is a valid JSON Schema 2020-12 (the dialect of OpenAPI 3.1).
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for _, node in walk(spec["paths"]):
        if "schema" in node and isinstance(node["schema"], dict):
            Draft202012Validator.check_schema(node["schema"])


def test_every_operation_has_responses_and_every_ref_resolves(spec):
    refs = [(path, node["$ref"]) for path, node in walk(spec) if "$ref" in node]
    assert len(refs) > 20
    for path, ref in refs:
        assert isinstance(resolve(spec, ref), dict), (path, ref)
    schemes = spec["components"]["securitySchemes"]
    labels = set()
    for method, path, operation in operations(spec):
        label = f"{method} {path}"
        labels.add(label)
        assert path.startswith("/api/v1/"), label
        assert operation.get("summary"), label
        responses = operation.get("responses")
        assert responses, f"{label} has no responses"
        assert any(key.startswith("2") or key == "101" for key in responses), label
        for key, response in responses.items():
            assert key == "default" or (key.isdigit() and 100 <= int(key) <= 599), (label, key)
            assert response.get("description"), (label, key)
            for media_type, content in response.get("content", {}).items():
                assert "/" in media_type and "schema" in content, (label, key, media_type)
        # Path parameters: exactly the template's names, all required.
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        template = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert declared == template, (label, declared, template)
        seen = set()
        for parameter in operation.get("parameters", []):
            assert parameter["in"] in ("path", "query", "header", "cookie"), label
            assert (parameter["name"], parameter["in"]) not in seen, (label, parameter)
            seen.add((parameter["name"], parameter["in"]))
            assert "schema" in parameter, (label, parameter)
            if parameter["in"] == "path":
                assert parameter.get("required") is True, (label, parameter)
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), (label, requirement)
        if "{sid}" in path:
            assert operation.get("security"), f"{label} should need the session token"
        body = operation.get("requestBody")
        if body is not None:
            assert body.get("content"), label
    assert len(labels) == sum(1 for _ in operations(spec))


def test_every_api_route_of_the_gateway_is_in_the_spec_and_every_operation_a_route(
        spec, tmp_path):
    from actors.gateway.app import make_app
    from broker.config import Home, load

    class Quiet:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    app = make_app(load(Home(tmp_path)), Quiet())
    routes = {(route.method, route.resource.canonical) for route in app.router.routes()
              if route.resource is not None
              and route.resource.canonical.startswith("/api/v1/")
              and route.method not in ("HEAD", "OPTIONS")}
    # The spec describes the API, not the document itself.
    assert ("GET", "/api/v1/openapi.json") in routes
    routes.discard(("GET", "/api/v1/openapi.json"))
    described = {(method, path) for method, path, _ in operations(spec)}
    assert routes - described == set(), "routes missing from the spec"
    assert described - routes == set(), "operations the gateway does not serve"
    assert len(routes) >= 25
