"""Training chunks for the expression stage: synthetic clips drawn again with other slider values.

A synthetic clip's record holds every rendering parameter (data.timeline.record_frame_params), so any stretch of it
can be rendered as it would look had the sliders stood elsewhere: the same speech, blinks and head motion, another
expression. Recorded footage never shows the same moment twice with two slider settings; this does, and the
difference between the two renderings is exactly what a slider should change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatar_desktop.config import EXPRESSION_COMPONENTS, AudioConfig
from avatar_desktop.data.clips import load_clip
from avatar_desktop.data.synthetic import FrameParams, Identity, render_frame
from avatar_desktop.data.timeline import record_frame_params
from avatar_desktop.errors import AvatarError
from avatar_desktop.training.data import chunk_windows, images_to_tensor, mouth_mask, training_clips

MOTION_KINDS = ("natural", "redrawn")
"""What a chunk's motion frames show, one kind per chunk with equal odds: the clip's own sliders (the stored
frames), or sliders redrawn (each with probability change_share) and held since."""


@dataclass
class RecordClip:
    identity: Identity
    record: dict[str, np.ndarray]  # record.npz arrays of T frames
    audio: torch.Tensor  # (N,) float32, 16 kHz
    portrait: torch.Tensor  # (C, h, w) latent of the identity's neutral portrait

    @property
    def frames(self) -> int:
        return len(self.record["state"])


@torch.no_grad()
def record_clips(root: Path, autoencoder: torch.nn.Module, split: str = "train") -> list[RecordClip]:
    """The clips of `split` with what re-rendering them needs (no frames are decoded). Clips not made by
    `dataset synth` are refused: only a synthetic clip can be drawn again with other sliders."""
    size = autoencoder.cfg.image_size
    portraits: dict[int, torch.Tensor] = {}
    clips = []
    for path in training_clips(root, split):
        clip = load_clip(path, with_frames=False)
        if clip.meta.get("source") != "synthetic" or "identity_seed" not in clip.meta:
            raise AvatarError(f"{path}: not a synthetic clip; the expression stage re-renders clips with other slider "
                              f"values and needs data made by `avatar-desktop dataset synth`")
        seed = int(clip.meta["identity_seed"])
        identity = Identity.from_seed(seed)
        if seed not in portraits:
            image, _ = render_frame(identity, FrameParams(), size)
            portraits[seed] = autoencoder.encode(images_to_tensor(image[None]))[0]
        audio = torch.from_numpy(clip.audio.astype(np.float32))
        clips.append(RecordClip(identity, clip.record, audio, portraits[seed]))
    return clips


def _render(clip: RecordClip, indices: range, expression: np.ndarray | None, size: int, latent_size: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames `indices` of `clip` with slider values `expression`, (5,) for all of them or (T, 5) per frame (None: the
    clip's own): images (T, 3, size, size) in [-1, 1] and mouth masks (T, 1, latent_size, latent_size)."""
    per_frame = np.broadcast_to(expression, (len(indices), 5)) if expression is not None else [None] * len(indices)
    images, boxes = [], []
    for index, sliders in zip(indices, per_frame):
        image, geometry = render_frame(clip.identity, record_frame_params(clip.record, index, sliders), size)
        images.append(image)
        boxes.append(geometry.mouth_box)
    cells = torch.tensor(np.array(boxes), dtype=torch.float32) * (latent_size / size)
    return images_to_tensor(np.stack(images)), mouth_mask(cells, latent_size)


