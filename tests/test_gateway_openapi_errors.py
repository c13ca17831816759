"""Error answers of a running service validate against the OpenAPI spec's error schema,
and input the schemas forbid (integers beyond 64 bits, fields of the wrong JSON type) is
refused with a 4xx, never a 500.
"""

from __future__ import annotations

import pytest

from tests.support.images import png
from tests.support.openapi import STREAM, TOO_BIG, Conformance
from tests.support.openapi import conformance, service, spec  # fixtures
from tests.support.web import Answer, Api

pytestmark = pytest.mark.timeout(240)


# --- error answers


def test_error_answers_match_the_error_schema(api, conformance):
    sid, token = api.open_session()
    other_sid, other_token = api.open_session()
    here = f"/api/v1/sessions/{sid}"
    base = "/api/v1/sessions/{sid}"
    cases = [
        (api.get(here), "GET", base, 401, "unauthorized"),
        (api.get(here, token=other_token), "GET", base, 403, "forbidden"),
        (api.get("/api/v1/sessions/" + "0" * 32, token=token), "GET", base, 404, "not_found"),
        (api.get(f"{here}/images/nope/info", token=token), "GET",
         base + "/images/{iid}/info", 404, "not_found"),
        (api.get(f"{here}/images/nope", token=token), "GET", base + "/images/{iid}", 404,
         "not_found"),
        (api.get(f"{here}/images/nope/thumbnail", token=token), "GET",
         base + "/images/{iid}/thumbnail", 404, "not_found"),
        (api.get(f"{here}/images/nope?format=webp", token=token), "GET",
         base + "/images/{iid}", 400, "invalid_argument"),
        (api.post(f"{here}/scans", token=token, data=b"{not json",
                  headers={"Content-Type": "application/json"}), "POST", base + "/scans", 400,
         "bad_request"),
        (api.post(f"{here}/scans", token=token, json={"source": "test:0", "color": 1}),
         "POST", base + "/scans", 400, "invalid_argument"),
        (api.post(f"{here}/images", token=token, data=b"text",
                  headers={"Content-Type": "text/plain"}), "POST", base + "/images", 415,
         "unsupported_media"),
        (api.post(f"{here}/images", token=token, data=b"not an image at all",
                  headers={"Content-Type": "image/png"}), "POST", base + "/images", 422,
         "invalid_image"),
        (api.request("PUT", f"{here}/order", token=token, json={"order": ["nope"]}), "PUT",
         base + "/order", None, None),
        (api.request("DELETE", f"{here}/images/nope", token=token), "DELETE",
         base + "/images/{iid}", 404, "not_found"),
        (api.post(f"{here}/uploads", token=token, json={}), "POST", base + "/uploads", 400,
         "invalid_argument"),
        (api.post(f"{here}/uploads", token=token, json={"url": "https://elsewhere.example/"}),
         "POST", base + "/uploads", 403, "upload_target_not_allowed"),
        (api.get(f"{here}/uploads/nope", token=token), "GET", base + "/uploads/{job}", 404,
         "not_found"),
        (api.post(f"{here}/ocr", token=token, json={"lang": "xx"}), "POST", base + "/ocr",
         422, "invalid_option"),
        (api.post(f"{here}/ocr", token=token, json={}), "POST", base + "/ocr", 409,
         "conflict"),
        (api.post(f"{here}/ocr", token=token, json={"output": "docx"}), "POST",
         base + "/ocr", 400, "invalid_argument"),
        (api.get(f"{here}/ocr/nope", token=token), "GET", base + "/ocr/{job}", 404,
         "not_found"),
        (api.get(f"{here}/ocr/nope/pdf", token=token), "GET", base + "/ocr/{job}/{output}",
         404, "not_found"),
        (api.post(f"{here}/barcodes", token=token, json={}), "POST", base + "/barcodes",
         409, "conflict"),
        (api.request("DELETE", f"{here}/barcodes/nope", token=token), "DELETE",
         base + "/barcodes/{job}", 404, "not_found"),
        (api.get("/api/v1/sources/camera%3Aclip/stream"), "GET", STREAM, 401,
         "unauthorized"),
        (api.get(f"/api/v1/sources/camera%3Aclip/stream?session={sid}&token={other_token}"),
         "GET", STREAM, 403, "forbidden"),
        (api.get(f"/api/v1/sources/camera%3Anope/stream?session={sid}&token={token}"),
         "GET", STREAM, 404, "not_found"),
        (api.get(f"/api/v1/sources/camera%3Aclip/stream?session={sid}&token={token}&fps=0"),
         "GET", STREAM, 400, "invalid_argument"),
        (api.get(f"/api/v1/sources/camera%3Aclip/stream?session={sid}&token={token}"
                 "&resolution=1280x720"), "GET", STREAM, 422, "invalid_option"),
        (api.get("/api/v1/sources/nope%3A9/options", token=token), "GET",
         "/api/v1/sources/{src}/options", 404, "not_found"),
        (api.get("/api/v1/sources/test%3A0/options"), "GET", "/api/v1/sources/{src}/options",
         401, "unauthorized"),
        (api.get("/api/v1/sources?refresh=true"), "GET", "/api/v1/sources", 401,
         "unauthorized"),
        (api.get("/api/v1/sources?refresh=maybe"), "GET", "/api/v1/sources", 400,
         "invalid_argument"),
    ]
    for answer, method, path, status, code in cases:
        assert answer.status >= 400, (method, path, answer.status)
        body = conformance.check(answer, method, path, status, code)
        assert body["error"]["message"], body
    # A method the path does not have: still a JSON error.
    answer = api.request("PATCH", here, token=token)
    assert answer.status == 405
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.error["code"] == "method_not_allowed"
    assert {"GET", "DELETE"} <= {m.strip() for m in answer.headers["Allow"].split(",")}
    assert api.get(f"/api/v1/sessions/{other_sid}", token=other_token).status == 200


