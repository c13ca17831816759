"""`scanbridge sources`, `options` and `scan` driven like an operator, against the whole
service under supervisord and SANE's test devices (one service with test_scanner_service:
tests/support/scanner_service.py).

The test backend keeps option values between opens; the scanner puts a device back to its
defaults for every request, which two tests check (gray after line-art, a scan after a
jammed one). Every failure of the CLI is one line on stderr, never a traceback; each error
test runs ``python -m scanbridge`` and the installed ``scanbridge`` console script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from tests.support.scanner_service import FEEDER_PAGES, INI
from tests.support.scanner_service import service  # fixtures
from tests.support.service import Service
from tests.support.stack import ROOT

pytestmark = pytest.mark.timeout(120)

PAGE_MM = 200.0  # the test device's page is 200 x 200 mm
ENTRY_POINT = Path(sys.executable).parent / "scanbridge"  # the installed console script
# How the CLI is run: ``python -m scanbridge`` (as Service.cli does) and the installed
# ``scanbridge`` console script (as users do). Their behaviour must be the same.
RUNNERS = ("python -m scanbridge", "scanbridge")


# --- helpers


def pixels(mm: float, dpi: int) -> int:
    """The test device's page side in pixels."""
    return int(mm / 25.4 * dpi)


def scans_started(svc: Service) -> int:
    """Scan jobs the scanner started so far (its log, across restarts)."""
    log = svc.home / "logs" / "scanner.log"
    return log.read_text(errors="replace").count('"scan job started"') if log.exists() else 0


def cli_sessions(svc: Service) -> list[dict]:
    """Open buffer sessions made by ``scanbridge scan``."""
    done = svc.cli("call", "buffer", "sessions", check=True)
    return [s for s in json.loads(done.stdout)
            if (s.get("meta") or {}).get("client") == "scanbridge scan"]


def run(svc: Service, runner: str, *args: str) -> subprocess.CompletedProcess:
    if runner == "python -m scanbridge":
        return svc.cli(*args)
    if not ENTRY_POINT.exists():
        pytest.skip(f"no installed console script {ENTRY_POINT}")
    return subprocess.run([str(ENTRY_POINT), *args], env=svc.env, cwd=ROOT, text=True,
                          capture_output=True, timeout=60)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The CLI's contract: every failure is one line on stderr, never a traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("scanbridge: "), lines[0]
    return lines[0]


# --- sources and options commands


def test_sources_and_options_list_the_test_devices_and_allowed_values(service):
    done = service.cli("sources", check=True)
    ids = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert ids == ["test:0", "test:1"]

    done = service.cli("options", "test:0", check=True)
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "1..1200" in rows["resolution"]
    assert "Gray" in rows["mode"] and "Color" in rows["mode"]
    assert "1, 8, 16" in rows["depth"]
    assert "Automatic Document Feeder" in rows["source"]
    assert "mode (color, gray, lineart)" in done.stdout
    assert "source (adf, flatbed)" in done.stdout

    described = json.loads(service.cli("options", "test:0", "--json", check=True).stdout)
    options = {entry["name"]: entry for entry in described["options"]}
    assert options["resolution"]["constraint"] == {"range": {"min": 1.0, "max": 1200.0,
                                                             "step": 1.0}}
    assert sorted(options["mode"]["constraint"]["values"]) == ["Color", "Gray"]


# --- scanbridge scan, end to end


def test_scan_a_batch_into_a_pdf_of_ten_pages_of_the_page_size(service, tmp_path):
    out = tmp_path / "out.pdf"
    done = service.cli("scan", "--source", "test:1", "--resolution", "100", "--mode", "color",
                       "--batch", "-o", str(out), check=True)
    assert done.stdout.strip() == str(out)
    side = pixels(PAGE_MM, 100)  # 787
    with pymupdf.open(out) as pdf:
        assert pdf.page_count == FEEDER_PAGES
        for page in pdf:
            # 787 px at 100 dpi: 566.6 pt, the 200 mm (566.9 pt) of the device to a pixel
            assert abs(page.rect.width - side / 100 * 72) < 0.5, page.rect
            assert abs(page.rect.height - PAGE_MM / 25.4 * 72) < 1.0, page.rect
            (image,) = page.get_images()
            assert image[2:4] == (side, side)
            assert image[5] == "DeviceRGB"
    assert cli_sessions(service) == []  # the session used was closed


