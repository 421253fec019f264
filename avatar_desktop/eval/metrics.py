"""Quality metrics of generated frames against ground truth. Plain functions of arrays; shapes in each docstring.

Frames are uint8 (T, H, W, 3) RGB; masks are bool (T, H, W); openings are float (T,) per frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_desktop.data.speech import Viseme

CLOSED_OPENING = 0.15
"""A (calibrated) mouth opening below this counts as closed."""


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two (N,) series; 0 when either is constant (no linear relation can be shown)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.std(x) < 1e-9 or np.std(y) < 1e-9:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two (N,) series (average ranks for ties); 0 when either is constant."""

    def ranks(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float64)
        order = np.argsort(values, kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(len(values))
        for value in np.unique(values):
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    return pearson(ranks(x), ranks(y))


def lagged_correlation(generated: np.ndarray, truth: np.ndarray, max_lag: int = 8) -> tuple[int | None, float]:
    """Best lag (frames) and its correlation: generated[t] against truth[t - lag], lag in [-max_lag, max_lag].

    A positive lag means the generated mouth moves late. Each lag is scored on the overlapping frames; ties go to
    the smaller lag. The lag is None when no lag gives a positive correlation (nothing to align).
    """
    best_lag, best = 0, -np.inf
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        if lag >= 0:
            a, b = generated[lag:], truth[: len(truth) - lag]
        else:
            a, b = generated[:lag], truth[-lag:]
        score = pearson(a, b)
        if score > best + 1e-12:
            best_lag, best = lag, score
    return (best_lag if best > 0 else None), float(best)


def closure_windows(phoneme_start: np.ndarray, phoneme_end: np.ndarray, phoneme_viseme: np.ndarray,
                    frames: int, fps: int) -> list[tuple[int, int]]:
    """Frame ranges [first, last] covered by each p/b/m phoneme (inputs (P,) in seconds and Viseme ids)."""
    windows = []
    for start, end, viseme in zip(phoneme_start, phoneme_end, phoneme_viseme):
        if viseme == Viseme.CLOSED:
            first, last = int(np.floor(start * fps)), int(np.ceil(end * fps)) - 1
            if 0 <= first and last < frames:
                windows.append((first, max(first, last)))
    return windows


def closure_rate(opening: np.ndarray, windows: list[tuple[int, int]],
                 threshold: float = CLOSED_OPENING) -> tuple[float, float]:
    """Share of p/b/m windows in which the mouth closes (opening (T,) below threshold in some frame), and the
    same share for the windows moved to every other position in the clip (what chance alone gives)."""
    if not windows:
        return float("nan"), float("nan")
    closed = np.asarray(opening) < threshold
    frames = len(closed)

    def rate(shift: int) -> float:
        return float(np.mean([closed[(np.arange(a, b + 1) + shift) % frames].any() for a, b in windows]))

    chance = float(np.mean([rate(shift) for shift in range(1, frames)])) if frames > 1 else float("nan")
    return rate(0), chance


PSNR_IDENTICAL = 100.0
"""PSNR reported for identical images (dB), instead of infinity."""


def psnr(generated: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over the masked pixels (all when mask is None), at most PSNR_IDENTICAL."""
    error = (generated.astype(np.float64) - truth.astype(np.float64)) ** 2
    return _psnr_from_mse(float(error[mask].mean()) if mask is not None else float(error.mean()))


def _psnr_from_mse(mse: float) -> float:
    return PSNR_IDENTICAL if mse == 0 else min(PSNR_IDENTICAL, float(10 * np.log10(255.0**2 / mse)))


def ssim_map(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Structural similarity (Wang et al. 2004; Gaussian window, sigma 1.5) per pixel, averaged over the colour
    channels: images (H, W, 3) -> float32 (H, W) in [-1, 1]."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = generated.astype(np.float32), truth.astype(np.float32)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim.mean(axis=2)


def box_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box (4,) x0, y0, x1, y1 in pixels -> bool mask (H, W), True for pixels whose centre is inside."""
    x0, y0, x1, y1 = box
    ys, xs = np.arange(height)[:, None] + 0.5, np.arange(width)[None, :] + 0.5
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def appearance(generated: np.ndarray, truth: np.ndarray, mouth_boxes: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM inside and outside the mouth boxes, frames (T, H, W, 3), boxes (T, 4)."""
    squared = {"mouth": 0.0, "outside": 0.0}
    ssim_sum = {"mouth": 0.0, "outside": 0.0}
    count = {"mouth": 0, "outside": 0}
    for g, t, box in zip(generated, truth, mouth_boxes):
        inside = box_mask(box, *t.shape[:2])
        difference = g.astype(np.float32) - t.astype(np.float32)
        error = (difference * difference).sum(axis=2)
        ssim = ssim_map(g, t)
        for region, mask in (("mouth", inside), ("outside", ~inside)):
            squared[region] += float(error[mask].sum())
            ssim_sum[region] += float(ssim[mask].sum())
            count[region] += int(mask.sum())
    result = {}
    for region in ("mouth", "outside"):
        mse = squared[region] / max(1, 3 * count[region])
        result[f"psnr_{region}"] = _psnr_from_mse(mse)
    for region in ("mouth", "outside"):
        result[f"ssim_{region}"] = ssim_sum[region] / max(1, count[region])
    return result


def flicker(generated: np.ndarray, truth: np.ndarray, tolerance: int = 0) -> float:
    """Mean absolute frame-to-frame change (grey levels) of the generated frames where the ground truth is still
    (no channel changes by more than `tolerance` between the two frames). Frames (T, H, W, 3)."""
    if len(truth) < 2:
        return float("nan")
    still = (np.abs(np.diff(truth.astype(np.int16), axis=0)) <= tolerance).all(axis=3)
    change = np.abs(np.diff(generated.astype(np.int16), axis=0)).mean(axis=3)
    return float(change[still].mean()) if still.any() else float("nan")


def chunk_boundary_ratio(generated: np.ndarray, chunk_starts: list[int]) -> float:
    """Mean frame-to-frame change across chunk boundaries divided by the mean change inside chunks (1 = seamless).
    Frames (T, H, W, 3); chunk_starts: first frame of each chunk (0 may be included; it is ignored)."""
    change = np.abs(np.diff(generated.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))  # change[t-1]: t-1 -> t
    boundary = np.zeros(len(change), bool)
    for start in chunk_starts:
        if 0 < start < len(generated):
            boundary[start - 1] = True
    if not boundary.any() or boundary.all():
        return float("nan")
    inside = float(change[~boundary].mean())
    return float(change[boundary].mean() / inside) if inside > 0 else float("nan")


def closed_share(opening: np.ndarray, states: np.ndarray, state: int, threshold: float = CLOSED_OPENING) -> float:
    """Share of frames in `state` whose mouth opening (T,) is below threshold; NaN when there are none."""
    selected = np.asarray(states) == state
    return float((np.asarray(opening)[selected] < threshold).mean()) if selected.any() else float("nan")


def expression_effect(generated: np.ndarray, neutral: np.ndarray, direction: np.ndarray) -> float:
    """How far a generated image (H, W, 3) moved from the generated neutral one along the ground-truth direction of
    a slider (truth at +1 minus truth at -1): the projection coefficient (0 = no effect, 0.5 = the full +1 effect)."""
    delta = generated.astype(np.float64) - neutral.astype(np.float64)
    direction = direction.astype(np.float64)
    norm = float((direction**2).sum())
    return float((delta * direction).sum() / norm) if norm > 0 else 0.0
