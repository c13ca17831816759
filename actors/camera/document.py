"""Document mode for the camera: find the page in a frame, undo the perspective, crop it.

A phone or document camera looks at a sheet lying on a desk, usually from an angle. The
steps below turn such a frame into a flat, upright picture of the sheet, and why each is
there:

1. Work on a copy shrunk to ``WORK_SIDE`` pixels on its longer side: page finding only
   needs the outline, a small image is ten times faster, and shrinking removes sensor noise
   and the texture of wood or cloth that would otherwise make edges.
2. Grayscale and a Gaussian blur: colour carries nothing for the outline, and the blur
   softens the page's own text and the noise so that the sheet's border is the strongest
   edge left.
3. Masks that may hold the page's outline, because each fails where another works:
   a. Canny edges with thresholds taken from the image's median (so dim and bright frames
      both work), closed with a small kernel to join gaps where the border is faint. Edges
      follow the border even where a shadow darkens one side of the page.
   b. Canny with fixed low thresholds (``SOFT_EDGES``): a white sheet on a light grey desk
      makes a step too small for (a) in a bright frame.
   c. Otsu's threshold, since a sheet is usually lighter than the desk under it: gives the
      page as one filled region even when a corner's edge is too soft for Canny.
4. Outer contours of each mask; the largest ones are simplified with ``approxPolyDP``. A
   convex four-point polygon covering at least ``MIN_AREA`` of the frame, well inside it
   and solid (not a maze of noise) is a candidate; when the simplification gives more or
   fewer points but the contour fills its ``minAreaRect`` well (``FILL``), that rotated
   rectangle stands in (a page with a dog-ear or a thumb on it). The largest candidate wins,
   and its corners are moved onto the exact corner in the full-size frame (``cornerSubPix``).
5. The corners are put in a fixed order - top-left, top-right, bottom-right, bottom-left -
   by going clockwise around their centre and starting at the edge nearest the frame's top,
   so a page tilted up to 45 degrees either way keeps its top up.
6. ``straighten`` maps the quadrilateral onto a rectangle as wide as the longer of the top
   and bottom edges and as tall as the longer of the left and right edges: no pixels of the
   page are thrown away, and the aspect ratio is the page's own as far as the view allows.

``document`` wraps it for the actor: JPEG in, JPEG out, with what was found. A frame where no
page is found comes back byte for byte (the caller still gets a picture); only bytes that
are not an image raise ``invalid_image``.
"""

from __future__ import annotations

import cv2
import numpy as np

from broker.protocol import Error

WORK_SIDE = 512  # pixels: longer side of the copy the page is searched in
MIN_AREA = 0.15  # fraction of the frame the page must cover
FILL = 0.9  # contour area / its minAreaRect area above which a contour counts as a page
SOLID = 0.85  # contour area / its convex hull's area below which a contour is no outline
MAX_AREA = 0.97  # a "page" this large is the frame's own border, not a sheet
SOFT_EDGES = (15, 45)  # Canny thresholds for a white sheet on a light desk