def test_scan_pages_into_numbered_line_art_png_files(service, tmp_path):
    done = service.cli("scan", "--source", "test:0", "--feeder", "flatbed", "--resolution",
                       "100", "--pages", "3", "--mode", "lineart",
                       "-o", str(tmp_path / "page-%d.png"), check=True)
    files = [tmp_path / f"page-{n}.png" for n in (1, 2, 3)]
    assert done.stdout.split() == [str(path) for path in files]
    assert sorted(tmp_path.iterdir()) == files
    for path in files:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.mode == "1"
            assert image.size == (pixels(PAGE_MM, 100), pixels(PAGE_MM, 100)) == (787, 787)
    assert cli_sessions(service) == []


def test_scan_pages_into_a_gray_multi_page_tiff(service, tmp_path):
    out = tmp_path / "out.tiff"
    service.cli("scan", "--source", "test:1", "--feeder", "flatbed", "--resolution", "100",
                "--pages", "2", "--mode", "gray", "-o", str(out), check=True)
    with Image.open(out) as tiff:
        assert tiff.format == "TIFF"
        assert tiff.n_frames == 2
        for frame in range(2):
            tiff.seek(frame)
            assert tiff.mode == "L"
            assert tiff.size == (787, 787)
    assert cli_sessions(service) == []


def test_gray_after_line_art_on_the_same_device_is_gray_again(service, tmp_path):
    # The test device has no line-art mode: "lineart" is Gray at depth 1. Asking "gray"
    # next must not keep depth 1 from the job before (the device keeps values between
    # opens; the scanner must start each job from the defaults).
    first, second = tmp_path / "lineart.png", tmp_path / "gray.png"
    for mode, out in (("lineart", first), ("gray", second)):
        service.cli("scan", "--source", "test:0", "--feeder", "flatbed", "--resolution", "50",
                    "--mode", mode, "-o", str(out), check=True)
    with Image.open(first) as lineart, Image.open(second) as gray:
        assert lineart.mode == "1"
        assert gray.mode == "L", "--mode gray after --mode lineart gave line art"


# --- scanbridge scan, errors


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_an_invalid_resolution_names_the_option_and_range_and_scans_nothing(
        service, tmp_path, runner):
    out = tmp_path / "out.pdf"
    before = scans_started(service)
    done = run(service, runner, "scan", "--source", "test:0", "--resolution", "5000",
               "-o", str(out))
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert "invalid_option" in line and "resolution" in line and "1..1200" in line, line
    assert not out.exists()
    assert scans_started(service) == before
    assert cli_sessions(service) == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_several_pages_into_one_image_file_is_a_usage_error(service, tmp_path, runner):
    out = tmp_path / "x.png"
    before = scans_started(service)
    done = run(service, runner, "scan", "--source", "test:0", "--pages", "2", "-o", str(out))
    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    assert "page-%d.png" in line and ".pdf" in line, line
    assert list(tmp_path.iterdir()) == []
    assert scans_started(service) == before
    assert cli_sessions(service) == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_a_jammed_device_exits_1_naming_the_jam(service, tmp_path, runner):
    out = tmp_path / "out.pdf"
    done = run(service, runner, "scan", "--source", "test:1", "--feeder", "flatbed",
               "--resolution", "50", "--option", "read-return-value=SANE_STATUS_JAMMED",
               "-o", str(out))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("scanbridge: scan failed after 0 page(s): jammed"), last
    assert not out.exists()
    assert cli_sessions(service) == []
    # Every request starts from the device's defaults: the jam does not stick.
    service.cli("scan", "--source", "test:1", "--feeder", "flatbed", "--resolution", "50",
                "-o", str(out), check=True)
    with pymupdf.open(out) as pdf:
        assert pdf.page_count == 1


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_an_unknown_source_names_it(service, tmp_path, runner):
    out = tmp_path / "out.pdf"
    done = run(service, runner, "scan", "--source", "test:9", "-o", str(out))
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert "not_found" in line and "'test:9'" in line and "test:0, test:1" in line, line
    assert not out.exists()
    assert cli_sessions(service) == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_scanner_commands_exit_3_when_the_service_is_not_running(tmp_path, runner):
    idle = Service(tmp_path / "home", extra_ini=INI)  # never started
    out = tmp_path / "out.pdf"
    for args in (("scan", "--source", "test:0", "-o", str(out)), ("sources",),
                 ("options", "test:0")):
        done = run(idle, runner, *args)
        assert done.returncode == 3, (args, done.stderr)
        line = one_error_line(done)
        assert "not running" in line and "scanbridge start" in line, line
    assert not out.exists()
