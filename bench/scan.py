"""Scanner benchmark: scan jobs of the scanner actor into the buffer against ``scanimage``.

Starts, in a fresh temp home, a real broker, buffer actor and scanner actor with only the
embedded SANE test backend (``[scanner] system_scanners = false``) and no on-demand
programs (``[ondemand] programs =``: no monitor runs here to hold the scanner); then
measures in the same run, against ``scanimage --batch`` on the same device with the same
options and the same SANE configuration (``SANE_CONFIG_DIR`` = the scanner's
``run/sane.d`` + ``:``), writing its pages to a folder on the same disk as the home:

  1. 20 pages at 300 dpi colour (200 x 200 mm) from test:0, flatbed, one job of
     ``pages: 20``, from the ``scan`` request to its ``scan.done`` event
                                                      (goal: <= 1.2 x scanimage)
     also in a second home with ``[buffer] png_compression = 0`` (the cost of compression)
  2. one ADF batch (the test feeder holds 10 sheets) against ``scanimage --batch``
  3. 10 pages with a device speed like a real scanner's (test ``read-delay``, about
     0.4 s a page in scanimage): here the pipeline should hide the storage cost

Beside 1, for where the time goes: python-sane reading the same pages in this process
(start + snap, as the scanner's reader does, nothing stored), and one page's PNG encode
(Pillow, at the buffer's level and at 0) and durable write (write + fsync + rename +
folder fsync).

Runs alternate (ours, scanimage, ...; the order rotates each round) and each of our runs
uses a fresh buffer session, closed afterwards. scanimage writes PNM without fsync; the
time to fsync its files afterwards is shown beside it (our pages are durable at
``scan.done``). Prints one line per figure and the ratios. ``python -m bench.scan
[--quick] [--keep]``.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import zmq
from PIL import Image

from bench.report import Run, command_line, note, options, out
from broker import config as configlib
from broker.client import Client, Subscription
from broker.procutil import atomic_write_with
from tests.support.stack import (start_broker, start_program, stop,
                                 wait_service, write_ini)

SOURCE = "test:0"
DPI = 300
PAGES = 20  # flatbed job
SLOW_PAGES = 10  # with read-delay
DELAY_US = 5000  # read-delay-duration: ~0.4 s a 300 dpi page in scanimage
MB = 1 << 20
WAIT = 180.0  # seconds one job may take before the bench gives up

# No monitor runs in the temp home: with the scanner an on-demand program (the default),
# each job would wait 5 s for its hold and 5 s for its release (before scan.done).
BASE_INI = "[scanner]\nsystem_scanners = false\n[ondemand]\nprograms =\n"
OPTIONS = {"mode": "color", "resolution": DPI, "test-picture": "Color pattern"}
# scanimage spelling of the same settings; the area is the test device's whole 200 x 200 mm,
# which is also what the scanner uses when no area is given.
SCANIMAGE = ["--mode", "Color", "--resolution", str(DPI), "-l", "0", "-t", "0", "-x", "200",
             "-y", "200", "--test-picture", "Color pattern", "--format=pnm"]
DELAY_OPTIONS = {"read-delay": True, "read-delay-duration": DELAY_US}
DELAY_SCANIMAGE = ["--read-delay=yes", f"--read-delay-duration={DELAY_US}"]



class Stack:
    """A temp home with a broker, a buffer and a scanner actor, a client and a scan.*
    subscription."""

    def __init__(self, home: Path, ini: str):
        self.home = home
        home.mkdir(parents=True)
        write_ini(home, "DSConfiguration.ini", ini)
        self.cfg = configlib.load(configlib.Home(home))
        self.procs = []
        ctx = zmq.Context.instance()
        try:
            self.procs.append(start_broker(home))
            self.procs.append(start_program(home, [sys.executable, "-m", "actors.buffer"],
                                            "buffer"))
            self.procs.append(start_program(home, [sys.executable, "-m", "actors.scanner"],
                                            "scanner"))
            self.client = Client(self.cfg.home.broker_endpoint, context=ctx)
            wait_service(self.client, "buffer", timeout=30)
            wait_service(self.client, "scanner", timeout=30)
            self.events = Subscription(self.cfg.home.events_in, self.cfg.home.events_out,
                                       [b"scan."], context=ctx)
            self.sources = [s["id"] for s in self.client.call("scanner", "sources",
                                                              timeout=60)]
            if SOURCE not in self.sources:
                raise RuntimeError(f"no {SOURCE} in {self.sources}")
            self.sane_dir = home / "run" / "sane.d"
        except BaseException:
            self.close()
            raise

    def scan(self, options: dict, pages: int | None = None, batch: bool = False) -> dict:
        """One job into a fresh session: seconds from the request to ``scan.done``."""
        client = self.client
        session = client.call("buffer", "open_session", {})["session"]
        args = {"session": session, "source": SOURCE, "options": options}
        if batch:
            args["batch"] = True
        else:
            args["pages"] = pages
        try:
            start = time.perf_counter()
            job = client.call("scanner", "scan", args, timeout=30)["job"]
            end = time.monotonic() + WAIT
            first = None
            infos = []
            while True:
                event = self.events.next(max(0.0, end - time.monotonic()))
                if event is None:
                    raise RuntimeError(f"job {job}: no scan.done within {WAIT:.0f} s")
                topic, body = event
                if body.get("job") != job:
                    continue
                if topic == "scan.page":
                    if first is None:
                        first = time.perf_counter() - start
                    infos.append(body["image"])
                elif topic == "scan.done":
                    elapsed = time.perf_counter() - start
                    break
                elif topic == "scan.error":
                    raise RuntimeError(f"job {job} failed: {body.get('code')}: "
                                       f"{body.get('message')}")
            if body["state"] != "done":
                raise RuntimeError(f"job {job} ended {body['state']}")
            stored = client.call("buffer", "list", {"session": session}, timeout=30)
            return {"seconds": elapsed, "first": first, "pages": len(stored),
                    "done_pages": body["pages"], "bytes": [i["bytes"] for i in stored],
                    "size": (stored[0]["width"], stored[0]["height"]) if stored else None,
                    "format": stored[0]["format"] if stored else None}
        finally:
            client.call("buffer", "close_session", {"session": session}, timeout=60)

    def close(self) -> None:
        if hasattr(self, "events"):
            self.events.close()
        if hasattr(self, "client"):
            self.client.close()
        stop(*self.procs)


def scanimage(sane_dir: Path, folder: Path, args: list[str], count: int | None) -> dict:
    """``scanimage --batch`` into ``folder``: seconds, then seconds to fsync its files."""
    folder.mkdir()
    env = {**os.environ, "SANE_CONFIG_DIR": f"{sane_dir}:"}
    cmd = ["scanimage", "-d", SOURCE, *args, f"--batch={folder}/p%d.pnm"]
    if count is not None:
        cmd.append(f"--batch-count={count}")
    try:
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=WAIT)
        elapsed = time.perf_counter() - start
        files = sorted(folder.glob("p*.pnm"))
        if proc.returncode != 0 and not files:
            raise RuntimeError(f"scanimage failed ({proc.returncode}): "
                               f"{proc.stderr.decode(errors='replace')[-500:]}")
        start = time.perf_counter()
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        synced = time.perf_counter() - start
        size = None
        if files:
            with open(files[0], "rb") as f:
                head = [t for line in f.read(256).split(b"\n")[:4]
                        if not line.startswith(b"#") for t in line.split()]
                size = (int(head[1]), int(head[2]))
        return {"seconds": elapsed, "sync": synced, "pages": len(files),
                "bytes": [p.stat().st_size for p in files], "size": size,
                "returncode": proc.returncode}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class DirectSane:
    """python-sane in this process, on the same SANE configuration: the read alone."""

    def __init__(self, sane_dir: Path):
        os.environ["SANE_CONFIG_DIR"] = f"{sane_dir}:"
        import sane  # after SANE_CONFIG_DIR is set
        self.sane = sane
        sane.init()
        self.last: tuple | None = None  # (data, width, height) of the last page read

    def read(self, source: str, count: int) -> dict:
        start = time.perf_counter()
        dev = self.sane.open(SOURCE)
        try:
            dev.source = source
            dev.mode = "Color"
            dev.resolution = DPI
            dev.test_picture = "Color pattern"
            sizes = []
            for _ in range(count):
                dev.dev.start()
                data, width, height, _samples, _size = dev.dev.snap(True, False, None)
                data = bytes(data)  # the scanner copies it too
                sizes.append(len(data))
            dev.dev.cancel()
        finally:
            dev.close()
        elapsed = time.perf_counter() - start
        self.last = (data, width, height)
        return {"seconds": elapsed, "pages": len(sizes), "bytes": sizes}


def rounds_of(runners: dict, rounds: int) -> dict[str, list[dict]]:
    """Run every runner once a round, the order rotating each round."""
    names = list(runners)
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for number in range(rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        for name in order:
            samples[name].append(runners[name]())
    return samples


def med(samples: list[dict], key: str = "seconds") -> float:
    return statistics.median(s[key] for s in samples)


def best(samples: list[dict], key: str = "seconds") -> float:
    return min(s[key] for s in samples)


def check_pages(name: str, samples: list[dict], want: int) -> str:
    counts = sorted({s["pages"] for s in samples})
    return f"{name} {'/'.join(map(str, counts))}" + ("" if counts == [want] else " (WRONG)")


def line(label: str, ours: list[dict], ref: list[dict], pages: int, goal: str = "") -> dict:
    mo, mr, bo, br = med(ours), med(ref), best(ours), best(ref)
    ratio, best_ratio = mo / mr, bo / br
    out(f"{label}: ours {mo:6.3f} s ({pages / mo:5.1f} pages/s)   scanimage {mr:6.3f} s "
        f"({pages / mr:5.1f} pages/s)   ratio {ratio:.2f}x{goal}   [best of {len(ours)}: "
        f"{bo:.3f} / {br:.3f} s = {best_ratio:.2f}x]")
    return {"ratio": ratio, "best": best_ratio}


def details(ours: list[dict], ref: list[dict], pages: int) -> None:
    sync = med(ref, "sync")
    mr = med(ref)
    ours_bytes = statistics.mean(b for s in ours for b in s["bytes"])
    ref_bytes = statistics.mean(b for s in ref for b in s["bytes"])
    firsts = [s["first"] for s in ours if s["first"] is not None]
    out(f"  scanimage + fsync of its {pages} files: {mr + sync:.3f} s (fsync {sync:.3f} s) -> "
        f"ratio ours / that {med(ours) / (mr + sync):.2f}x")
    out(f"  per page: ours {med(ours) / pages * 1e3:.0f} ms, scanimage "
        f"{mr / pages * 1e3:.0f} ms; first page stored after "
        f"{statistics.median(firsts) * 1e3:.0f} ms")
    out(f"  page {ours[0]['size'][0]}x{ours[0]['size'][1]} (scanimage "
        f"{ref[0]['size'][0]}x{ref[0]['size'][1]}): stored as {ours[0]['format']} "
        f"{ours_bytes / MB:.2f} MB/page, scanimage PNM {ref_bytes / MB:.2f} MB/page; "
        f"pages: {check_pages('ours', ours, pages)}, {check_pages('scanimage', ref, pages)}")


def breakdown(samples: dict, direct: DirectSane, work: Path, level: int) -> None:
    """Where a page's time goes: the read alone, PNG encode, durable write."""
    read = med(samples["sane"])
    out(f"  python-sane read alone (this process, nothing stored): {read:.3f} s "
        f"({read / PAGES * 1e3:.0f} ms/page, {PAGES / read:.1f} pages/s); "
        f"{check_pages('pages', samples['sane'], PAGES)}")
    data, width, height = direct.last
    image = Image.frombuffer("RGB", (width, height), data, "raw", "RGB", 0, 1)
    encode, encode0, write, write_raw, png = [], [], [], [], b""
    for number in range(3):
        for compress, times in ((0, encode0), (level, encode)):
            start = time.perf_counter()
            buf = io.BytesIO()
            image.save(buf, "PNG", compress_level=compress, dpi=(DPI, DPI))
            times.append(time.perf_counter() - start)
        png = buf.getvalue()
        for blob, times in ((png, write), (data, write_raw)):
            start = time.perf_counter()
            atomic_write_with(work / f"page{number}", lambda f, b=blob: f.write(b), 0o600)
            times.append(time.perf_counter() - start)
            (work / f"page{number}").unlink()
    enc, enc0, wr, wr_raw = (statistics.median(t) for t in (encode, encode0, write,
                                                             write_raw))
    ours = med(samples["ours"]) / PAGES
    out(f"  one page in this process: PNG level {level} encode {enc * 1e3:.0f} ms "
        f"({len(png) / MB:.2f} MB, level 0 {enc0 * 1e3:.0f} ms), durable write "
        f"{wr * 1e3:.0f} ms; raw "
        f"({len(data) / MB:.1f} MB) durable write {wr_raw * 1e3:.0f} ms; read + encode + "
        f"write = {(read / PAGES + enc + wr) * 1e3:.0f} ms against ours {ours * 1e3:.0f} "
        f"ms/page")