def sample_expression_chunks(
    clips: list[RecordClip], batch: int, frames: int, motion_frames: int, audio: AudioConfig, fps: int,
    generator: torch.Generator, change_share: float, slider_step: float, size: int, latent_size: int,
    taught: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """A batch of chunks, each rendered twice after the same motion frames: `held` with the sliders the motion
    frames show held over the chunk, `changed` with each of them moved on, with probability `change_share`, by
    `slider_step` per frame up or down (a slider being dragged, as the engine eases it: SamplingConfig.slider_speed).
    Only the sliders marked in `taught` (E,) bool (default: all) are redrawn or moved; the others keep the clip's.

    The motion frames (B, M, 3, H, W), the M frames before the chunk, are one of MOTION_KINDS (`natural` (B,) bool
    marks the first: the stored frames, whose sliders the held chunk keeps from its first frame on);
    motion_expression (B, E) is the sliders of the last of them. Both versions share reference (B, C, h, w) the
    portrait latent, windows (B, T, W) and label (B,). Per version: {v}_frames (B, T, 3, H, W) images in [-1, 1],
    {v}_mouth (B, T, 1, h, w) mouth masks in latent cells, {v}_expression (B, E) the sliders at the chunk's last
    frame (what the engine conditions a chunk on). clip, start (B,) say where each chunk comes from. Chunks start
    after M frames, so the motion frames are always the clip's own past.
    """
    out: dict[str, list] = {key: [] for key in (
        "reference", "motion", "motion_expression", "natural", "windows", "label", "clip", "start", "held_frames",
        "held_mouth", "held_expression", "changed_frames", "changed_mouth", "changed_expression")}
    ramp = np.arange(1, frames + 1, dtype=np.float32)[:, None] * slider_step  # (T, 1) how far a moving slider got
    taught = np.ones(len(EXPRESSION_COMPONENTS), bool) if taught is None else np.asarray(taught, bool)
    for _ in range(batch):
        clip_index = int(torch.randint(len(clips), (1,), generator=generator))
        clip = clips[clip_index]
        if clip.frames < motion_frames + frames:
            raise AvatarError(f"a clip of {clip.frames} frames is shorter than {motion_frames} motion frames and a "
                              f"chunk of {frames}; use longer clips")
        start = int(torch.randint(motion_frames, clip.frames - frames + 1, (1,), generator=generator))
        own = clip.record["expression"][start].astype(np.float32)
        kind = MOTION_KINDS[int(torch.randint(len(MOTION_KINDS), (1,), generator=generator))]
        redraw = (torch.rand(len(own), generator=generator) < change_share).numpy() & taught
        redrawn = np.where(redraw, (torch.rand(len(own), generator=generator) * 2 - 1).numpy(), own).astype(np.float32)
        move = (torch.rand(len(own), generator=generator) < change_share).numpy() & taught
        direction = np.where(torch.rand(len(own), generator=generator).numpy() < 0.5, -1.0, 1.0) * move
        held = own if kind == "natural" else redrawn
        changed = np.clip(held + direction * ramp, -1, 1).astype(np.float32)  # (T, E)
        chunk = range(start, start + frames)
        for version, expression in (("held", held), ("changed", changed)):
            images, mouth = _render(clip, chunk, expression, size, latent_size)
            out[f"{version}_frames"].append(images)
            out[f"{version}_mouth"].append(mouth)
            out[f"{version}_expression"].append(torch.from_numpy(np.array(expression.reshape(-1, 5)[-1])))
        before = range(start - motion_frames, start)
        out["motion"].append(_render(clip, before, None if kind == "natural" else held, size, latent_size)[0])
        shown = clip.record["expression"][start - 1] if kind == "natural" else held
        out["motion_expression"].append(torch.from_numpy(shown.astype(np.float32)))
        out["reference"].append(clip.portrait)
        out["natural"].append(torch.tensor(kind == "natural"))
        out["windows"].append(chunk_windows(clip.audio, start, frames, audio, fps))
        out["label"].append(torch.tensor(int(clip.record["state"][start])))
        out["clip"].append(torch.tensor(clip_index))
        out["start"].append(torch.tensor(start))
    return {key: torch.stack(values) for key, values in out.items()}


@torch.no_grad()
def encode_batch(autoencoder: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with its images replaced by latents: held_frames, changed_frames -> held_x0, changed_x0
    (B, T, C, h, w); motion images -> motion latents (B, M, C, h, w)."""
    encoded = dict(batch)
    for key, name in (("held_frames", "held_x0"), ("changed_frames", "changed_x0"), ("motion", "motion")):
        images = encoded.pop(key)
        latents = autoencoder.encode(images.flatten(0, 1))
        encoded[name] = latents.unflatten(0, images.shape[:2])
    return encoded
