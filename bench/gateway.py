"""Gateway benchmark: serving stored pages over HTTP and the event path to a browser.

Starts, in a fresh temp home, the whole service under supervisord (``Service`` of the
tests, so broker, buffer, gateway and monitor as installed; no system SANE backends and
no scan: pages go into a session through the broker's ``buffer.add``); then measures in
the same run:

  1. GET of a stored A4 300 dpi JPEG (2480 x 3508, quality 80: bench/pages.py's drawn
     page, about 1.4 MB) through the gateway (``GET /api/v1/sessions/{sid}/images/{iid}``
     with the token: the guard, the session check, the cached ``buffer.locate`` answer (a
     broker round trip the first time), then sendfile of the stored file) against a minimal
     aiohttp app in its own process serving the same file with ``web.FileResponse``. One
     aiohttp client with keep-alive for both; 400 requests (40 with ``--quick``) one at a
     time, then as many with 8 in flight; the two servers alternate in short blocks. Mean /
     p50 / p95 per request and the ratio of the means
                                                               (goal: <= 1.5 x plain aiohttp)
     Beside it, as information: where the difference comes from (a ``buffer.locate``
     through the broker from this process; ``GET .../images/{iid}/info``: guard, session
     and one broker call, no file), a thumbnail GET (first, then cached by the buffer) and
     a converted GET (``?format=png&width=800``, first and cached).
  2. Event latency: a real headless Chromium (Playwright) loads ``/welcome.htm`` from the
     gateway and opens the session's event WebSocket from that page; Python adds 100 small
     JPEG pages one by one (20 ms apart) through the broker and notes ``time.time()`` when
     each ``add`` reply arrives (the page is durable then); the page notes
     ``performance.timeOrigin + performance.now()`` when each ``buffer.changed`` add
     event arrives. Latency per page = browser receive time - add reply time, on the same
     machine clock (it can be near 0 or even negative: the event may overtake the reply)
                                                               (goal: p95 <= 100 ms)
     The gateway's publish time (the message's ``time``) splits it in two, and a few
     evaluate round trips show how the browser's clock lines up with Python's.

Prints one line per figure and a summary. ``python -m bench.gateway [--quick] [--keep]``.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
from PIL import Image

from bench.pages import A4_300, draw_pages
from bench.report import Run, command_line, ms, note, options, out, pct
from tests.support.service import Service
from tests.support.stack import free_port, poll_for, start_server, stop
from tests.support.web import Api

MB = 1 << 20
CONCURRENCY = 8
EVENT_PAGES = 100
EVENT_GAP = 0.02  # seconds between two adds
CHROMIUM = "/usr/bin/chromium"

# The reference: the same file from a plain aiohttp app, no guard, no session, no broker.
REFERENCE_SERVER = """
import sys
from aiohttp import web

path, port = sys.argv[1], int(sys.argv[2])

async def image(request):
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})

app = web.Application()
app.router.add_get("/image", image)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
            handle_signals=True)
