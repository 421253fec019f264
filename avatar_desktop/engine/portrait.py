"""Portrait files -> RGB arrays the engine can use: colour conversion, alpha, size checks, square crop.

A portrait is normalised once, by `load_portrait` (or `portrait_from_array` for an image already decoded); the
session, the worker and the generators take that uint8 (H, W, 3) RGB array as it is (`check_rgb` only looks).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from avatar_desktop.errors import InputFileError

MIN_PORTRAIT_SIDE = 64
"""Pixels. Smaller images hold too little of a face to animate."""
MAX_DECODED_SIDE = 4096
"""Pixels. Larger images are scaled down right after decoding (the model works at a few hundred pixels)."""
MAX_PORTRAIT_PIXELS = 100_000_000
"""Width times height. Larger images are refused from their header, before decoding (a 25,000 x 25,000 PNG can be
2 MB on disk and 2.5 GB decoded)."""
ALPHA_BACKGROUND = (255, 255, 255)
MIN_OPAQUE_ALPHA = 128
"""An RGBA portrait needs pixels at least this opaque (of 255): one without any would render a blank video."""


def load_portrait(path: str | Path) -> np.ndarray:
    """Read an image file (PNG, JPEG, WebP, BMP, TIFF; grey, RGB or RGBA) -> uint8 (H, W, 3) RGB.

    Transparent pixels are composited onto white; images larger than MAX_DECODED_SIDE are scaled down. Images of
    more than MAX_PORTRAIT_PIXELS are refused, from the header before decoding where the format allows (PNG, JPEG,
    BMP, WebP). Raises InputFileError saying what is wrong with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"portrait {path} does not exist (or is not a file): choose an existing image file")
    with path.open("rb") as file:
        size = image_size_from_header(file)
    if size is not None:
        _check_pixel_count(*size, source=str(path))
    raw = np.fromfile(path, dtype=np.uint8)
    try:
        image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    except cv2.error:  # OpenCV refuses images over its own pixel limit with an exception
        image = None
    if image is None:
        raise InputFileError(f"portrait {path} is not a readable image: use a PNG, JPEG, WebP, BMP or TIFF file "
                             f"of at most {MAX_PORTRAIT_PIXELS // 1_000_000} megapixels")
    _check_pixel_count(image.shape[1], image.shape[0], source=str(path))
    return portrait_from_array(image, source=str(path), bgr=True)


def _check_pixel_count(width: int, height: int, *, source: str) -> None:
    if width * height > MAX_PORTRAIT_PIXELS:
        raise InputFileError(
            f"portrait {source} is {width}x{height} pixels, more than the limit of "
            f"{MAX_PORTRAIT_PIXELS // 1_000_000} megapixels: scale it down (a portrait needs no more than "
            f"{MAX_DECODED_SIDE} px a side)"
        )


def image_size_from_header(file: BinaryIO) -> tuple[int, int] | None:
    """(width, height) read from the header of a PNG, JPEG, BMP or WebP file, without decoding the pixels; None for
    other formats, or a header too short or damaged to say."""
    head = file.read(30)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"BM") and len(head) >= 26:
        if int.from_bytes(head[14:18], "little") == 12:  # the old OS/2 header: 16-bit sizes
            return struct.unpack("<HH", head[18:22])
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)  # a negative height means rows stored top-down
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if chunk == b"VP8L":  # lossless: 14-bit sizes minus one, after a signature byte
            bits = int.from_bytes(head[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
            width, height = struct.unpack("<HH", head[26:30])
            return width & 0x3FFF, height & 0x3FFF
    if head.startswith(b"\xff\xd8"):
        file.seek(2)
        return _jpeg_size(file)
    return None


def _jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    """The size in a JPEG's start-of-frame segment, walking the segments from just after the start-of-image."""
    standalone = {0x01, *range(0xD0, 0xDA)}  # markers without a length: TEM, restarts, SOI, EOI
    no_frame = {0xC4, 0xC8, 0xCC}  # SOFn codes that are not frames: Huffman tables, reserved, arithmetic coding
    while True:
        byte = file.read(1)
        if byte != b"\xff":
            return None
        kind = b"\xff"
        while kind == b"\xff":  # fill bytes
            kind = file.read(1)
        if not kind:
            return None
        if kind[0] in standalone:
            continue
        length = file.read(2)
        if len(length) < 2 or int.from_bytes(length, "big") < 2:
            return None
        if 0xC0 <= kind[0] <= 0xCF and kind[0] not in no_frame:
            frame = file.read(5)  # precision, height, width
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        file.seek(int.from_bytes(length, "big") - 2, 1)


def portrait_from_array(image: np.ndarray, *, source: str = "portrait", bgr: bool = False) -> np.ndarray:
    """Normalise any decoded image (H, W), (H, W, 1|3|4), uint8 or uint16 -> uint8 (H, W, 3) RGB."""
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8:
        raise InputFileError(f"{source}: pixel type {image.dtype} is not supported; save it as 8-bit")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    height, width = image.shape[:2]
    if min(height, width) < MIN_PORTRAIT_SIDE:
        raise InputFileError(
            f"{source} is {width}x{height} pixels; a portrait needs at least {MIN_PORTRAIT_SIDE}x{MIN_PORTRAIT_SIDE}"
        )
    if max(height, width) > MAX_DECODED_SIDE:
        scale = MAX_DECODED_SIDE / max(height, width)
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 4:
        if int(image[:, :, 3].max()) < MIN_OPAQUE_ALPHA:
            raise InputFileError(f"{source} is transparent everywhere (no pixel is even half opaque), so nothing of "
                                 "it would show: save it with its background, or without an alpha channel")
        colour = image[:, :, :3].astype(np.float32)
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        background = np.array(ALPHA_BACKGROUND[::-1] if bgr else ALPHA_BACKGROUND, np.float32)
        image = (colour * alpha + background * (1 - alpha) + 0.5).astype(np.uint8)
    elif channels != 3:
        raise InputFileError(f"{source}: {channels} colour channels are not supported; use a grey, RGB or RGBA image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(image)


def check_rgb(image: np.ndarray, *, source: str = "portrait") -> None:
    """ValueError naming what `image` is when it is not the uint8 (H, W, 3) RGB array load_portrait returns."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{source}: expected a uint8 (H, W, 3) RGB array (engine.portrait.load_portrait makes one), "
                         f"got {what}")


def square_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of (H, W, 3) uint8, resized to (size, size, 3) (area filter down, cubic up)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)