def refused(api: Api, conformance: Conformance, method: str, path: str, body) -> Answer:
    """The answer to ``method`` on ``path`` with the JSON ``body``, ``{here}`` being a new
    session and ``{iid}`` a PNG imported into it: it matches the spec and is a 400 or 422."""
    sid, token = api.open_session()
    iid = api.post(f"/api/v1/sessions/{sid}/images", token=token, data=png(),
                   headers={"Content-Type": "image/png"}).json()["images"][0]["id"]
    url = path.format(here=f"/api/v1/sessions/{sid}", iid=iid)
    answer = api.request(method, url, token=token, json=body)
    template = path.format(here="/api/v1/sessions/{sid}", iid="{iid}")
    conformance.check(answer, method, template)
    assert answer.status in (400, 422), (answer.status, answer.body)
    return answer


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/sessions", {"meta": {"n": TOO_BIG}}),
    ("POST", "{here}/scans", {"source": "test:0", "pages": TOO_BIG}),
    ("POST", "{here}/scans", {"source": "test:0", "options": {"resolution": -TOO_BIG}}),
    ("POST", "{here}/images/{iid}/ops", [{"op": "rotate", "angle": TOO_BIG}]),
    ("POST", "{here}/documents", {"quality": TOO_BIG}),
])
def test_a_json_integer_beyond_64_bits_is_refused_with_a_400_not_a_500(
        api, conformance, service, method, path, body):
    # Found by schemathesis: such a number cannot be packed for the broker (msgpack).
    answer = refused(api, conformance, method, path, body)
    assert answer.error["code"] in ("invalid_argument", "bad_request", "invalid_option")


@pytest.mark.parametrize("method, path, body", [
    ("POST", "{here}/images/{iid}/ops", [{"op": {}}]),
    ("POST", "{here}/images/{iid}/ops", {"op": ["rotate"]}),
    ("POST", "{here}/images/{iid}/ops",
     [{"op": "resize", "width": 10, "height": 10, "resample": {}}]),
    ("POST", "{here}/scans", {"source": "test:0", "options": {"area": {"left": {}}}}),
    ("POST", "{here}/documents", {"format": "tiff", "tiff_compression": {}}),
])
def test_a_field_of_the_wrong_json_type_is_refused_with_a_4xx_not_a_500(
        api, conformance, method, path, body):
    # Found by schemathesis: an object or a list where the handler expects a name or a
    # number fails in the actor (TypeError) and the gateway answers 500 internal.
    answer = refused(api, conformance, method, path, body)
    assert answer.error["code"] in ("invalid_argument", "invalid_option")
