"""The per-video-frame audio windows the audio encoder reads, in numpy (the streaming engine of either backend cuts
them; the ONNX path imports no torch).

Media clock: video frame f covers audio samples [f * S, (f + 1) * S) with S = SAMPLE_RATE / fps. Its audio window
adds `past_ms` before and `audio_lookahead_ms` after that span; samples before the start of the stream are silence.
"""

from __future__ import annotations

import numpy as np

from avatar_desktop.config import SAMPLE_RATE, AudioConfig


def window_geometry(cfg: AudioConfig, fps: int) -> tuple[int, int, int]:
    """(samples per video frame, past samples, lookahead samples) for the audio window of one frame."""
    per_frame = SAMPLE_RATE // fps
    if per_frame * fps != SAMPLE_RATE:
        raise ValueError(f"fps {fps} must divide {SAMPLE_RATE} so that frames align with samples")
    return per_frame, round(SAMPLE_RATE * cfg.past_ms / 1000), round(SAMPLE_RATE * cfg.audio_lookahead_ms / 1000)


def frame_windows(audio: np.ndarray, audio_start: int, first_frame: int, frames: int, cfg: AudioConfig,
                  fps: int) -> np.ndarray:
    """Cut per-frame audio windows out of a stretch of the stream.

    audio: (S,) or (B, S) samples of the stream starting at absolute sample `audio_start`; it must reach the end of
    the last frame's lookahead. Samples before absolute 0 are silence. Returns a new array (B, frames, W) of
    audio's dtype, W = past + per_frame + lookahead.
    """
    if audio.ndim == 1:
        audio = audio[None]
    per_frame, past, ahead = window_geometry(cfg, fps)
    first_needed = first_frame * per_frame - past
    last_needed = (first_frame + frames) * per_frame + ahead
    pad_front = max(0, audio_start - first_needed)
    if audio_start + audio.shape[1] < last_needed:
        raise ValueError(
            f"audio ends at sample {audio_start + audio.shape[1]} but frames {first_frame}..{first_frame + frames - 1} "
            f"need audio up to sample {last_needed}"
        )
    if pad_front > 0 and audio_start > 0:
        raise ValueError(f"audio starts at sample {audio_start} but frame {first_frame} needs it from {first_needed}")
    audio = np.pad(audio, ((0, 0), (pad_front, 0)))
    offset = first_needed - (audio_start - pad_front)
    width = past + per_frame + ahead
    span = audio[:, offset : offset + (frames - 1) * per_frame + width]
    return np.lib.stride_tricks.sliding_window_view(span, width, axis=1)[:, ::per_frame].copy()  # (B, frames, W)
