"""HTTPS benchmark: serving over TLS, new connections, certificate changes and Firefox trust.

Starts, in a fresh temp home, the whole service under supervisord (``Service`` of the
tests: broker, buffer, gateway, monitor, certhelper as installed; no system SANE backends;
``HOME`` is the temp home's ``user`` folder, so Firefox profiles stay in it), puts one
stored A4 300 dpi JPEG page (bench/pages.py's drawn page, 2480 x 3508, quality 80, about
1.4 MB) into a session through the broker's ``buffer.add``, and starts a minimal aiohttp
app in its own process serving the same file, and a copy of the gateway's status JSON,
over HTTPS with the same certificate (``cert/active.pem`` loaded with
``common.certs.server_context``: the same key type, the same TLS settings). Then measures
in the same run:

  1. Image GET over HTTPS (``GET /api/v1/sessions/{sid}/images/{iid}`` with the token)
     through the gateway against the aiohttp app (``web.FileResponse``). One keep-alive
     aiohttp client verifying against ``cert/ca.pem``; 300 requests (40 with ``--quick``)
     one at a time, then as many with 8 in flight; the servers alternate in short blocks.
     Mean / p50 / p95 and the ratio of the means             (goal: <= 1.5 x plain aiohttp)
     Beside it, as information: the same GET through the gateway over plain HTTP, and the
     HTTPS / HTTP ratio (sendfile is only possible without TLS).
  2. New connections: TCP connect + TLS handshake (verified against the CA) + ``GET
     /api/v1/status`` + the whole answer, a fresh connection (no session resumption) each
     time, gateway against the aiohttp app serving the gateway's status JSON as a static
     body; 200 of each (40 with ``--quick``). p50 / p95 and the ratio of p50s; the
     handshake alone, and the same GET on a keep-alive connection (the gateway's status
     makes two broker calls: the endpoint's own cost, not TLS's).
  3. Certificate switch: an operator pair (``server_key.pem`` then ``server.pem``, made by
     ``actors.certhelper.authority``: its own CA, loopback names) is written into
     ``cert/``; time from the pair complete on disk until a handshake on the HTTPS port
     gets it (a handshake every 10 ms); then both files are removed and the time until
     the local certificate is back. 5 times (3 with ``--quick``): median / max seconds.
     (The certificate helper acts 0.3 s after the last file event, then the gateway loads
     the pair on ``cert.changed``.)
  4. Renewal: ``local.pem`` / ``local_key.pem`` replaced by a certificate of the home's CA
     with 10 days left (renewal is 30 days ahead); time until a new certificate is served,
     checked to be the CA's, for the loopback names, with the full validity. 3 times.
  5. Firefox trust: ``firefox-esr --headless -CreateProfile "NAME DIR"`` with ``HOME`` the
     service's user home; time from the command's end until ``certutil -L -d sql:DIR -n
     <CA common name>`` succeeds (polled every 20 ms). 3 profiles.

Prints one line per figure and a summary. ``python -m bench.https [--quick] [--keep]``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bench.gateway import CONCURRENCY, MB, Fetcher, image_rounds, start_with_page
from bench.https_certs import any_cert, certificate_figures, key_kind, leaf, met, served, trusting
from bench.report import Run, command_line, ms, note, options, out, pct
from common import certs
from tests.support.service import Service
from tests.support.stack import free_port, poll_for, start_server, stop
from tests.support.web import read_answer

# The reference: the same file and a fixed status body from a plain aiohttp app over
# HTTPS, with the certificate the gateway serves; no guard, no session, no broker.
REFERENCE_SERVER = """
import sys
from aiohttp import web
from common.certs import server_context

image_path, status_path, pem, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
status_body = open(status_path, "rb").read()

async def image(request):
    return web.FileResponse(image_path, headers={"Content-Type": "image/jpeg"})

async def status(request):
    return web.Response(body=status_body, content_type="application/json")

app = web.Application()
app.router.add_get("/image", image)
app.router.add_get("/api/v1/status", status)
web.run_app(app, host="127.0.0.1", port=port, ssl_context=server_context(pem), print=None,
            access_log=None, handle_signals=True)
