"""The OpenAPI 3.1 description of the v1 API, served at ``/api/v1/openapi.json``.

Tests check the gateway's real answers against these schemas, so keep them in step with
the handlers in ``api.py``, ``images.py``, ``uploads.py``, ``recognition.py`` and
``cameras.py``.
"""

from __future__ import annotations

from broker import __version__
from common.jobs import PUBLIC_STATES


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


STRING, INTEGER, NUMBER, BOOLEAN = ({"type": t} for t in ("string", "integer", "number",
                                                           "boolean"))
NULLABLE_STRING = {"type": ["string", "null"]}
ANY_OBJECT = {"type": "object"}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def ok(schema: dict, description: str = "OK", status: str = "200") -> dict:
    return {status: {"description": description, "content": json_content(schema)}}


def binary(*media_types: str, description: str = "the file") -> dict:
    return {"200": {"description": description, "content": {
        kind: {"schema": {"type": "string", "format": "binary"}} for kind in media_types}}}


def accepted(schema: dict) -> dict:
    return {"202": {"description": "accepted: the job runs; Location is its URL",
                    "headers": {"Location": {"schema": STRING}},
                    "content": json_content(schema)}}


ERROR_RESPONSES = {"default": {"description": "an error: see error.code",
                               "content": json_content(ref("Error"))}}
SID = {"name": "sid", "in": "path", "required": True, "schema": STRING,
       "description": "session id"}
IID = {"name": "iid", "in": "path", "required": True, "schema": STRING,
       "description": "image id"}
JOB = {"name": "job", "in": "path", "required": True, "schema": STRING}
SRC = {"name": "src", "in": "path", "required": True, "schema": STRING,
       "description": "source id (URL-encoded, e.g. test%3A0)"}
TOKEN_QUERY = {"name": "token", "in": "query", "schema": STRING,
               "description": "the session token, for URLs that cannot send headers"}
SECURED = [{"bearer": []}, {"token": []}]
SESSION_QUERY = {"name": "session", "in": "query", "schema": STRING,
                 "description": "the session id, with token= in URLs (a bearer token alone "
                                "names its session too)"}