"""

# In the page: open the event socket, resolve with the hello; then note each add event's
# arrival (the clock is read before anything else is done with the message).
OPEN_SOCKET = """
(url) => new Promise((resolve, reject) => {
  window.benchAdds = [];
  const ws = new WebSocket(url);
  window.benchSocket = ws;
  let hello = false;
  ws.onmessage = (event) => {
    const at = performance.timeOrigin + performance.now();
    const message = JSON.parse(event.data);
    if (message.topic === "hello") { hello = true; resolve(message); return; }
    if (message.topic === "buffer.changed" && message.data.action === "add") {
      window.benchAdds.push({at: at, ids: message.data.ids, sent: message.time});
    }
  };
  ws.onerror = () => { if (!hello) reject(new Error("websocket error")); };
  ws.onclose = (event) => { if (!hello) reject(new Error("closed " + event.code)); };
})
"""


# --- test pages


def small_page(number: int) -> bytes:
    """A distinct 200 x 200 JPEG."""
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (number * 37 % 256, number * 11 % 256, 128)).save(
        buf, "JPEG", quality=85)
    return buf.getvalue()


# --- figures


# --- part 1: HTTP


class Fetcher:
    """GETs over one keep-alive aiohttp client session; checks status and body."""

    def __init__(self, http: aiohttp.ClientSession):
        self.http = http

    async def get(self, url: str, headers: dict, want: bytes | None = None,
                  length: int | None = None) -> tuple[float, bytes]:
        start = time.perf_counter()
        async with self.http.get(url, headers=headers) as response:
            body = await response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body[:300]!r}")
        if want is not None and body != want:
            raise RuntimeError(f"GET {url}: {len(body)} bytes, not the stored file")
        if length is not None and len(body) != length:
            raise RuntimeError(f"GET {url}: {len(body)} bytes, expected {length}")
        return elapsed, body

    async def sequential(self, url: str, headers: dict, count: int, length: int) -> list:
        return [(await self.get(url, headers, length=length))[0] for _ in range(count)]

    async def concurrent(self, url: str, headers: dict, count: int,
                         length: int) -> tuple[list, float]:
        """``count`` GETs with CONCURRENCY in flight: (times, wall seconds)."""
        left = iter(range(count))
        times: list[float] = []

        async def worker():
            for _ in left:
                times.append((await self.get(url, headers, length=length))[0])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return times, time.perf_counter() - start


async def image_rounds(fetch: Fetcher, targets: dict[str, tuple[str, dict]], jpeg: bytes,
                       count: int, blocks: tuple[int, int], what: str) -> dict:
    """GETs of ``jpeg`` from each target (name: (url, headers)), once each gave the right
    bytes and its connections are warm (then ``what`` is noted): ``count`` one at a time,
    then ``count`` with CONCURRENCY in flight, in short blocks (``blocks``: how many of
    each) that take the targets in turn, so that a burst of load elsewhere hits every
    server.

    Returns {"seq": times, "par": times, "wall": seconds of the concurrent blocks}, each by
    target name.
    """
    for url, headers in targets.values():
        await fetch.get(url, headers, want=jpeg)
        await fetch.sequential(url, headers, 10, len(jpeg))
    note(what)
    seq_blocks, par_blocks = blocks
    names = list(targets)
    seq: dict[str, list[float]] = {name: [] for name in names}
    par: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, float] = {name: 0.0 for name in names}
    for block in range(seq_blocks):
        turn = block % len(names)
        for name in names[turn:] + names[:turn]:
            seq[name] += await fetch.sequential(*targets[name], count // seq_blocks,
                                                len(jpeg))
    for block in range(par_blocks):
        turn = block % len(names)
        for name in names[turn:] + names[:turn]:
            times, seconds = await fetch.concurrent(*targets[name], count // par_blocks,
                                                    len(jpeg))
            par[name] += times
            wall[name] += seconds
    return {"seq": seq, "par": par, "wall": wall}


async def http_part(gateway_url: str, token: str, reference_url: str, jpeg: bytes,
                    count: int, base: str, iid: str) -> dict:
    auth = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        fetch = Fetcher(http)
        targets = {"gateway": (gateway_url, auth), "aiohttp": (reference_url, {})}
        got = await image_rounds(fetch, targets, jpeg, count,
                                 (20, 8) if count >= 200 else (10, 4),
                                 f"image GET: {count} sequential, then {count} with "
                                 f"{CONCURRENCY} in flight, each server")

        note("info, thumbnail and converted GETs")
        extras: dict[str, list[float]] = {}
        # The gateway's fixed cost: guard, session, one broker call (buffer.info), no file.
        extras["info"] = [(await fetch.get(f"{base}/images/{iid}/info", auth))[0]
                          for _ in range(count)]
        thumb = f"{base}/images/{iid}/thumbnail"
        first, body = await fetch.get(thumb, auth)
        with Image.open(io.BytesIO(body)) as shown:
            thumb_size = shown.size
        extras["thumb first"] = [first]
        extras["thumb cached"] = [(await fetch.get(thumb, auth))[0]
                                  for _ in range(max(10, count // 4))]
        converted = f"{base}/images/{iid}?format=png&width=800"
        first, body = await fetch.get(converted, auth)
        with Image.open(io.BytesIO(body)) as shown:
            if shown.format != "PNG" or shown.width != 800:
                raise RuntimeError(f"converted GET gave {shown.format} {shown.size}")
            png_size, png_bytes = shown.size, len(body)
        extras["png first"] = [first]
        extras["png cached"] = [(await fetch.get(converted, auth))[0]
                                for _ in range(max(5, count // 10))]
    return {**got, "extras": extras, "thumb_size": thumb_size, "png_size": png_size,
            "png_bytes": png_bytes}


def start_with_page(service: Service) -> tuple[bytes, Api, str, str, dict, dict]:
    """Draw the A4 300 dpi page, start the service and store the page in a new session,
    kept byte for byte.

    Returns (the page, api, session, token, the buffer's add answer, its locate answer).
    """
    note("drawing the A4 300 dpi page")
    jpeg = draw_pages(1, A4_300)[0]
    note(f"starting the service in {service.home.parent}")
    service.start()
    api = Api(service)
    service.wait_running("gateway")
    poll_for(lambda: api.get("/api/v1/status").status == 200, 30, "the gateway")
    sid, token = api.open_session()
    with service.client() as client:
        stored = client.call("buffer", "add", {"session": sid}, blobs=[jpeg], timeout=60)
        located = client.call("buffer", "locate", {"session": sid, "image": stored["id"]})
    if located["bytes"] != len(jpeg) or Path(located["path"]).read_bytes() != jpeg:
        raise RuntimeError("the buffer did not keep the JPEG as it is")
    return jpeg, api, sid, token, stored, located


def start_reference(path: str, port: int) -> subprocess.Popen:
    def answers():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/image", timeout=2) as r:
            return r.status == 200
    return start_server([sys.executable, "-c", REFERENCE_SERVER, path, str(port)], answers,
                        "the reference aiohttp server")


# --- part 2: events to a browser


def event_part(service: Service, api: Api, count: int) -> dict:
    from playwright.sync_api import sync_playwright

    sid, token = api.open_session()
    ws_url = f"ws://127.0.0.1:{api.port}/api/v1/sessions/{sid}/events?token={token}"
    pages = [small_page(number) for number in range(count)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.goto(service.url("/welcome.htm", api.port))
            hello = page.evaluate(OPEN_SOCKET, ws_url)
            if hello.get("topic") != "hello":
                raise RuntimeError(f"no hello: {hello}")
            # How the page's clock lines up with time.time(): offset of the page's reading
            # from the midpoint of the round trip, bounded by half the round trip.
            offsets, halves = [], []
            for _ in range(9):
                before = time.time()
                seen = page.evaluate("performance.timeOrigin + performance.now()")
                after = time.time()
                offsets.append(seen / 1e3 - (before + after) / 2)
                halves.append((after - before) / 2)
            replies: dict[str, float] = {}
            add_times: list[float] = []
            with service.client() as client:
                client.call("buffer", "add", {"session": sid}, blobs=[small_page(999)])
                for data in pages:
                    start = time.time()
                    added = client.call("buffer", "add", {"session": sid}, blobs=[data],
                                        timeout=30)
                    replies[added["id"]] = now = time.time()
                    add_times.append(now - start)
                    time.sleep(EVENT_GAP)
            page.wait_for_function("n => window.benchAdds.length >= n", arg=count + 1,
                                   timeout=30000)
            got = page.evaluate("window.benchAdds")
            page.evaluate("window.benchSocket.close()")
        finally:
            browser.close()
    latency, to_gateway, to_browser = [], [], []
    for event in got:
        for iid in event["ids"]:
            if iid in replies:
                latency.append(event["at"] / 1e3 - replies[iid])
                to_gateway.append(event["sent"] - replies[iid])
                to_browser.append(event["at"] / 1e3 - event["sent"])
    if len(latency) != count:
        raise RuntimeError(f"{len(latency)} of {count} add events reached the page")
    status = api.request("DELETE", f"/api/v1/sessions/{sid}", token=token).status
    if status not in (200, 204, 404):
        raise RuntimeError(f"closing the event session: {status}")
    return {"latency": latency, "to_gateway": to_gateway, "to_browser": to_browser,
            "add": add_times, "offset": statistics.median(offsets),
            "half_rtt": min(halves)}


def main() -> None:
    opts = options(command_line(__doc__, "fewer requests (CI smoke run)"))
    count = 40 if opts.quick else 400

    with Run("gateway", opts.keep) as run:
        service = run.service(Service(run.work / "home"))
        jpeg, api, sid, token, stored, located = start_with_page(service)
        iid = stored["id"]
        port = free_port()
        reference = run.process(start_reference(located["path"], port))
        out(f"page {stored['width']}x{stored['height']} JPEG q80, {len(jpeg) / MB:.2f} MB, "
            f"stored as {stored['format']}; gateway port {api.port}, reference aiohttp "
            f"{aiohttp.__version__} on port {port}; {count} requests per run")

        # 1: HTTP
        load = os.getloadavg()[0]
        base = service.url(f"/api/v1/sessions/{sid}", api.port)
        got = asyncio.run(http_part(f"{base}/images/{iid}", token,
                                    f"http://127.0.0.1:{port}/image", jpeg, count, base, iid))
        ratios = {}
        out(f"{os.cpu_count()} CPUs; load average (1 min) {load:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after the image GETs")
        for kind, label in (("seq", "one at a time"), ("par", f"{CONCURRENCY} in flight")):
            gw, ref = got[kind]["gateway"], got[kind]["aiohttp"]
            ratios[kind] = statistics.mean(gw) / statistics.mean(ref)
            out(f"image GET, {label} ({len(gw)} requests):")
            extra = ""
            if kind == "par":
                extra = (f"   {len(gw) / got['wall']['gateway']:6.1f} req/s, "
                         f"{len(gw) * len(jpeg) / MB / got['wall']['gateway']:6.0f} MB/s")
            out(f"  gateway  {ms(gw)}{extra}")
            if kind == "par":
                extra = (f"   {len(ref) / got['wall']['aiohttp']:6.1f} req/s, "
                         f"{len(ref) * len(jpeg) / MB / got['wall']['aiohttp']:6.0f} MB/s")
            out(f"  aiohttp  {ms(ref)}{extra}")
            out(f"  ratio of means {ratios[kind]:.2f}x (p50 "
                f"{pct(gw, 50) / pct(ref, 50):.2f}x, p95 {pct(gw, 95) / pct(ref, 95):.2f}x)  "
                f"(goal <= 1.5x)")
        with service.client() as client:  # the one broker round trip a stored GET makes
            locate = []
            for _ in range(count):
                start = time.perf_counter()
                client.call("buffer", "locate", {"session": sid, "image": iid})
                locate.append(time.perf_counter() - start)
        extras = got["extras"]
        out(f"  for comparison: buffer.locate through the broker from this process "
            f"({count}): {ms(locate)}")
        out(f"  for comparison: GET .../images/{{iid}}/info (guard, session, buffer.info; "
            f"small JSON) ({count}): {ms(extras['info'])}")
        out(f"thumbnail GET ({got['thumb_size'][0]}x{got['thumb_size'][1]} JPEG): first "
            f"{extras['thumb first'][0] * 1e3:.1f} ms; cached ({len(extras['thumb cached'])}) "
            f"{ms(extras['thumb cached'])}")
        out(f"converted GET ?format=png&width=800 ({got['png_size'][0]}x{got['png_size'][1]}, "
            f"{got['png_bytes'] / MB:.2f} MB): first {extras['png first'][0] * 1e3:.0f} ms; "
            f"cached ({len(extras['png cached'])}) {ms(extras['png cached'])}")
        for kind, label in (("seq", "one at a time"), ("par", f"{CONCURRENCY} in flight")):
            gw_mean = statistics.mean(got[kind]["gateway"]) * 1e3
            ref_mean = statistics.mean(got[kind]["aiohttp"]) * 1e3
            run.summary.append(f"image GET {label}: gateway {gw_mean:.2f} ms vs aiohttp "
                               f"{ref_mean:.2f} ms mean = {ratios[kind]:.2f}x (goal <= 1.5x: "
                               f"{'met' if ratios[kind] <= 1.5 else 'NOT met'})")
        stop(reference)

        # 2: events to a browser
        note(f"event latency: Chromium, {EVENT_PAGES} adds {EVENT_GAP * 1e3:.0f} ms apart")
        ev = event_part(service, api, EVENT_PAGES)
        lat = ev["latency"]
        out(f"event latency, add reply -> browser ({len(lat)} pages): p50 "
            f"{pct(lat, 50) * 1e3:.1f} ms  p95 {pct(lat, 95) * 1e3:.1f} ms  max "
            f"{max(lat) * 1e3:.1f} ms  min {min(lat) * 1e3:.1f} ms  (goal p95 <= 100 ms)")
        out(f"  add reply -> gateway publishes: p50 {pct(ev['to_gateway'], 50) * 1e3:.1f} ms  "
            f"p95 {pct(ev['to_gateway'], 95) * 1e3:.1f} ms; gateway -> browser: p50 "
            f"{pct(ev['to_browser'], 50) * 1e3:.1f} ms  p95 "
            f"{pct(ev['to_browser'], 95) * 1e3:.1f} ms")
        out(f"  add round trip (200x200 JPEG through the broker): {ms(ev['add'])}")
        out(f"  browser clock - Python clock: {ev['offset'] * 1e3:+.2f} ms "
            f"(+- {ev['half_rtt'] * 1e3:.2f} ms, half an evaluate round trip)")
        p95 = pct(lat, 95)
        run.summary.append(f"event latency add reply -> browser: p50 {pct(lat, 50) * 1e3:.1f} ms, "
                           f"p95 {p95 * 1e3:.1f} ms, max {max(lat) * 1e3:.1f} ms (goal p95 <= "
                           f"100 ms: {'met' if p95 <= 0.1 else 'NOT met'})")


if __name__ == "__main__":
    main()