"""


# --- part 1: image GET over HTTPS


async def image_part(targets: dict[str, tuple[str, dict]], jpeg: bytes, ca: Path,
                     count: int) -> dict:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * (len(targets) + 1), ssl=trusting(ca))
    async with aiohttp.ClientSession(connector=connector) as http:
        return await image_rounds(Fetcher(http), targets, jpeg, count,
                                  (15, 6) if count >= 150 else (5, 2),
                                  f"image GET over HTTPS and HTTP: {count} one at a time, then "
                                  f"{count} with {CONCURRENCY} in flight, each of "
                                  f"{', '.join(targets)}")


def start_reference(image: Path, status: Path, pem: Path, port: int,
                    ca: Path) -> subprocess.Popen:
    context = trusting(ca)

    def answers():
        return fresh_get(port, "/api/v1/status", context)[0] == 200
    return start_server([sys.executable, "-c", REFERENCE_SERVER, str(image), str(status),
                         str(pem), str(port)], answers, "the reference aiohttp server")


# --- part 2: new connections


def request_bytes(port: int, path: str, close: bool) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n").encode()


def fresh_get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, float]:
    """(status, seconds of connect + handshake) on a new connection; reads the answer."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            shaken = time.perf_counter() - start
            tls.sendall(request_bytes(port, path, close=True))
            status, _, _ = read_answer(tls, timeout=10)
    return status, shaken


