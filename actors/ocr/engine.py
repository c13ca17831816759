"""Tesseract through tesserocr: one loaded API per language set, kept for the process's life.

Loading a language model takes 0.1-0.5 s, recognising an A4 page about 2 s: keeping the
APIs loaded is what makes page after page fast. Orientation is found with the ``osd``
model on its own API (it needs ``psm`` OSD_ONLY, recognition needs AUTO).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from broker.protocol import Error

TESSDATA_CANDIDATES = ("/usr/share/tesseract-ocr/5/tessdata",
                       "/usr/share/tesseract-ocr/4.00/tessdata", "/usr/share/tessdata")
MAX_LANGUAGE_SETS = 4  # loaded APIs kept at once (each holds its models: 20-80 MB)
OSD_MIN_CONFIDENCE = 1.5  # below this Tesseract's orientation guess is noise (blank pages)
OSD_MIN_SIDE = 100  # pixels: OSD needs some text to look at
ROTATIONS = {0: None, 90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_90}  # clockwise degrees -> Pillow's transpose


def tessdata() -> Path:
    """Where the models are: $TESSDATA_PREFIX, else Debian's folder."""
    given = os.environ.get("TESSDATA_PREFIX")
    for folder in ([given] if given else []) + list(TESSDATA_CANDIDATES):
        if Path(folder, "eng.traineddata").exists() or Path(folder, "osd.traineddata").exists():
            return Path(folder)
    return Path(given or TESSDATA_CANDIDATES[0])


def installed_languages(folder: Path | None = None) -> list[str]:
    folder = folder or tessdata()
    return sorted(p.name[:-len(".traineddata")] for p in folder.glob("*.traineddata")
                  if p.name != "osd.traineddata")


def check_languages(lang: Any, installed: list[str]) -> str:
    """``eng``, ``deu+eng`` or a list of names -> Tesseract's ``a+b`` form, or invalid_option."""
    if lang is None or lang == "":
        lang = ["eng"] if "eng" in installed else installed[:1]
    names = lang.split("+") if isinstance(lang, str) else lang
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise Error("invalid_argument", "lang must be a language name like 'eng', 'deu+eng' "
                                        "or a list of names")
    unknown = [n for n in names if n not in installed]
    if unknown:
        raise Error("invalid_option", f"language {unknown[0]!r} is not installed (installed: "
                                      f"{', '.join(installed) or 'none'})", installed=installed)
    return "+".join(dict.fromkeys(names))


class Engine:
    """The loaded Tesseract APIs of this process (thread-safe: one page at a time each)."""

    def __init__(self, folder: Path | None = None):
        import tesserocr  # 40 MB of libtesseract: only in OCR processes
        self.tesserocr = tesserocr
        self.folder = folder or tessdata()
        self.languages = installed_languages(self.folder)
        self.apis: dict[str, Any] = {}  # lang -> PyTessBaseAPI, oldest first
        self.osd: Any = None
        self.lock = threading.Lock()

    def version(self) -> str:
        return self.tesserocr.tesseract_version().split()[1]

    def _api(self, lang: str) -> Any:
        api = self.apis.pop(lang, None)
        if api is None:
            if len(self.apis) >= MAX_LANGUAGE_SETS:
                oldest = next(iter(self.apis))
                self.apis.pop(oldest).End()
            api = self.tesserocr.PyTessBaseAPI(path=str(self.folder), lang=lang,
                                               psm=self.tesserocr.PSM.AUTO)
        self.apis[lang] = api  # most recently used last
        return api

    def orientation(self, image: Image.Image) -> tuple[int, float]:
        """(clockwise degrees that make the page upright, confidence); (0, 0) when unsure."""
        if min(image.size) < OSD_MIN_SIDE or not (self.folder / "osd.traineddata").exists():
            return 0, 0.0
        with self.lock:
            if self.osd is None:
                self.osd = self.tesserocr.PyTessBaseAPI(path=str(self.folder), lang="osd",
                                                        psm=self.tesserocr.PSM.OSD_ONLY)
            self.osd.SetImage(image)
            try:
                found = self.osd.DetectOrientationScript()
            except RuntimeError:  # too little text to tell
                return 0, 0.0
        if not found or found.get("orient_conf", 0) < OSD_MIN_CONFIDENCE:
            return 0, 0.0
        # orient_deg is how far the page is turned clockwise; we undo it.
        return -int(found["orient_deg"]) % 360, round(float(found["orient_conf"]), 2)

    def recognise(self, image: Image.Image, lang: str, hocr_page: int | None = None) -> dict:
        """Text, words with boxes and confidences, and hOCR (numbered ``hocr_page``) if asked."""
        with self.lock:
            api = self._api(lang)
            api.SetImage(image)
            dpi = image.info.get("dpi")
            if dpi:
                api.SetSourceResolution(max(70, min(1200, round(float(dpi[0])))))
            try:
                api.Recognize()
                text = api.GetUTF8Text()
                words = self._words(api)
                hocr_body = None if hocr_page is None else api.GetHOCRText(hocr_page)
            finally:
                api.Clear()
        return {"text": text, "words": words, "hocr": hocr_body}

    def _words(self, api: Any) -> list[dict]:
        tesserocr = self.tesserocr
        words: list[dict] = []
        level = tesserocr.RIL.WORD
        block = line = -1
        for item in tesserocr.iterate_level(api.GetIterator(), level):
            if item.IsAtBeginningOf(tesserocr.RIL.BLOCK):
                block += 1
            if item.IsAtBeginningOf(tesserocr.RIL.TEXTLINE):
                line += 1
            try:
                word = item.GetUTF8Text(level)
            except RuntimeError:  # "No text returned": a blank page still yields one item
                continue
            box = item.BoundingBox(level)
            if not word or not word.strip() or box is None:
                continue
            words.append({"text": word, "conf": round(item.Confidence(level), 1),
                          "box": list(box), "line": line, "block": block})
        return words


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """The image turned ``rotation`` degrees clockwise."""
    transpose = ROTATIONS.get(rotation % 360)
    return image if transpose is None else image.transpose(transpose)


def empty_hocr(index: int, size: tuple[int, int]) -> str:
    """The hOCR of a page with nothing on it (Tesseract is not asked about tiny images)."""
    return (f"  <div class='ocr_page' id='page_{index + 1}' title='bbox 0 0 {size[0]} "
            f"{size[1]}; ppageno {index}'>\n  </div>\n")
