"""Buffer benchmark: the buffer actor through the broker against doing the same work directly.

Starts, in a fresh temp home, a real broker and a real buffer actor (``actors.buffer``);
then measures in the same run:

  1. save 100 JPEG pages (A4, 300 dpi, colour) as one PDF: ``save`` with ``output: file``
     (the actor writes the PDF into cache/buffer/out/, which the gateway streams) against
     ``img2pdf.convert(*files)`` on the same files                (goal: <= 1.2 x direct);
     also as a blob through the broker and durably into upload/ (``dest``)
  2. add-page throughput for those pages: (a) as JPEG blobs (kept as they are), against a
     durable write (write + fsync + rename + folder fsync) of the same bytes; (b) as raw RGB
     pixels (stored as PNG), against Pillow's PNG encode plus a durable write; raw adds also
     from 1, 2 and 3 concurrent clients (the actor's ``threads``)
  3. a 1,000-page buffer (150 dpi A4 JPEG pages) with ``buffer_memory_limit = 64``: adds,
     thumbnails and PNGs of every 10th page, rotate edits of 50 pages (20 with
     ``--quick``, which also adds 200 pages, not 1,000); the actor's RSS
     (peak, final, idle fresh actor) against the limit plus the stated overhead (idle
     process + threads x 3 decoded pages) and the disk used in cache/buffer; this part runs in
     a second temp home with its own broker and actor, so "idle" is a fresh actor

The test pages are drawn once per run and reused (layouts seeded, grain random). Prints one
line per figure and the ratios. ``python -m bench.buffer [--quick] [--keep]``.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import threading
import time
from functools import partial
from pathlib import Path

import img2pdf
import pikepdf
import zmq
from PIL import Image

from bench.buffer_stack import LONG, Stack, durable_write, folder_bytes, timed
from bench.pages import A4_150, A4_300, draw_pages, with_comment
from bench.report import Run, command_line, note, options, out
from broker.client import Client
from tests.support.memory import RssSampler, rss_kb

MB = 1 << 20


# --- 1 and 2: 300 dpi pages


def add_all(stack: Stack, session: str, blobs: list, args: dict) -> list[float]:
    """Add ``blobs`` one after the other; the seconds each add took."""
    times = []
    for blob in blobs:
        start = time.perf_counter()
        stack.call("add", {"session": session, **args}, [blob])
        times.append(time.perf_counter() - start)
    return times


def add_concurrently(stack: Stack, session: str, blobs: list, args: dict,
                     clients: int) -> float:
    """Seconds to add all ``blobs`` from ``clients`` threads, each with its own Client."""
    shares = [blobs[i::clients] for i in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def work(share: list) -> None:
        with Client(stack.endpoint, context=zmq.Context.instance()) as client:
            client.request("buffer", "ping", timeout=10)  # connected before the clock starts
            barrier.wait()
            try:
                for blob in share:
                    client.request("buffer", "add", {"session": session, **args},
                                   blobs=[blob], timeout=LONG)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def pdf_pages(data) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return len(pdf.pages)


def bench_300dpi(work: Path, opts, jpegs: list[bytes]) -> None:
    rounds = 2 if opts.quick else 7
    raw_distinct = 3 if opts.quick else 6
    raw_adds = 6 if opts.quick else 12  # per level and round (divides by 1, 2 and 3)
    raw_rounds = 1 if opts.quick else 3

    folder = work / "pages"
    folder.mkdir()
    files = []
    for number, data in enumerate(jpegs):
        path = folder / f"page-{number:03d}.jpg"
        path.write_bytes(data)
        files.append(str(path))
    jpeg_mb = sum(map(len, jpegs)) / MB

    stack = Stack(work / "home")
    try:
        cfg = stack.cfg
        out(f"buffer actor: threads {cfg.threads}, png_compression {cfg.png_compression}, "
            f"buffer_memory_limit {cfg.buffer_memory_limit} MB; {os.cpu_count()} CPUs")

        # 2a (done first: it fills the session that 1 saves)
        note(f"adding {len(jpegs)} JPEG pages")
        session = stack.call("open_session").result["session"]
        add_times = add_all(stack, session, jpegs, {"dpi": 300})
        listed = stack.call("list", {"session": session}).result
        assert len(listed) == len(jpegs) and all(i["format"] == "jpeg" for i in listed), listed[0]

        # 1: save as PDF, alternating with the direct img2pdf run
        note(f"saving {len(jpegs)} pages as PDF ({rounds} rounds)")
        holder: dict = {}

        def direct_pdf():
            holder["direct"] = img2pdf.convert(*files)

        def internal_pdf():  # the engine the actor asks img2pdf for
            img2pdf.convert(*files, engine=img2pdf.Engine.internal)

        def broker_pdf():
            holder["broker"] = stack.call("save", {"session": session, "format": "pdf"})

        def broker_dest():  # written under upload/ by the actor: no blob comes back
            stack.call("save", {"session": session, "format": "pdf", "dest": "bench.pdf"})

        def broker_file():  # written to cache/buffer/out/ (what the gateway streams)
            holder["file"] = stack.call("save", {"session": session, "format": "pdf",
                                                 "output": "file"}).result["path"]
        runs = {"direct": direct_pdf, "internal": internal_pdf, "file": broker_file,
                "broker": broker_pdf, "dest": broker_dest}
        for run in runs.values():  # warm-up: page cache, imports, allocator
            run()
        samples = [{name: timed(run) for name, run in runs.items()} for _ in range(rounds)]
        pdf = {name: statistics.median(s[name] for s in samples) for name in runs}
        best = {name: min(s[name] for s in samples) for name in runs}
        ratio = {name: statistics.median(s[name] / s["direct"] for s in samples)
                 for name in runs}
        dest_count = pdf_pages((stack.home / "upload" / "bench.pdf").read_bytes())
        blob = holder["broker"].blobs[0].buffer
        broker_count, direct_count = pdf_pages(blob), pdf_pages(holder["direct"])
        file_count = pdf_pages(Path(holder["file"]).read_bytes())
        out(f"save {len(jpegs)} JPEG pages as PDF ({jpeg_mb:.0f} MB of JPEG): "
            f"direct img2pdf {pdf['direct']:6.3f} s   actor to file {pdf['file']:6.3f} s   "
            f"ratio {ratio['file']:.2f}x  (goal <= 1.2x)   [best of {rounds}: "
            f"{best['direct']:.3f} / {best['file']:.3f} s]")
        out(f"  as a blob through the broker (131 MB copied twice more): {pdf['broker']:.3f} s, "
            f"ratio {ratio['broker']:.2f}x to direct")
        counts_ok = file_count == broker_count == direct_count == dest_count == len(jpegs)
        out(f"  PDF pages: file {file_count}, broker {broker_count}, direct {direct_count}, "
            f"dest {dest_count} ({'ok' if counts_ok else 'WRONG'})"
            f"; bytes: broker {len(blob) / MB:.1f} MB, direct "
            f"{len(holder['direct']) / MB:.1f} MB")
        out(f"  img2pdf engine=internal (the actor's; the default is pikepdf): "
            f"{pdf['internal']:.3f} s, ratio {ratio['internal']:.2f}x to direct")
        out(f"  save with dest (the actor writes upload/bench.pdf durably, no blob back): "
            f"{pdf['dest']:.3f} s, ratio {ratio['dest']:.2f}x to direct")
        holder.clear()
        del blob

        # 2a figures, with the durable-write baseline
        durable_dir = work / "durable"
        durable_dir.mkdir()
        write_times = []
        for number, data in enumerate(jpegs):
            write_times.append(timed(durable_write, durable_dir / f"{number}.jpg", data))
        decode_times = [timed(lambda b: Image.open(io.BytesIO(b)).load(), data)
                        for data in jpegs[:10]]
        add_total, write_total = sum(add_times), sum(write_times)
        out(f"add JPEG 300 dpi A4 ({jpeg_mb / len(jpegs):.2f} MB/page), 1 client: "
            f"{len(jpegs) / add_total:6.1f} pages/s {jpeg_mb / add_total:6.1f} MB/s "
            f"(median {statistics.median(add_times) * 1e3:.0f} ms/page)")
        out(f"  durable write of the same bytes:     {len(jpegs) / write_total:6.1f} pages/s "
            f"{jpeg_mb / write_total:6.1f} MB/s (median "
            f"{statistics.median(write_times) * 1e3:.0f} ms/page)   ratio add/write "
            f"{add_total / write_total:.2f}x")
        out(f"  JPEG full decode (add checks every page this way): median "
            f"{statistics.median(decode_times) * 1e3:.0f} ms/page")

        # 2b: raw pixels
        note("decoding pages to raw RGB")
        images = [Image.open(io.BytesIO(data)).convert("RGB") for data in jpegs[:raw_distinct]]
        raws = [image.tobytes() for image in images]
        raw_mb = len(raws[0]) / MB
        encode_times, pngs = [], []
        for image in images:
            buf = io.BytesIO()
            encode_times.append(timed(partial(image.save, buf, "PNG", dpi=(300, 300),
                                              compress_level=cfg.png_compression)))
            pngs.append(buf.getvalue())
        del images
        raw_write = [timed(durable_write, durable_dir / f"raw{i}", raws[i])
                     for i in range(raw_distinct)]
        png_write = [timed(durable_write, durable_dir / f"png{i}", pngs[i])
                     for i in range(raw_distinct)]
        shutil.rmtree(durable_dir)
        png_mb = statistics.mean(map(len, pngs)) / MB
        encode, write_png = statistics.median(encode_times), statistics.median(png_write)

        raw_args = {"format": "raw", "width": A4_300[0], "height": A4_300[1], "mode": "RGB",
                    "dpi": 300}
        raw_session = stack.call("open_session").result["session"]
        blobs = [raws[i % raw_distinct] for i in range(raw_adds)]
        note(f"adding raw pages: {raw_adds} per level of 1, 2, 3 clients, {raw_rounds} "
             f"round(s)")
        stack.call("add", {"session": raw_session, **raw_args}, [raws[0]])  # warm-up
        # Levels alternate within each round (same machine load); medians over the rounds.
        runs = [{n: add_concurrently(stack, raw_session, blobs, raw_args, n) for n in (1, 2, 3)}
                for _ in range(raw_rounds)]
        elapsed = {n: statistics.median(run[n] for run in runs) for n in (1, 2, 3)}
        stored = stack.call("list", {"session": raw_session}).result[-1]
        per_page = elapsed[1] / raw_adds
        out(f"add raw RGB 300 dpi A4 ({raw_mb:.1f} MB/page, stored as {stored['format']} "
            f"~{stored['bytes'] / MB:.1f} MB), 1 client: {1 / per_page:6.2f} pages/s "
            f"{raw_mb / per_page:6.1f} MB/s ({per_page * 1e3:.0f} ms/page)")
        out(f"  PNG encode level {cfg.png_compression} (Pillow, in the bench): "
            f"{encode * 1e3:.0f} ms/page ({png_mb:.1f} MB);  durable write: PNG "
            f"{write_png * 1e3:.0f} ms, raw {statistics.median(raw_write) * 1e3:.0f} ms/page "
            f"({raw_mb / statistics.median(raw_write):.0f} MB/s)")
        out(f"  ratio add / (PNG encode + durable PNG write) "
            f"{per_page / (encode + write_png):.2f}x")
        for n in (1, 2, 3):
            rate = raw_adds / elapsed[n]
            speedup = statistics.median(run[1] / run[n] for run in runs)
            out(f"  raw adds, {n} concurrent client{'s' if n > 1 else ' '}: {rate:6.2f} pages/s "
                f"{rate * raw_mb:6.1f} MB/s   speed-up {speedup:.2f}x  ({raw_adds} pages x "
                f"{raw_rounds} round(s))")
    finally:
        stack.close()


# --- 3: a 1,000-page buffer under a 64 MB memory limit


def bench_many(work: Path, opts, big: list[bytes]) -> None:
    count = 200 if opts.quick else 1000
    rotations = 20 if opts.quick else 50
    limit_mb = 64
    note(f"making {count} pages of {A4_150[0]}x{A4_150[1]}")
    distinct = []
    for data in big:
        image = Image.open(io.BytesIO(data)).reduce(2)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=80, dpi=(150, 150))
        distinct.append(buf.getvalue())
    pages = [with_comment(distinct[i % len(distinct)], f"page {i}") for i in range(count)]
    page_kb = statistics.mean(map(len, pages)) / 1024

    stack = Stack(work / "home-many", f"[buffer]\nbuffer_memory_limit = {limit_mb}\n")
    try:
        time.sleep(0.5)
        idle_kb = rss_kb(stack.pid)
        out(f"{count} pages: {A4_150[0]}x{A4_150[1]} 150 dpi colour JPEG q80 "
            f"(~{page_kb:.0f} KB; {len(distinct)} distinct pictures, each file distinct); "
            f"buffer_memory_limit {stack.cfg.buffer_memory_limit} MB, threads "
            f"{stack.cfg.threads}")
        phase_rss = {}
        with RssSampler(stack.pid, every=0.01) as sampler:
            session = stack.call("open_session").result["session"]
            note(f"adding {count} pages")
            adding = timed(lambda: add_all(stack, session, pages, {}))
            phase_rss["after adds"] = rss_kb(stack.pid)
            ids = [info["id"] for info in stack.call("list", {"session": session}).result]
            every10 = ids[::10]
            note(f"thumbnails and PNGs of {len(every10)} pages, rotating {rotations}")
            thumbs = [timed(stack.call, "thumbnail", {"session": session, "image": i})
                      for i in every10]
            phase_rss["after thumbnails"] = rss_kb(stack.pid)
            png_bytes = []

            def get_png(image):
                png_bytes.append(len(stack.call("get", {"session": session, "image": image,
                                                        "format": "png"}).blobs[0]))
            gets = [timed(get_png, i) for i in every10]
            phase_rss["after PNG gets"] = rss_kb(stack.pid)
            targets = ids[::max(1, len(ids) // rotations)][:rotations]
            rotate = [{"op": "rotate", "angle": 90}]
            edits = [timed(stack.call, "edit", {"session": session, "image": i, "ops": rotate})
                     for i in targets]
            phase_rss["after edits"] = rss_kb(stack.pid)
            time.sleep(2)
            final_kb = rss_kb(stack.pid)
        hwm_kb = rss_kb(stack.pid, "VmHWM")
        status = stack.call("status").result
        files, size, allocated = folder_bytes(stack.home / "cache" / "buffer")

        out(f"  add {count} pages: {adding:.1f} s = {count / adding:.1f} pages/s "
            f"({count * page_kb / 1024 / adding:.1f} MB/s)")
        out(f"  thumbnail x{len(thumbs)}: median {statistics.median(thumbs) * 1e3:.1f} ms;  "
            f"get png x{len(gets)}: median {statistics.median(gets) * 1e3:.0f} ms "
            f"(~{statistics.mean(png_bytes) / MB:.1f} MB each);  rotate 90 x{len(edits)}: "
            f"median {statistics.median(edits) * 1e3:.0f} ms")
        sample = Image.open(io.BytesIO(distinct[0]))
        sample.load()
        levels = {level: statistics.median(
            timed(partial(sample.save, io.BytesIO(), "PNG", compress_level=level))
            for _ in range(3)) for level in (1, 6)}
        out(f"  Pillow PNG encode of such a page, in the bench: level 1 "
            f"{levels[1] * 1e3:.0f} ms, level 6 {levels[6] * 1e3:.0f} ms")
        # The overhead we state: the idle process, plus per worker thread three decoded
        # copies of the page it works on (source, result, the copy an encoder takes).
        page_decoded_kb = A4_150[0] * A4_150[1] * 4 / 1024
        overhead_kb = idle_kb + stack.cfg.threads * 3 * page_decoded_kb
        out(f"  RSS idle fresh actor: {idle_kb / 1024:.0f} MB; stated overhead = idle + "
            f"threads x 3 decoded pages = {overhead_kb / 1024:.0f} MB")
        out("  RSS " + ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in phase_rss.items())
            + f", final (2 s idle) {final_kb / 1024:.0f} MB")
        budget_kb = limit_mb * 1024 + overhead_kb
        peak_kb = max(sampler.peak_kb, hwm_kb)
        out(f"  peak RSS: sampled {sampler.peak_kb / 1024:.0f} MB, kernel VmHWM "
            f"{hwm_kb / 1024:.0f} MB;  limit + overhead = {budget_kb / 1024:.0f} MB -> "
            f"{'within' if peak_kb < budget_kb else 'OVER'} "
            f"({peak_kb / budget_kb:.2f}x)")
        memory = status["memory"]
        out(f"  decoded cache: {memory['images']} images {memory['bytes'] / MB:.0f} MB held "
            f"(limit {memory['limit'] / MB:.0f} MB), hits {memory['hits']} misses "
            f"{memory['misses']}")
        out(f"  disk in cache/buffer: {size / MB:.0f} MB in {files} files "
            f"({allocated / MB:.0f} MB allocated); pages were {count * page_kb / 1024:.0f} MB; "
            f"status disk {status['disk']}")
    finally:
        stack.close()


def main() -> None:
    opts = options(command_line(__doc__, "fewer samples (CI smoke run)"))
    count = 100
    with Run("buffer", opts.keep) as run:
        note(f"drawing {count} pages of {A4_300[0]}x{A4_300[1]} in {run.work}")
        jpegs = draw_pages(count, A4_300)
        bench_300dpi(run.work, opts, jpegs)
        bench_many(run.work, opts, jpegs)
    note("done")


if __name__ == "__main__":
    main()