def order_corners(points: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left (float32, 4x2).

    Clockwise on screen is increasing angle around the centre (image y points down); the
    top edge is the one whose middle is highest in the frame.
    """
    points = np.asarray(points, dtype=np.float32).reshape(4, 2)
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    points = points[np.argsort(angles)]
    middles_y = (points[:, 1] + np.roll(points, -1, axis=0)[:, 1]) / 2
    return np.roll(points, -int(np.argmin(middles_y)), axis=0)


def _masks(gray: np.ndarray) -> list[np.ndarray]:
    """Binary images whose outer contours may be the page (step 3)."""
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    median = float(np.median(blurred))
    masks = []
    for low, high in ((0.33 * median, 0.66 * median), SOFT_EDGES):
        edges = cv2.Canny(blurred, low, high)
        masks.append(cv2.morphologyEx(edges, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)))
    _, light = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    masks.append(cv2.morphologyEx(light, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)))
    return masks


def _quad(contour: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, float] | None:
    """The page-like quadrilateral of one contour and its area, or None (step 4)."""
    hull = cv2.convexHull(contour)
    area = cv2.contourArea(hull)
    if not MIN_AREA <= area / (shape[0] * shape[1]) <= MAX_AREA:
        return None
    x, y, w, h = cv2.boundingRect(hull)
    if x <= 0 or y <= 0 or x + w >= shape[1] or y + h >= shape[0]:
        return None  # runs out of the frame: desk, or a page whose corners we cannot see
    if cv2.contourArea(contour) < SOLID * area:  # a maze of noise or an open edge line
        return None
    perimeter = cv2.arcLength(hull, True)
    for epsilon in (0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, epsilon * perimeter, True)
        if len(approx) == 4 and cv2.isContourConvex(approx):
            return approx.reshape(4, 2).astype(np.float32), area
    rect = cv2.minAreaRect(contour)
    if cv2.contourArea(contour) >= FILL * rect[1][0] * rect[1][1]:
        return cv2.boxPoints(rect).astype(np.float32), area
    return None


def find_page(image: np.ndarray) -> np.ndarray | None:
    """The page's corners in ``image`` pixels (float32 4x2, TL, TR, BR, BL), or None.

    ``image`` is a BGR or grayscale array as OpenCV decodes it.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, WORK_SIDE / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    best: tuple[np.ndarray, float] | None = None
    for mask in _masks(small):
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in sorted(contours, key=cv2.contourArea, reverse=True)[:3]:
            found = _quad(contour, small.shape)
            if found and (best is None or found[1] > best[1]):
                best = found
    if best is None:
        return None
    corners = best[0] / scale
    corners = _refine(gray, corners, 1 / scale)
    return order_corners(corners)


def _refine(gray: np.ndarray, corners: np.ndarray, reach: float) -> np.ndarray:
    """Move each corner onto the nearest strong corner in the full-size image.

    The outline came from a shrunk copy, so a corner is only known to about one work pixel
    (``reach`` frame pixels); ``cornerSubPix`` looks within a few of those.
    """
    window = max(3, int(round(reach * 2)))
    points = corners.reshape(-1, 1, 2).astype(np.float32).copy()
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.05)
    refined = cv2.cornerSubPix(gray, points, (window, window), (-1, -1), criteria)
    refined = refined.reshape(4, 2)
    moved = np.linalg.norm(refined - corners, axis=1)
    return np.where((moved <= window)[:, None], refined, corners)  # a wild jump is noise


def straighten(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The page cut out of ``image`` and flattened to a rectangle, top up (step 6)."""
    tl, tr, br, bl = order_corners(corners)
    width = int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))))
    height = int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))))
    width, height = max(width, 1), max(height, 1)
    target = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    matrix = cv2.getPerspectiveTransform(np.float32([tl, tr, br, bl]), target)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def decode(data: bytes) -> np.ndarray:
    """An encoded image (JPEG, PNG, ...) as a BGR or grayscale array; ``invalid_image``."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = None
    if buffer.size:
        try:
            image = cv2.imdecode(buffer, cv2.IMREAD_ANYCOLOR)
        except cv2.error:
            image = None
    if image is None or image.size == 0:
        raise Error("invalid_image", f"the frame is not a readable image ({len(data)} bytes)")
    return image


def document(jpeg_bytes: bytes, quality: int = 90) -> tuple[bytes, dict]:
    """The page in a camera frame, flattened and cropped, as JPEG, and what was found.

    Returns ``(jpeg, {found, corners, width, height})``: ``corners`` are the page's corners
    in frame pixels (TL, TR, BR, BL; None when not found), ``width`` and ``height`` those of
    the returned image. Without a page the frame's own bytes come back unchanged. Frame
    pixels are those of the frame as shown: OpenCV applies a JPEG's EXIF orientation.
    """
    image = decode(jpeg_bytes)
    corners = find_page(image)
    if corners is None:
        height, width = image.shape[:2]
        return jpeg_bytes, {"found": False, "corners": None, "width": width, "height": height}
    page = straighten(image, corners)
    quality = min(100, max(1, int(quality)))
    ok, encoded = cv2.imencode(".jpg", page, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit image
        raise Error("internal", "the page could not be encoded as JPEG")
    height, width = page.shape[:2]
    info = {"found": True, "corners": [[round(float(x), 1), round(float(y), 1)]
                                       for x, y in corners],
            "width": width, "height": height}
    return encoded.tobytes(), info
