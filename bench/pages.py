"""Pages drawn for the benchmarks (bench/buffer, gateway and https): distinct colour A4
JPEGs with the size of real scans, and the same JPEG made distinct by a comment.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageChops, ImageDraw

A4_300 = (2480, 3508)
A4_150 = (1240, 1754)


def draw_pages(count: int, size: tuple[int, int], seed: int = 1) -> list[bytes]:
    """``count`` distinct colour pages as JPEG (quality 80): a header band, a colour
    picture, a ring, lines of "words", and scanner-like noise over all (so the JPEGs have
    the size of real scans, about 1.4 MB at 300 dpi A4)."""
    width, height = size
    unit = width / A4_300[0]
    noise = Image.effect_noise((width + 64, height + 64), 6).convert("L")
    gradient = Image.linear_gradient("L").resize((round(900 * unit), round(700 * unit)))
    pages = []
    for number in range(count):
        rnd = random.Random(seed * 100003 + number)
        image = Image.new("RGB", size, (246, 244, 238))
        draw = ImageDraw.Draw(image)

        def box(x0, y0, x1, y1):
            return tuple(round(v * unit) for v in (x0, y0, x1, y1))

        draw.rectangle(box(200, 180, 2280, 420), fill=(30 + number % 50, 60, 140))
        picture = Image.merge("RGB", (gradient.rotate(90 * (number % 4)), gradient.rotate(90),
                                      gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
        image.paste(picture, box(200 + rnd.randrange(400), 520, 0, 0)[:2])
        draw.ellipse(box(1500, 600 + rnd.randrange(100), 2200, 1150), outline=(200, 40, 40),
                     width=max(2, round(12 * unit)))
        y = 1350
        while y < 3508 - 250:
            x = 200
            while True:
                word = rnd.randrange(40, 260)
                if x + word > 2280:
                    break
                draw.rectangle(box(x, y, x + word, y + 34), fill=(25, 25, 30))
                x += word + 28
            y += rnd.choice((70, 70, 70, 140))
        ox, oy = rnd.randrange(64), rnd.randrange(64)
        grain = noise.crop((ox, oy, ox + width, oy + height))
        image = ImageChops.subtract(image, Image.merge("RGB", (grain,) * 3), 1, 128)
        buf = io.BytesIO()
        dpi = round(300 * unit)
        image.save(buf, "JPEG", quality=80, dpi=(dpi, dpi))
        pages.append(buf.getvalue())
    return pages


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: distinct bytes, same pixels."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]
