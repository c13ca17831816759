"""Uploads to an HTTPS receiver: certificates are always verified.

The receiver's certificate comes from a CA made in the test (the same code that makes the
service's own CA). Without ``[uploader] ca_bundle`` that CA is unknown, so the job fails
at once with ``upload_tls_error`` and nothing is stored; with the bundle the same upload
is delivered over TLS.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from actors.certhelper import authority
from tests.support.receiver import Receiver
from tests.support.service import Service
from tests.support.stack import poll_for, write_ini

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory):
    """(receiver over HTTPS, path of its CA's PEM)."""
    folder = tmp_path_factory.mktemp("tls")
    ca = authority.create_ca()
    server = authority.issue_server(ca, 30)
    (folder / "ca.pem").write_bytes(ca.chain_pem)
    (folder / "server.pem").write_bytes(server.pem())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(folder / "server.pem"))
    with Receiver(tls=context) as receiver:
        yield receiver, folder / "ca.pem"


def upload(tmp_path: Path, receiver: Receiver, extra_ini: str = "") -> dict:
    """Start a service, upload one page as PDF to the receiver, answer the final job."""
    svc = Service(tmp_path / "home", extra_ini=extra_ini)
    write_ini(svc.home, "user_config.ini",
              f"[access]\nupload_targets = {receiver.origin}/\n")
    svc.start()
    try:
        with svc.client() as client:
            session = client.call("buffer", "open_session", {})["session"]
            page = Path(__file__).parent.parent / "actors" / "gateway" / "static"
            assert page.exists()
            from PIL import Image
            import io
            out = io.BytesIO()
            Image.new("RGB", (200, 100), "white").save(out, "JPEG")
            client.call("buffer", "add", {"session": session}, blobs=[out.getvalue()])
            job = client.call("uploader", "submit", {
                "session": session, "url": receiver.url("/in"), "format": "pdf"})
            return poll_for(lambda: (j := client.call("uploader", "job", {"job": job["job"]}))
                            ["state"] in ("done", "failed") and j, 30, "the job to end")
    finally:
        svc.stop()


def test_an_https_receiver_with_an_unknown_ca_fails_at_once_and_gets_nothing(
        tmp_path, tls_receiver):
    receiver, _ = tls_receiver
    before = len(receiver.documents)
    job = upload(tmp_path, receiver, "[uploader]\nbackoff_first = 0.05\n")
    assert job["state"] == "failed", job
    assert job["error"]["code"] == "upload_tls_error", job
    assert job["attempts"] == 1, job  # a certificate that does not verify is not retried
    assert len(receiver.documents) == before


def test_an_https_receiver_is_verified_against_ca_bundle_and_gets_the_pdf(
        tmp_path, tls_receiver):
    receiver, ca = tls_receiver
    job = upload(tmp_path, receiver, f"[uploader]\nca_bundle = {ca}\n")
    assert job["state"] == "done", job
    assert job["result"]["status"] == 200, job
    stored = receiver.documents[job["idempotency_key"]]
    (part,) = stored.files
    assert part.filename == "scan.pdf" and part.size == job["files"][0]["bytes"]


def test_a_ca_bundle_that_is_not_a_file_fails_start_naming_the_line(tmp_path):
    svc = Service(tmp_path / "home", extra_ini="[uploader]\nca_bundle = /nonexistent.pem\n")
    done = svc.cli("start")
    try:
        assert done.returncode == 78, done.stderr
        assert "DSConfiguration.ini:" in done.stderr and "ca_bundle" in done.stderr
        assert "is not a file" in done.stderr
    finally:
        svc.stop()
