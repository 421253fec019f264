"""Portrait files -> RGB arrays the engine can use: colour conversion, alpha, size checks, square crop."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avatar_desktop.errors import InputFileError

MIN_PORTRAIT_SIDE = 64
"""Pixels. Smaller images hold too little of a face to animate."""
MAX_DECODED_SIDE = 4096
"""Pixels. Larger images are scaled down right after decoding (the model works at a few hundred pixels)."""
ALPHA_BACKGROUND = (255, 255, 255)


def load_portrait(path: str | Path) -> np.ndarray:
    """Read an image file (PNG, JPEG, WebP, BMP, TIFF; grey, RGB or RGBA) -> uint8 (H, W, 3) RGB.

    Transparent pixels are composited onto white; images larger than MAX_DECODED_SIDE are scaled down.
    Raises InputFileError saying what is wrong with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"portrait {path} does not exist (or is not a file): choose an existing image file")
    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if image is None:
        raise InputFileError(f"portrait {path} is not a readable image: use a PNG, JPEG, WebP, BMP or TIFF file")
    return portrait_from_array(image, source=str(path), bgr=True)


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
        colour = image[:, :, :3].astype(np.float32)
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        background = np.array(ALPHA_BACKGROUND[::-1] if bgr else ALPHA_BACKGROUND, np.float32)
        image = (colour * alpha + background * (1 - alpha) + 0.5).astype(np.uint8)
    elif channels != 3:
        raise InputFileError(f"{source}: {channels} colour channels are not supported; use a grey, RGB or RGBA image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(image)


def square_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of (H, W, 3) uint8, resized to (size, size, 3) (area filter down, cubic up)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)
