"""A property-based run of schemathesis over every operation of the gateway's OpenAPI
description but the WebSocket finds no server error and no answer outside the spec.

It runs after the other test_gateway_openapi modules on the service they share (named
to sort last), as it ran last when they were one file.
"""

from __future__ import annotations

import http.client
import time

import pytest
import requests

from tests.support.images import png
from tests.support.openapi import EVENTS, EXAMPLES, finished, operations, text_page
from tests.support.openapi import conformance, service, spec  # fixtures
from tests.support.service import Service
from tests.support.web import Api

pytestmark = pytest.mark.timeout(240)


# --- property-based: schemathesis over every operation


class Target:
    """A real session with images and finished scan, OCR and barcode jobs, for the
    generated requests."""

    def __init__(self, service: Service):
        self.api = Api(service)
        self.renew()
        job = self.api.scan(self.sid, self.token, pages=1)
        self.jobs = [job["job"]]
        here = f"/api/v1/sessions/{self.sid}"
        added = self.api.post(f"{here}/images", token=self.token, data=text_page(),
                              headers={"Content-Type": "image/png"})
        page = added.json()["images"][0]["id"]
        for kind, body in (("ocr", {"output": ["text", "hocr", "pdf"]}), ("barcodes", {})):
            body["images"] = [page]
            started = self.api.post(f"{here}/{kind}", token=self.token, json=body)
            assert started.status == 202, started.body
            url = f"{here}/{kind}/{started.json()['job']}"
            done = finished(self.api, url, self.token).json()
            assert done["state"] == "done", (kind, done.get("error"))
            self.jobs.append(started.json()["job"])
        # Generated OCR jobs read every page: without the text page they are quick.
        assert self.api.request("DELETE", f"{here}/images/{page}", token=self.token).status \
            == 200

    def renew(self) -> None:
        self.sid, self.token = self.api.open_session()

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def images(self) -> list[str]:
        answer = self.api.get(f"/api/v1/sessions/{self.sid}/images", token=self.token)
        if answer.status == 404:  # a generated request closed it
            self.renew()
            return self.images()
        ids = [info["id"] for info in answer.json()]
        if not ids:
            added = self.api.post(f"/api/v1/sessions/{self.sid}/images", token=self.token,
                                  data=png(), headers={"Content-Type": "image/png"})
            ids = [info["id"] for info in added.json()["images"]]
        return ids


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_spec(service, spec):
    import hypothesis.strategies as st
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.openapi import from_url
    from schemathesis.specs.openapi.checks import (content_type_conformance,
                                                   response_schema_conformance,
                                                   status_code_conformance)

    schema = from_url(service.url("/api/v1/openapi.json"))
    conformance = [response_schema_conformance, status_code_conformance,
                   content_type_conformance]
    target = Target(service)
    http = requests.Session()
    found: dict[tuple, str] = {}
    ran: dict[str, int] = {}
    log = service.home / "logs" / "gateway.log"
    log_size = len(log.read_text(errors="replace"))
    started = time.monotonic()

    def record(label: str, title: str, case, response) -> None:
        media_type = (response.headers.get("content-type") or ["-"])[0]
        try:
            error = response.json()["error"]
            what = (response.status_code, error.get("code"), str(error.get("message"))[:30])
        except (ValueError, KeyError, TypeError, AttributeError):
            what = (response.status_code, media_type)
        key = (label, title, what)
        if key not in found:
            found[key] = (f"{label}: {title}: {response.status_code} {media_type} "
                          f"{response.text[:300]}\n"
                          f"{case.as_curl_command()[:1500]}")

    def exercise(op, mode, checks: list):
        @settings(max_examples=EXAMPLES, phases=[Phase.explicit, Phase.generate],
                  deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode), data=st.data())
        def one(case, data):
            ran[op.label] = ran.get(op.label, 0) + 1
            params = case.path_parameters if case.path_parameters is not None else {}
            # Most requests reach a real session (its token, its images, its job); the
            # rest keep what was generated (unknown ids, wrong tokens).
            if "sid" in params and data.draw(st.integers(0, 9)) > 0:
                if "iid" in params and data.draw(st.integers(0, 4)) > 0:
                    params["iid"] = data.draw(st.sampled_from(target.images()))
                auth = target.auth
                params["sid"] = target.sid
                if op.method == "delete" and op.path == "/api/v1/sessions/{sid}":
                    sid, token = target.api.open_session()  # closing is its job
                    params["sid"], auth = sid, {"Authorization": f"Bearer {token}"}
                if "job" in params and data.draw(st.booleans()):
                    params["job"] = data.draw(st.sampled_from(target.jobs))
                case.headers = {**(case.headers or {}), **auth}
                if case.query:
                    case.query.pop("token", None)
            response = case.call(session=http, timeout=60)
            failures: list = []
            try:
                case.validate_response(response, checks=checks)
            except FailureGroup as group:
                failures = [failure.title for failure in group.exceptions]
            except Failure as failure:
                failures = [failure.title]
            for title in failures:
                record(op.label, title, case, response)
        try:
            one()
        except Unsatisfiable:
            pass  # nothing to generate in this mode (no parameters, no body)

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path == EVENTS:
            continue  # a WebSocket: nothing an HTTP request generator can check
        # A live view with the real session would never end: generated requests have no
        # session of their own (the session is a query parameter here), so they get errors.
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(op, mode, [not_a_server_error, *conformance])
    took = time.monotonic() - started
    labels = {f"{m} {p}" for m, p, _ in operations(spec)} - {f"GET {EVENTS}"}
    assert set(ran) == labels, "operations schemathesis did not exercise"
    assert not found, f"{len(found)} violation(s) in {took:.0f} s:\n\n" + \
        "\n\n".join(found.values())
    logged = log.read_text(errors="replace")[log_size:]
    assert '"request failed"' not in logged, "the gateway logged a failed request"
