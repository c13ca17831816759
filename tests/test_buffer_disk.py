"""A really full disk (ENOSPC) under the buffer: a clear error, and the buffer intact.

The cache folder is a tiny tmpfs mounted for the test (needs root; skipped otherwise).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from broker.protocol import Error
from tests.support.buffer import LocalBuffer, encoded, page


@pytest.fixture
def small_disk(tmp_path: Path):
    home = tmp_path / "home"
    cache = home / "cache"
    cache.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs",
                              str(cache)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_a_full_disk_gives_disk_full_and_keeps_every_acknowledged_page(small_disk):
    lb = LocalBuffer(small_disk)
    try:
        kept = {}
        with pytest.raises(Error) as failure:
            for number in range(200):  # ~3 MB disk, pages of 120 KB: fills up quickly
                data = encoded(page(200, 200, marker=False, background=(number, 90, 200)),
                               "BMP")
                kept[lb.b.add(lb.session, [data])["id"]] = data
        assert failure.value.code == "disk_full"
        assert "disk is full" in failure.value.message
        assert len(kept) > 5
        listed = [info["id"] for info in lb.b.list_images(lb.session)]
        assert listed == list(kept)
        for image, data in kept.items():
            assert lb.b.get(lb.session, image).blobs[0] == data
        files = list((small_disk / "cache" / "buffer" / "files").rglob("*"))
        assert not [f for f in files if f.name.endswith(".tmp")], "a temp file was left"
        assert lb.b.store.integrity() == "ok"
        # Deleting pages makes room again.
        lb.b.delete(lb.session, listed[: len(listed) // 2])
        lb.b.add(lb.session, [encoded(page(100, 100), "PNG")])
    finally:
        lb.close()


def test_a_page_bigger_than_the_free_space_fails_in_the_write_and_leaves_no_temp_file(
        small_disk):
    lb = LocalBuffer(small_disk)
    try:
        big = encoded(page(1200, 1000, marker=False), "BMP")  # 3.6 MB > the 3 MB disk
        with pytest.raises(Error) as failure:
            lb.b.add(lb.session, [big])
        assert failure.value.code == "disk_full"
        assert lb.b.list_images(lb.session) == []
        assert not list((small_disk / "cache" / "buffer" / "files").rglob("*.*")), \
            "the half-written file (or its temp file) was left"
        small = encoded(page(100, 100), "PNG")
        assert lb.b.get(lb.session, lb.b.add(lb.session, [small])["id"]).blobs[0] == small
    finally:
        lb.close()
