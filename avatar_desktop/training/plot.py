"""Loss curves drawn into a PNG with OpenCV (no plotting library needed): log-scale loss against step."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avatar_desktop.files import write_png_atomic

WIDTH, HEIGHT, MARGIN = 800, 420, 60


def plot_loss_curve(rows: list[tuple[int, float]], path: Path, title: str) -> None:
    """rows: (step, loss) pairs. Draws the raw curve (light) and a moving average (dark) on a log10 axis; the PNG is
    written atomically."""
    steps = np.array([r[0] for r in rows], np.float64)
    loss = np.log10(np.maximum(np.array([r[1] for r in rows], np.float64), 1e-12))
    window = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    canvas = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    x0, x1, y0, y1 = MARGIN, WIDTH - 20, HEIGHT - MARGIN, 40
    lo, hi = float(loss.min()), float(loss.max()) if loss.max() > loss.min() else float(loss.min()) + 1
    span = max(steps[-1] - steps[0], 1)

    def to_pixels(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        px = x0 + (xs - steps[0]) / span * (x1 - x0)
        py = y0 - (ys - lo) / (hi - lo) * (y0 - y1)
        return np.stack([px, py], axis=1).round().astype(np.int32)

    cv2.rectangle(canvas, (x0, y1), (x1, y0), (0, 0, 0), 1)
    cv2.polylines(canvas, [to_pixels(steps, loss)], False, (220, 180, 150), 1, cv2.LINE_AA)
    cv2.polylines(canvas, [to_pixels(steps[window - 1 :], smooth)], False, (120, 40, 0), 2, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, title, (x0, 28), font, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "loss (log scale)", (x0 + 200, 28), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"{10**hi:.3g}", (5, y1 + 5), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"{10**lo:.3g}", (5, y0), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"step {int(steps[0])}", (x0, y0 + 25), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"{int(steps[-1])}", (x1 - 50, y0 + 25), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    write_png_atomic(path, canvas)