def query(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def op(summary: str, responses: dict, *, params: tuple = (), body: dict | None = None,
       session: bool = True, tag: str = "sessions") -> dict:
    spec = {"summary": summary, "tags": [tag],
            "responses": {**responses, **ERROR_RESPONSES},
            "parameters": [*([SID] if session else []), *params,
                           *([TOKEN_QUERY] if session else [])]}
    if session:
        spec["security"] = SECURED
    if body is not None:
        spec["requestBody"] = body
    return spec


def json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": json_content(schema)}


OCR_OUTPUT = {"enum": ["text", "words", "hocr", "pdf"]}
CAMERA_KIND = {"enum": ["v4l2", "mjpeg", "stream", "file"],
               "description": "v4l2: a /dev/video* device; mjpeg: an MJPEG camera over HTTP; "
                              "stream: RTSP; file: a video file played in a loop"}
BARCODE_FORMAT = {"type": "string", "description": "qr, micro_qr, datamatrix, pdf417, aztec, "
                  "code128, code39, code93, ean8, ean13, upca, upce, itf, codabar"}
TIMEOUT = {"type": "number", "minimum": 1, "maximum": 86400,
           "description": "seconds the whole job may take (default 3600)"}
JOB_STATE = {"enum": [str(state) for state in PUBLIC_STATES]}  # common.jobs.JobState


def recognition_job(kind: str, result: dict) -> dict:
    """The view of an OCR or barcode job."""
    return obj(["job", "kind", "session", "state", "progress", "created", "finished"],
               job=STRING, kind={"const": kind}, session=STRING,
               state=JOB_STATE,
               progress=obj(["done", "total"], done=INTEGER, total=INTEGER),
               created=NUMBER, finished={"type": ["number", "null"]},
               result={**result, "description": "when the state is done"},
               error=obj(["code", "message"], code=STRING, message=STRING))


SCHEMAS = {
    "Error": obj(["error"], error=obj(["code", "message"], code=STRING, message=STRING)),
    "Status": obj(["name", "display_name", "version", "api", "actors", "services", "origins"],
                  name=STRING, display_name=STRING, version=STRING,
                  api={**INTEGER, "minimum": 1, "description": "the API level (see api.md)"},
                  time=NUMBER,
                  actors={"type": "object", "additionalProperties": obj(
                      ["state"], state=STRING, pid={"type": ["integer", "null"]},
                      uptime={"type": ["number", "null"]}, ondemand=BOOLEAN)},
                  services={"type": "object", "additionalProperties": obj(
                      ["workers", "queued"], workers=INTEGER, queued=INTEGER)},
                  origins=array(STRING), broker=STRING, https=ref("Https")),
    "Https": obj(["served"], served=BOOLEAN, ports=array(INTEGER), listening=array(INTEGER),
                 error=STRING,
                 source={"enum": ["local", "operator"]}, subject=STRING, issuer=STRING,
                 names=array(STRING), sha256=STRING, not_before=STRING, not_after=STRING,
                 days_left=INTEGER),
    "NewSession": obj(["id", "token", "created", "expires_after", "close_delay"],
                      id=STRING, token={"type": "string", "minLength": 22}, created=NUMBER,
                      expires_after=NUMBER, close_delay=NUMBER),
    "Session": obj(["id", "created", "used", "images", "origin"], id=STRING, created=NUMBER,
                   used=NUMBER, images=INTEGER, origin=NULLABLE_STRING, sockets=INTEGER,
                   close_delay=NUMBER),
    "Closed": obj(["id", "removed"], id=STRING, removed=INTEGER),
    "Source": {"oneOf": [ref("ScannerSource"), ref("CameraSource")],
               "description": "a scanner or a camera (type)"},
    "ScannerSource": obj(["id", "type", "busy"], id=STRING, type={"const": "scanner"},
                         device=STRING, vendor=STRING, model=STRING, kind=STRING,
                         backend=STRING, busy=BOOLEAN),
    "CameraSource": obj(["id", "type", "name", "kind", "device", "open"],
                        id={"type": "string", "pattern": "^camera:",
                            "description": "camera:NAME of [camera] sources, or a V4L2 "
                                           "device's camera:<by-id name> or camera:videoN"},
                        type={"const": "camera"}, name=STRING, kind=CAMERA_KIND,
                        device={"type": "string", "description": "the device node, file or "
                                "URL (a URL's password and query values shown as ***)"},
                        open={"type": "boolean", "description": "a viewer or capture has it "
                              "open now"}),
    "Option": obj(["name", "type", "value"], name=STRING, title=STRING, description=STRING,
                  group=NULLABLE_STRING, type=STRING, unit=NULLABLE_STRING, value={},
                  default={}, active=BOOLEAN, settable=BOOLEAN, constraint={}),
    "Options": {"oneOf": [ref("ScannerOptions"), ref("CameraOptions")],
                "description": "a scanner's SANE options, or what a camera offers"},
    "ScannerOptions": obj(["source", "busy", "options", "aliases"], source=STRING,
                          busy=BOOLEAN, options=array(ref("Option")), aliases=ANY_OBJECT),
    "CameraOptions": obj(["source", "kind", "size", "fps", "modes", "properties", "options"],
                         source=STRING, kind=CAMERA_KIND,
                         size={"type": "string", "description": "the frame size now, WxH"},
                         fps={"type": ["number", "null"], "description": "frames a second "
                              "the camera sends (null: not known yet)"},
                         modes=array(obj(["format", "width", "height", "fps"],
                                         format={"type": "string",
                                                 "description": "fourcc, e.g. MJPG, YUYV"},
                                         width=INTEGER, height=INTEGER, fps=array(NUMBER))),
                         properties={"type": "object", "additionalProperties": NUMBER,
                                     "description": "adjustable properties the device "
                                     "answers for (V4L2: brightness, contrast, focus, "
                                     "exposure, ...)"},
                         options=array(ref("CameraOption"))),
    "CameraOption": obj(["name", "type", "default"], name=STRING, title=STRING,
                        type={"enum": ["string", "float", "bool"]}, unit=STRING,
                        list=array(STRING),
                        range=obj(["min", "max"], min=NUMBER, max=NUMBER), default={},
                        settable=BOOLEAN),
    "ScanRequest": {**obj(["source"], source=STRING,
                          options={"type": "object", "description": "the source's options "
                                   "(GET .../options); a camera's: resolution (WxH), "
                                   "interval (seconds between frames), document (find the "
                                   "page in the frame, straighten and crop it), and a V4L2 "
                                   "camera's properties (brightness, focus, exposure, ...: "
                                   "see options), set before the first frame"},
                          pages={"type": "integer", "minimum": 1,
                                 "description": "pages to scan, or frames to capture"},
                          batch=BOOLEAN),
                    "additionalProperties": False},
    "Job": obj(["job", "state"], job=STRING,
               state=JOB_STATE,
               pages=INTEGER, images=array(STRING), progress={}, error={},
               source=STRING, settings=ANY_OBJECT, session=STRING, request=ANY_OBJECT,
               created=NUMBER, updated=NUMBER),
    "UploadRequest": {**obj(["url"], url=STRING, images=array(STRING),
                            method={"enum": ["POST", "PUT", "post", "put"]},
                            format={"enum": ["pdf", "tiff", "tif", "jpeg", "jpg", "png",
                                             "zip"]},
                            page_format={"enum": ["jpeg", "jpg", "png"]},
                            fields={"type": "object", "additionalProperties": STRING},
                            headers={"type": "object", "additionalProperties": STRING},
                            filename=STRING, field_name=STRING,
                            auth={**obj(["user"], user=STRING, password=STRING),
                                  "additionalProperties": False},
                            title=STRING, author=STRING, subject=STRING,
                            keywords=array(STRING), pdfa=BOOLEAN,
                            compression={"enum": ["auto", "jpeg", "lossless"]},
                            quality={"type": "integer", "minimum": 1, "maximum": 100},
                            tiff_compression=STRING, order={"enum": ["given", "buffer"]}),
                      "additionalProperties": False},
    "UploadJob": obj(["job", "session", "state", "progress", "attempts", "url", "method",
                      "format", "files"],
                     job=STRING, session=STRING,
                     state=JOB_STATE,
                     progress=obj(["sent", "total", "percent"], sent=INTEGER, total=INTEGER,
                                  percent=NUMBER),
                     attempts=INTEGER, method=STRING, format=STRING,
                     url={"type": "string",
                          "description": "the target, its query values shown as ***"},
                     files=array(obj(["name", "bytes"], name=STRING, bytes=INTEGER)),
                     idempotency_key=STRING, created=NUMBER, updated=NUMBER,
                     next_attempt=NUMBER,
                     result=obj(["status", "body"], status=INTEGER, body=STRING),
                     error=obj(["code", "message"], code=STRING, message=STRING,
                               status=INTEGER)),
    "Image": obj(["id", "index", "width", "height", "dpi", "mode", "format", "bytes", "tags",
                  "etag"],
                 id=STRING, index=INTEGER, width=INTEGER, height=INTEGER, dpi=array(NUMBER),
                 mode={"enum": ["bw", "gray", "color"]}, bit_depth=INTEGER,
                 pixel_mode=STRING, format=STRING, bytes=INTEGER, source=STRING,
                 created=NUMBER, tags=array(STRING), edits=INTEGER, meta=ANY_OBJECT,
                 etag=STRING),
    "Imported": obj(["images"], images=array(ref("Image"))),
    "Deleted": obj(["deleted"], deleted=array(STRING)),
    "Order": obj(["order"], order=array(STRING)),
    "Op": {**obj(["op"], op={"enum": ["rotate", "flip", "mirror", "crop", "resize",
                                       "bitdepth", "brightness", "contrast", "invert",
                                       "dpi"]}),
           "description": "rotate(angle, fill), flip, mirror, crop(left, top, right, "
                          "bottom in pixels), resize(width, height, resample), bitdepth(mode "
                          "bw|gray|color, threshold, dither), brightness(value), "
                          "contrast(value), invert, dpi(x, y)"},
    "DocumentRequest": {**obj([], images=array(STRING),
                              format={"enum": ["pdf", "tiff", "tif", "jpeg", "jpg", "png",
                                               "bmp", "gif"]},
                              filename=STRING, title=STRING, author=STRING, subject=STRING,
                              keywords=array(STRING), pdfa=BOOLEAN,
                              compression={"enum": ["auto", "jpeg", "lossless"]},
                              quality={"type": "integer", "minimum": 1, "maximum": 100},
                              tiff_compression=STRING, order={"enum": ["given", "buffer"]},
                              split_by={"enum": ["barcode"], "description":
                                        "one document per part: a page with a separator "
                                        "barcode starts a new part (the answer is a zip)"},
                              separator={**obj([], formats=array(BARCODE_FORMAT),
                                               pattern={"type": "string", "description":
                                                        "a regular expression (RE2: no "
                                                        "backreferences or lookaround) the "
                                                        "barcode's text must match"},
                                               keep={"type": "boolean", "description":
                                                     "keep the separator page (default: "
                                                     "dropped)"}),
                                         "additionalProperties": False}),
                        "additionalProperties": False},
    "Languages": obj(["installed", "default", "tesseract"], installed=array(STRING),
                     default=STRING, tesseract=STRING, worker=ref("Worker")),
    "Worker": obj(["host", "pid"], host=STRING, pid=INTEGER),
    "OcrRequest": {**obj([], images=array(STRING),
                         lang={"oneOf": [{"type": "string", "description": "eng, deu+eng"},
                                         {**array(STRING), "minItems": 1}]},
                         output={"oneOf": [OCR_OUTPUT, {**array(OCR_OUTPUT), "minItems": 1}],
                                 "description": "what the result holds (default text)"},
                         rotate={"type": "boolean", "description": "detect the page's "
                                 "orientation and read it upright (default [ocr] "
                                 "auto_rotate)"},
                         timeout=TIMEOUT),
                   "additionalProperties": False},
    "Word": obj(["text", "conf", "box", "line", "block"], text=STRING, conf=NUMBER,
                box={**array(NUMBER), "minItems": 4, "maxItems": 4,
                     "description": "x0, y0, x1, y1 in pixels of the upright page"},
                line=INTEGER, block=INTEGER),
    "OcrPage": obj(["image", "index", "text", "rotation", "orientation_confidence", "width",
                    "height", "confidence", "seconds", "worker"],
                   image=STRING, index=INTEGER, text=STRING,
                   rotation={"enum": [0, 90, 180, 270], "description": "clockwise degrees "
                             "the page was turned to read it upright"},
                   orientation_confidence=NUMBER, width=INTEGER, height=INTEGER,
                   confidence={"type": ["number", "null"], "description": "the words' mean "
                               "confidence, 0..100 (null: no words)"},
                   seconds=NUMBER, worker=ref("Worker"), words=array(ref("Word"))),
    "OcrResult": obj(["lang", "text", "pages", "files"], lang=STRING,
                     text={"type": "string", "description": "the pages' text, joined by "
                           "form feeds"},
                     pages=array(ref("OcrPage")),
                     files=obj(["text"], text=STRING, hocr=STRING, pdf=STRING)),
    "Barcode": obj(["format", "text", "raw", "points", "engine"], format=BARCODE_FORMAT,
                   text=STRING, raw={"type": "string", "contentEncoding": "base64"},
                   points={**array({**array(NUMBER), "minItems": 2, "maxItems": 2}),
                           "description": "the four corners in pixels of the page"},
                   engine=STRING),
    "BarcodeRequest": {**obj([], images=array(STRING),
                             formats={**array(BARCODE_FORMAT), "minItems": 1},
                             region={**obj(["left", "top", "width", "height"],
                                           left={"type": "integer", "minimum": 0},
                                           top={"type": "integer", "minimum": 0},
                                           width={"type": "integer", "minimum": 1},
                                           height={"type": "integer", "minimum": 1}),
                                     "description": "where to look, in pixels of the page"},
                             engine={"enum": ["zxing", "zbar"]}, timeout=TIMEOUT),
                       "additionalProperties": False},
    "BarcodeResult": obj(["engine", "count", "pages"], engine=STRING, count=INTEGER,
                         pages=array(obj(["image", "index", "barcodes"], image=STRING,
                                         index=INTEGER, barcodes=array(ref("Barcode"))))),
    "OcrJob": recognition_job("ocr", ref("OcrResult")),
    "BarcodeJob": recognition_job("barcodes", ref("BarcodeResult")),
}

IMAGE_TYPES = ("image/jpeg", "image/png", "image/tiff", "image/bmp", "image/gif")
LIVE_VIEW = {"200": {
    "description": "an endless multipart/x-mixed-replace stream (boundary scanbridge-frame) "
                   "for an <img src>: each part a JPEG (Content-Type: image/jpeg, "
                   "Content-Length, X-Frame: the camera's frame number), the newest frame "
                   "at most fps a second (a slow viewer skips frames). When the camera goes "
                   "away the stream ends with the closing boundary and the session gets a "
                   "camera.error event. Errors before the first frame are JSON: 401 "
                   "unauthorized (no session or token), 403 forbidden (another session's "
                   "token), 404 not_found (no such camera), 404 device_gone (it cannot be "
                   "opened), 400 invalid_argument (fps, resolution), 422 invalid_option (a "
                   "size the camera does not give), 409 busy (the camera is open at another "
                   "size)",
    "content": {"multipart/x-mixed-replace": {"schema": {"type": "string",
                                                         "format": "binary"}}}}}

PATHS = {
    "/api/v1/status": {"get": op("Version, API level, actors and their states", ok(ref("Status")),
                                 session=False, tag="service")},
    "/api/v1/origin": {"get": op(
        "Whether the request's Origin may use the service; answered to every origin "
        "(Access-Control-Allow-Origin: *), with the command that allows one that may not",
        ok(obj(["origin", "allowed"], origin=NULLABLE_STRING, allowed=BOOLEAN,
               command=STRING, message=STRING)), session=False, tag="service")},
    "/api/v1/sessions": {"post": op(
        "Open a session (its token is shown once); 429 too_many at [gateway] max_sessions "
        "or max_sessions_per_origin", ok(ref("NewSession"), "created", "201"),
        body=json_body(obj([], meta=ANY_OBJECT), required=False), session=False)},
    "/api/v1/sessions/{sid}": {
        "get": op("The session", ok(ref("Session"))),
        "delete": op("Close the session; its images are removed", ok(ref("Closed")))},
    "/api/v1/sessions/{sid}/events": {"get": op(
        "WebSocket of the session's events: {seq, topic, data, time}; first a hello",
        {"101": {"description": "switching to the WebSocket protocol"}},
        params=(query("since", {"type": "integer", "minimum": 0}, "last seq seen"),
                query("epoch", STRING, "the hello's epoch")))},
    "/api/v1/sources": {"get": {
        **op("Scanners and cameras, as last found; refresh=true probes every device again "
             "and needs a session token (401 unauthorized without)", ok(array(ref("Source"))),
             params=(query("refresh", BOOLEAN), SESSION_QUERY, TOKEN_QUERY), session=False,
             tag="sources"),
        "security": [{}, *SECURED]}},
    "/api/v1/sources/{src}/options": {"get": {
        **op("A scanner's options with their constraints and defaults, or what a camera "
             "offers (sizes, frame rates, adjustable properties); it opens the device, so it "
             "needs a session token (401 unauthorized without)", ok(ref("Options")),
             params=(SRC, SESSION_QUERY, TOKEN_QUERY), session=False, tag="sources"),
        "security": SECURED}},
    "/api/v1/sources/{src}/stream": {"get": {
        **op("Camera live view as MJPEG, for <img src>; it needs a session", LIVE_VIEW,
             params=(SRC, SESSION_QUERY, TOKEN_QUERY,
                     query("fps", {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
                           "frames a second at most (default and cap: [camera] max_fps)"),
                     query("resolution", {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
                           "a frame size the camera offers, WxH (default: as it is open)")),
             session=False, tag="sources"),
        "security": SECURED}},
    "/api/v1/sessions/{sid}/scans": {
        "post": op("Start a scan job, or a capture of camera frames, into the session",
                   ok(ref("Job"), "started", "202"),
                   body=json_body(ref("ScanRequest"))),
        "get": op("The session's scan jobs", ok(array(ref("Job"))))},
    "/api/v1/sessions/{sid}/scans/{job}": {
        "get": op("A scan job's state", ok(ref("Job")), params=(JOB,)),
        "delete": op("Cancel a scan job", ok(ref("Job")), params=(JOB,))},
    "/api/v1/sessions/{sid}/images": {
        "get": op("The session's images in page order", ok(array(ref("Image"))),
                  params=(query("tags", STRING, "comma-separated"),
                          query("match", {"enum": ["any", "all"]}))),
        "post": op("Import a file (JPEG, PNG, TIFF, BMP, GIF, PDF): the body is the file",
                   ok(ref("Imported"), "imported", "201"),
                   params=(query("dpi", {"type": "integer", "minimum": 10, "maximum": 1200}),
                           query("index", {"type": "integer", "minimum": 0}),
                           query("password", STRING)),
                   body={"required": True, "content": {
                       kind: {"schema": {"type": "string", "format": "binary"}}
                       for kind in (*IMAGE_TYPES, "application/pdf")}}),
        "delete": op("Delete images (all without a body)", ok(ref("Deleted")),
                     body=json_body(obj(["images"], images=array(STRING)), required=False))},
    "/api/v1/sessions/{sid}/images/{iid}": {
        "get": op("The image, as stored or converted", binary(*IMAGE_TYPES), params=(
            IID, query("format", {"enum": ["jpeg", "jpg", "png", "tiff", "tif", "bmp", "gif"]}),
            query("quality", {"type": "integer", "minimum": 1, "maximum": 100}),
            query("width", {"type": "integer", "minimum": 1}),
            query("height", {"type": "integer", "minimum": 1}),
            query("v", STRING, "the image's etag: makes the answer cacheable for good"))),
        "delete": op("Delete the image", ok(ref("Deleted")), params=(IID,))},
    "/api/v1/sessions/{sid}/images/{iid}/info": {"get": op(
        "The image's facts and edit history", ok(ref("Image")), params=(IID,))},
    "/api/v1/sessions/{sid}/images/{iid}/thumbnail": {"get": op(
        "A JPEG that fits in size x size", binary("image/jpeg"), params=(
            IID, query("size", {"type": "integer", "minimum": 16, "maximum": 1024}),
            query("v", STRING)))},
    "/api/v1/sessions/{sid}/images/{iid}/ops": {"post": op(
        "Edit the image (one undoable step)", ok(ref("Image")), params=(IID,),
        body=json_body({"oneOf": [array(ref("Op")), ref("Op"),
                                  obj(["ops"], ops=array(ref("Op")))]}))},
    "/api/v1/sessions/{sid}/images/{iid}/undo": {"post": op(
        "Undo the image's last edit", ok(ref("Image")), params=(IID,))},
    "/api/v1/sessions/{sid}/order": {"put": op(
        "Set the page order (every id once)", ok(ref("Order")),
        body=json_body({"oneOf": [array(STRING), ref("Order")]}))},
    "/api/v1/sessions/{sid}/documents": {"post": op(
        "Save images as one PDF or TIFF, or each as JPEG/PNG/BMP/GIF (a zip for several); "
        "with split_by barcode, a zip of one PDF or TIFF per part",
        {"200": {**binary("application/pdf", "image/tiff", "application/zip",
                          *IMAGE_TYPES)["200"], "headers": {
            "X-Scanbridge-Pages": {"schema": INTEGER, "description": "pages (or files) made"},
            "X-Scanbridge-Parts": {"schema": INTEGER,
                                   "description": "with split_by: documents in the zip"}}}},
        body=json_body(ref("DocumentRequest"), required=False))},
    "/api/v1/sessions/{sid}/uploads": {
        "post": op("Queue an upload of images to a web server (rendered at once, sent with "
                   "retries)", ok(ref("UploadJob"), "accepted", "202"),
                   body=json_body(ref("UploadRequest"))),
        "get": op("The session's upload jobs", ok(array(ref("UploadJob"))))},
    "/api/v1/sessions/{sid}/uploads/{job}": {
        "get": op("An upload job: state, progress, the receiver's answer",
                  ok(ref("UploadJob")), params=(JOB,)),
        "delete": op("Cancel an upload job", ok(ref("UploadJob")), params=(JOB,))},
    "/api/v1/ocr/languages": {"get": op(
        "The OCR languages installed, the default and the Tesseract version",
        ok(ref("Languages")), session=False, tag="recognition")},
    "/api/v1/sessions/{sid}/ocr": {
        "post": op("Start an OCR job over the session's pages (text, words, hOCR, "
                   "searchable PDF)", accepted(ref("OcrJob")),
                   body=json_body(ref("OcrRequest"), required=False), tag="recognition"),
        "get": op("The session's OCR jobs", ok(array(ref("OcrJob"))), tag="recognition")},
    "/api/v1/sessions/{sid}/ocr/{job}": {
        "get": op("An OCR job: state, progress, result", ok(ref("OcrJob")), params=(JOB,),
                  tag="recognition"),
        "delete": op("Cancel an OCR job", ok(ref("OcrJob")), params=(JOB,),
                     tag="recognition")},
    "/api/v1/sessions/{sid}/ocr/{job}/{output}": {"get": op(
        "A finished OCR job's text, hOCR or searchable PDF (409 before it is done)",
        binary("text/plain", "text/html", "application/pdf"),
        params=(JOB, {"name": "output", "in": "path", "required": True,
                      "schema": {"enum": ["text", "hocr", "pdf"]}},
                query("download", STRING, "true or 1: answer as an attachment"),
                query("filename", STRING, "the attachment's name")), tag="recognition")},
    "/api/v1/sessions/{sid}/barcodes": {
        "post": op("Start a barcode job over the session's pages",
                   accepted(ref("BarcodeJob")),
                   body=json_body(ref("BarcodeRequest"), required=False), tag="recognition"),
        "get": op("The session's barcode jobs", ok(array(ref("BarcodeJob"))),
                  tag="recognition")},
    "/api/v1/sessions/{sid}/barcodes/{job}": {
        "get": op("A barcode job: state, progress, result", ok(ref("BarcodeJob")),
                  params=(JOB,), tag="recognition"),
        "delete": op("Cancel a barcode job", ok(ref("BarcodeJob")), params=(JOB,),
                     tag="recognition")},
}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "Scanbridge", "version": __version__,
             "description": "Scanners and cameras of this computer for allowed web pages. "
                            "Errors are {error: {code, message}}; session endpoints need "
                            "the session token (Authorization: Bearer, or ?token=)."},
    "servers": [{"url": "/"}],
    "paths": PATHS,
    "components": {"schemas": SCHEMAS, "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"},
        "token": {"type": "apiKey", "in": "query", "name": "token"}}},
}