def connection_part(ports: dict[str, int], ca: Path, count: int) -> dict:
    context = trusting(ca)  # a new SSLSocket without ``session=``: a full handshake each time
    total: dict[str, list[float]] = {name: [] for name in ports}
    shake: dict[str, list[float]] = {name: [] for name in ports}
    kept: dict[str, list[float]] = {name: [] for name in ports}
    blocks = 10 if count >= 100 else 4
    names = list(ports)
    note(f"new connections: {count} TLS handshakes + GET /api/v1/status, each of "
         f"{', '.join(names)}")
    for port in ports.values():  # warm up
        for _ in range(5):
            fresh_get(port, "/api/v1/status", context)
    for block in range(blocks):
        for name in names[block % 2:] + names[:block % 2]:
            for _ in range(count // blocks):
                start = time.perf_counter()
                status, shaken = fresh_get(ports[name], "/api/v1/status", context)
                total[name].append(time.perf_counter() - start)
                if status != 200:
                    raise RuntimeError(f"{name} /api/v1/status: {status}")
                shake[name].append(shaken)
    for name, port in ports.items():  # the same GET on one keep-alive connection
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                for _ in range(count):
                    start = time.perf_counter()
                    tls.sendall(request_bytes(port, "/api/v1/status", close=False))
                    status, _, _ = read_answer(tls, timeout=10)
                    kept[name].append(time.perf_counter() - start)
                    if status != 200:
                        raise RuntimeError(f"{name} /api/v1/status: {status}")
    return {"total": total, "shake": shake, "kept": kept}


# --- the run


def main() -> None:
    opts = options(command_line(__doc__, "fewer requests (CI smoke run)"))
    count = 40 if opts.quick else 300
    connections = 40 if opts.quick else 200
    switches = 3 if opts.quick else 5

    with Run("https", opts.keep) as run:
        service = run.service(Service(run.work / "home"))
        jpeg, api, sid, token, stored, located = start_with_page(service)
        iid = stored["id"]
        cert = service.home / "cert"
        ca = cert / "ca.pem"
        https = service.https_ports[1]
        poll_for(lambda: api.get("/api/v1/status").json()["https"].get("served"), 30,
                 "HTTPS served")
        status_copy = run.work / "status.json"
        status_copy.write_bytes(api.get("/api/v1/status").body)
        port = free_port()
        reference = run.process(start_reference(Path(located["path"]), status_copy,
                                                cert / "active.pem", port, ca))
        if served(port, any_cert()) != served(https, any_cert()):
            raise RuntimeError("the reference does not serve the gateway's certificate")
        served_leaf = leaf(cert / "active.pem")
        out(f"page {stored['width']}x{stored['height']} JPEG q80, {len(jpeg) / MB:.2f} MB; "
            f"gateway HTTPS port {https}, HTTP port {api.port}; reference aiohttp "
            f"{aiohttp.__version__} on port {port}, same certificate "
            f"({key_kind(served_leaf)}, "
            f"{certs.fingerprint(served_leaf)[:16]}); {os.cpu_count()} CPUs")

        # 1: image GET
        load = os.getloadavg()[0]
        path = f"/api/v1/sessions/{sid}/images/{iid}"
        auth = {"Authorization": f"Bearer {token}"}
        targets = {"gateway https": (f"https://127.0.0.1:{https}{path}", auth),
                   "aiohttp https": (f"https://127.0.0.1:{port}/image", {}),
                   "gateway http": (f"http://127.0.0.1:{api.port}{path}", auth)}
        got = asyncio.run(image_part(targets, jpeg, ca, count))
        out(f"load average (1 min) {load:.2f} before, {os.getloadavg()[0]:.2f} after the "
            "image GETs")
        ratios, plain = {}, {}
        for kind, label in (("seq", "one at a time"), ("par", f"{CONCURRENCY} in flight")):
            gw, ref, http = (got[kind][name] for name in targets)
            ratios[kind] = statistics.mean(gw) / statistics.mean(ref)
            plain[kind] = statistics.mean(gw) / statistics.mean(http)
            out(f"image GET, {label} ({len(gw)} requests each):")
            for name in targets:
                extra = ""
                if kind == "par":
                    n, wall = len(got[kind][name]), got["wall"][name]
                    extra = f"   {n / wall:6.1f} req/s, {n * len(jpeg) / MB / wall:5.0f} MB/s"
                out(f"  {name:13s}  {ms(got[kind][name])}{extra}")
            out(f"  gateway / aiohttp over HTTPS: ratio of means {ratios[kind]:.2f}x (p50 "
                f"{pct(gw, 50) / pct(ref, 50):.2f}x, p95 {pct(gw, 95) / pct(ref, 95):.2f}x)  "
                "(goal <= 1.5x)")
            out(f"  gateway HTTPS / HTTP (information): {plain[kind]:.2f}x")
            run.summary.append(f"image GET over HTTPS {label}: gateway "
                               f"{statistics.mean(gw) * 1e3:.2f} ms vs aiohttp "
                               f"{statistics.mean(ref) * 1e3:.2f} ms mean = {ratios[kind]:.2f}x "
                               f"(goal <= 1.5x: {met(ratios[kind] <= 1.5)}); gateway HTTPS / "
                               f"HTTP {plain[kind]:.2f}x")

        # 2: new connections
        conn = connection_part({"gateway": https, "aiohttp": port}, ca, connections)
        out(f"new connection (connect + TLS handshake + GET /api/v1/status, "
            f"{connections} each):")
        for name in ("gateway", "aiohttp"):
            out(f"  {name:8s} {ms(conn['total'][name])}")
            out(f"    handshake alone {ms(conn['shake'][name])}")
            out(f"    GET on a keep-alive connection {ms(conn['kept'][name])}")
        total = {name: pct(conn["total"][name], 50) for name in ("gateway", "aiohttp")}
        shake = {name: pct(conn["shake"][name], 50) for name in total}
        new_ratio = total["gateway"] / total["aiohttp"]
        shake_ratio = shake["gateway"] / shake["aiohttp"]
        out(f"  ratio of p50s {new_ratio:.2f}x (p95 "
            f"{pct(conn['total']['gateway'], 95) / pct(conn['total']['aiohttp'], 95):.2f}x);"
            f" the handshake alone {shake_ratio:.2f}x (p50); the rest is the status endpoint's"
            " own work (a static body for aiohttp)")
        run.summary.append(f"new HTTPS connection + status GET: gateway p50 "
                           f"{total['gateway'] * 1e3:.2f} ms / p95 "
                           f"{pct(conn['total']['gateway'], 95) * 1e3:.2f} ms vs aiohttp p50 "
                           f"{total['aiohttp'] * 1e3:.2f} ms / p95 "
                           f"{pct(conn['total']['aiohttp'], 95) * 1e3:.2f} ms = {new_ratio:.2f}x; "
                           f"handshake alone p50 {shake['gateway'] * 1e3:.2f} vs "
                           f"{shake['aiohttp'] * 1e3:.2f} ms = {shake_ratio:.2f}x")
        stop(reference)

        certificate_figures(service, run.work, switches, run.summary)


if __name__ == "__main__":
    main()