def main() -> None:
    opts = options(command_line(__doc__, "fewer rounds (CI smoke run)"))
    rounds = 2 if opts.quick else 5
    small_rounds = 1 if opts.quick else 3

    with Run("scan", opts.keep) as run:
        note(f"starting two stacks in {run.work}")
        main_stack = Stack(run.work / "home", BASE_INI)
        run.callback(main_stack.close)
        raw_stack = Stack(run.work / "home-png0", BASE_INI + "[buffer]\npng_compression = 0\n")
        run.callback(raw_stack.close)
        sane_dir = main_stack.sane_dir
        (run.work / "out").mkdir()
        cfg = main_stack.cfg
        out(f"scanner sources {', '.join(main_stack.sources)}; buffer threads "
            f"{cfg.buffer.threads}, png_compression {cfg.buffer.png_compression} "
            f"(second home {raw_stack.cfg.buffer.png_compression}); {os.cpu_count()} CPUs; "
            f"SANE_CONFIG_DIR {sane_dir}:")

        flatbed = {"source": "flatbed", **OPTIONS}
        flat_args = ["--source", "Flatbed", *SCANIMAGE]
        counter = iter(range(1000000))

        def folder() -> Path:
            return run.work / "out" / f"run{next(counter)}"

        # warm-up: imports, first SANE open, page cache
        note("warm-up")
        main_stack.scan(flatbed, pages=2)
        raw_stack.scan(flatbed, pages=2)
        scanimage(sane_dir, folder(), flat_args, 2)
        direct = DirectSane(sane_dir)
        direct.read("Flatbed", 2)

        # 1: flatbed, 20 pages, png_compression 1 and 0
        note(f"flatbed {PAGES} pages x {rounds} rounds (ours, ours png 0, scanimage, "
             "python-sane)")
        samples = rounds_of({
            "ours": lambda: main_stack.scan(flatbed, pages=PAGES),
            "png0": lambda: raw_stack.scan(flatbed, pages=PAGES),
            "ref": lambda: scanimage(sane_dir, folder(), flat_args, PAGES),
            "sane": lambda: direct.read("Flatbed", PAGES)}, rounds)
        got = line(f"{PAGES} pages {DPI} dpi colour, flatbed", samples["ours"], samples["ref"],
                   PAGES, "  (goal <= 1.2x)")
        details(samples["ours"], samples["ref"], PAGES)
        got0 = line("  same with png_compression = 0", samples["png0"], samples["ref"], PAGES)
        png0_mb = statistics.mean(b for s in samples["png0"] for b in s["bytes"]) / MB
        out(f"  png_compression 0: {png0_mb:.2f} MB/page stored, "
            f"{check_pages('pages', samples['png0'], PAGES)}; its time / level "
            f"{cfg.buffer.png_compression}'s = {med(samples['png0']) / med(samples['ours']):.2f}x")
        breakdown(samples, direct, run.work, cfg.buffer.png_compression)
        run.summary.append(f"flatbed {PAGES} pages: ratio {got['ratio']:.2f}x median, "
                           f"{got['best']:.2f}x best-vs-best (goal <= 1.2x: "
                           f"{'met' if got['ratio'] <= 1.2 else 'NOT met'}); png_compression 0: "
                           f"{got0['ratio']:.2f}x")

        # 2: ADF batch
        note(f"ADF batch x {small_rounds} rounds")
        adf = {"source": "adf", **OPTIONS}
        adf_args = ["--source", "Automatic Document Feeder", *SCANIMAGE]
        samples = rounds_of({
            "ours": lambda: main_stack.scan(adf, batch=True),
            "ref": lambda: scanimage(sane_dir, folder(), adf_args, None)}, small_rounds)
        sheets = samples["ref"][0]["pages"]
        got = line(f"ADF batch ({sheets} sheets)", samples["ours"], samples["ref"], sheets)
        details(samples["ours"], samples["ref"], sheets)
        out(f"  scanimage exit status "
            f"{'/'.join(sorted({str(s['returncode']) for s in samples['ref']}))}")
        run.summary.append(f"ADF batch of {sheets}: ratio {got['ratio']:.2f}x median, "
                           f"{got['best']:.2f}x best-vs-best")

        # 3: a device as slow as a real one
        note(f"read-delay {DELAY_US} us, {SLOW_PAGES} pages x {small_rounds} rounds")
        slow = {**flatbed, **DELAY_OPTIONS}
        slow_args = [*flat_args, *DELAY_SCANIMAGE]
        samples = rounds_of({
            "ours": lambda: main_stack.scan(slow, pages=SLOW_PAGES),
            "ref": lambda: scanimage(sane_dir, folder(), slow_args, SLOW_PAGES)}, small_rounds)
        got = line(f"{SLOW_PAGES} pages, read-delay {DELAY_US} us", samples["ours"],
                   samples["ref"], SLOW_PAGES, "  (goal: ~1.0x, storage hidden)")
        details(samples["ours"], samples["ref"], SLOW_PAGES)
        run.summary.append(f"read-delay ({med(samples['ref']) / SLOW_PAGES:.2f} s/page in "
                           f"scanimage), {SLOW_PAGES} pages: ratio {got['ratio']:.2f}x median, "
                           f"{got['best']:.2f}x best-vs-best")


if __name__ == "__main__":
    main()
