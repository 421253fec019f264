"""Training data from a data set folder (docs/DATA.md): frames for the autoencoder, cached latents for diffusion.

The latent cache is the one-off pass that lets diffusion training read tensors, not videos: per clip one
safetensors file with latents (T, C, h, w) float16, audio (N,) float32, state (T,) and expression (T, E). Mouth
boxes are read from each clip's record when the cache is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from avatar_desktop.audio.augment import (AugmentConfig, Augmentation, apply_augmentation, draw_augmentation,
                                         speech_level)
from avatar_desktop.audio.features import frame_windows, window_geometry
from avatar_desktop.config import SAMPLE_RATE, AudioConfig
from avatar_desktop.data.clips import load_clip, load_manifest
from avatar_desktop.errors import AvatarError
from avatar_desktop.models.autoencoder import encoder_state


def training_clips(root: Path, split: str = "train") -> list[Path]:
    """Folders of the clips of `split` in the data set at `root` (AvatarError when there are none)."""
    manifest = load_manifest(root)
    clips = [root / entry["path"] for entry in manifest.get("clips", []) if entry.get("split", "train") == split]
    if not clips:
        raise AvatarError(f"{root}: the manifest lists no {split!r} clips; build more data with `avatar-desktop dataset`")
    return clips


def images_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


class FramePool:
    """Decoded frames of `size` random training clips held in memory, with their mouth boxes (pixels; NaN rows when
    a clip's record has none); one clip is swapped every `refresh_every` draws."""

    def __init__(self, clips: list[Path], size: int, refresh_every: int, generator: torch.Generator):
        self.clips = clips
        self.refresh_every = refresh_every
        picks = torch.randperm(len(clips), generator=generator)[:size].tolist()
        self.pool = [self._load(clips[i]) for i in picks]
        self.draws = 0

    @staticmethod
    def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
        clip = load_clip(path)
        boxes = clip.record.get("mouth_box")
        if boxes is None or boxes.shape != (len(clip.frames), 4):
            boxes = np.full((len(clip.frames), 4), np.nan)
        return clip.frames, boxes.astype(np.float32)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random frames of random pooled clips, randomly mirrored: images (batch, 3, H, W) in [-1, 1] and their
        mouth masks (batch, 1, H, W), 1 inside the mouth box (all 0 where the clip does not know it)."""
        self.draws += 1
        if self.draws % self.refresh_every == 0 and len(self.clips) > len(self.pool):
            slot = int(torch.randint(len(self.pool), (1,), generator=generator))
            self.pool[slot] = self._load(self.clips[int(torch.randint(len(self.clips), (1,), generator=generator))])
        clip_ids = torch.randint(len(self.pool), (batch,), generator=generator).tolist()
        picks = [(c, int(torch.randint(len(self.pool[c][0]), (1,), generator=generator))) for c in clip_ids]
        images = images_to_tensor(np.stack([self.pool[c][0][f] for c, f in picks]))
        boxes = torch.from_numpy(np.stack([self.pool[c][1][f] for c, f in picks]))
        masks = mouth_mask(boxes, images.shape[-1])
        flip = torch.rand(batch, generator=generator) < 0.5
        images[flip] = images[flip].flip(-1)
        masks[flip] = masks[flip].flip(-1)
        return images, masks


CACHE_TENSORS = ("latents", "audio", "state", "expression")


@dataclass
class CachedClip:
    latents: torch.Tensor  # (T, C, h, w) float32
    audio: torch.Tensor  # (N,) float32, 16 kHz
    state: torch.Tensor  # (T,) int64
    expression: torch.Tensor  # (T, E) float32, unknown values as 0
    mouth_box: torch.Tensor  # (T, 4) float32 x0, y0, x1, y1 in latent cells; NaN where the clip does not know it


def autoencoder_key(autoencoder: torch.nn.Module) -> str:
    """A short hash of what the latents depend on (the encoder's weights and the scaling factor): a cache made by
    another encoder is never reused, one made before a decoder-only fine-tune still is."""
    digest = hashlib.sha256(repr(autoencoder.cfg.scaling_factor).encode())
    for name, tensor in sorted(encoder_state(autoencoder).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def cache_latents(root: Path, autoencoder: torch.nn.Module, *, split: str = "train", batch: int = 16) -> list[CachedClip]:
    """Encode every clip of `split` once (kept in `root/cache/<autoencoder key>/`) and load the cache. A file
    that lacks one of CACHE_TENSORS (written by an earlier version) is made again."""
    folder = root / "cache" / autoencoder_key(autoencoder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = training_clips(root, split)
    cached = []
    for path in tqdm(clips, desc="latent cache", unit="clip", disable=None):
        file = folder / f"{path.name}.safetensors"
        tensors = load_file(file) if file.is_file() else {}
        if set(CACHE_TENSORS) - set(tensors):
            clip = load_clip(path)
            latents = torch.cat([autoencoder.encode(images_to_tensor(clip.frames[i : i + batch])) for i in range(0, len(clip.frames), batch)])
            expression = np.nan_to_num(clip.record["expression"].astype(np.float32))
            tensors = {
                "latents": latents.half().contiguous(),
                "audio": torch.from_numpy(clip.audio.astype(np.float32)),
                "state": torch.from_numpy(clip.record["state"].astype(np.int64)),
                "expression": torch.from_numpy(expression),
            }
            temp = file.with_suffix(".tmp")
            save_file(tensors, temp)
            temp.replace(file)
        latents = tensors["latents"].float()
        mouth_box = _mouth_box_in_latent_cells(path, latent_size=latents.shape[-1], frames=len(latents))
        cached.append(CachedClip(latents, tensors["audio"], tensors["state"], tensors["expression"], mouth_box))
    return cached


def _mouth_box_in_latent_cells(clip: Path, latent_size: int, frames: int) -> torch.Tensor:
    """The record's mouth boxes in pixels -> (T, 4) in latent cells (the frame's `size` spans `latent_size` cells);
    NaN rows when the record has none."""
    size = json.loads((clip / "clip.json").read_text())["size"]
    with np.load(clip / "record.npz", allow_pickle=False) as record:
        boxes = record["mouth_box"].astype(np.float32) if "mouth_box" in record.files else None
    if boxes is None or boxes.shape != (frames, 4):
        return torch.full((frames, 4), float("nan"))
    return torch.from_numpy(boxes) * (latent_size / size)


def mouth_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Boxes (..., 4) x0, y0, x1, y1 in latent cells -> float mask (..., 1, size, size): 1 on the cells a box
    overlaps, 0 elsewhere and everywhere for NaN boxes."""
    cells = torch.arange(size, dtype=torch.float32)
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(4))
    columns = (cells + 1 > x0) & (cells < x1)  # (..., size); False for NaN
    rows = (cells + 1 > y0) & (cells < y1)
    return (rows[..., :, None] & columns[..., None, :]).float().unsqueeze(-3)


def chunk_windows(waveform: torch.Tensor, start: int, frames: int, audio: AudioConfig, fps: int) -> torch.Tensor:
    """Audio windows (frames, W) of frames start..start+frames-1 of a clip's waveform (N,), silence past its end as at
    inference."""
    per_frame, _, lookahead = window_geometry(audio, fps)
    missing = (start + frames) * per_frame + lookahead - len(waveform)
    waveform = torch.nn.functional.pad(waveform, (0, max(0, missing)))
    return frame_windows(waveform, 0, start, frames, audio, fps)[0]


def sample_chunks(
    clips: list[CachedClip], batch: int, frames: int, motion_frames: int, audio: AudioConfig, fps: int,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """A batch of training chunks, drawn as inference sees them.

    x0 (B, T, C, h, w) clean latents; reference (B, C, h, w) another frame of the same clip; motion (B, M, C, h, w)
    the frames before the chunk (the reference repeated where the clip has none, as at the start of a stream);
    windows (B, T, W) audio windows; label (B,) the state at the chunk's first frame; expression (B, E);
    mouth (B, T, 1, h, w) 1 on the latent cells of the mouth box.
    """
    keys = ("x0", "reference", "motion", "windows", "label", "expression", "mouth")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for _ in range(batch):
        clip = clips[int(torch.randint(len(clips), (1,), generator=generator))]
        length = clip.latents.shape[0]
        if length < frames:
            raise AvatarError(f"a clip of {length} frames is shorter than the chunk length {frames}; use longer clips")
        start = int(torch.randint(length - frames + 1, (1,), generator=generator))
        reference = clip.latents[int(torch.randint(length, (1,), generator=generator))]
        before = clip.latents[max(0, start - motion_frames) : start]
        pad = reference[None].expand(motion_frames - len(before), *reference.shape)
        out["x0"].append(clip.latents[start : start + frames])
        out["reference"].append(reference)
        out["motion"].append(torch.cat([pad, before]))
        out["windows"].append(chunk_windows(clip.audio, start, frames, audio, fps))
        out["label"].append(clip.state[start])
        out["expression"].append(clip.expression[start])
        out["mouth"].append(mouth_mask(clip.mouth_box[start : start + frames], clip.latents.shape[-1]))
    return {k: torch.stack(v) for k, v in out.items()}


MOUTH_TARGETS = ("mouth_open", "mouth_width", "mouth_rounding", "teeth")
"""What the audio stage predicts per frame: record.npz `mouth_open` and the three columns of `mouth_shape`."""


@dataclass
class MouthClip:
    audio: torch.Tensor  # (N,) float32, 16 kHz
    mouth: torch.Tensor  # (T, 4) float32, MOUTH_TARGETS
    level: float = 0.0  # the speech RMS of the whole clip (augment.speech_level): noise SNRs are measured against it


def mouth_clips(root: Path, split: str = "train") -> list[MouthClip]:
    """Audio and per-frame mouth ground truth of the clips of `split` (no frames are decoded). Clips without a known
    mouth (real videos) are refused: the audio stage needs synthetic data."""
    clips = []
    for path in training_clips(root, split):
        clip = load_clip(path, with_frames=False)
        mouth = np.concatenate([clip.record["mouth_open"][:, None], clip.record["mouth_shape"]], axis=1)
        if not np.isfinite(mouth).all():
            raise AvatarError(f"{path}: its record does not know the mouth (real videos don't); the audio stage "
                              f"needs clips made by `avatar-desktop dataset synth`")
        audio = clip.audio.astype(np.float32)
        clips.append(MouthClip(torch.from_numpy(audio), torch.from_numpy(mouth.astype(np.float32)), speech_level(audio)))
    return clips


def sample_mouth_windows(clips: list[MouthClip], batch: int, frames: int, audio: AudioConfig, fps: int,
                         generator: torch.Generator, augment: AugmentConfig = AugmentConfig()) -> dict[str, torch.Tensor]:
    """windows (B, T, W): audio windows of `frames` consecutive frames of random clips; mouth (B, T, 4): those
    frames' MOUTH_TARGETS. Without `augment`, each stretch gets a random gain (0.37x..1.6x, microphones differ);
    with it, `augment.probability` of the stretches go through the room and microphone chain (augmented_stretch),
    the others keep their level."""
    windows, mouths = [], []
    sources = [clip.audio.numpy() for clip in clips] if augment.enabled else []
    for _ in range(batch):
        clip = clips[int(torch.randint(len(clips), (1,), generator=generator))]
        if augment.enabled:
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
            draw = draw_augmentation(augment, rng, babble=len(sources) > 1)
            stretch_windows, mouth = augmented_stretch(clip, frames, draw, rng, sources, audio, fps)
        else:
            start = int(torch.randint(len(clip.mouth) - frames + 1, (1,), generator=generator))
            gain = float(torch.exp(torch.rand(1, generator=generator) * 1.5 - 1.0))
            stretch_windows = chunk_windows(clip.audio, start, frames, audio, fps) * gain
            mouth = clip.mouth[start : start + frames]
        windows.append(stretch_windows)
        mouths.append(mouth)
    return {"windows": torch.stack(windows), "mouth": torch.stack(mouths)}


AUGMENT_CONTEXT_S = 0.3
"""Seconds of the clip before a stretch that go through the chain with it (a reverberation tail, the noise's start)."""


def augmented_stretch(clip: MouthClip, frames: int, draw: Augmentation, rng: np.random.Generator,
                      sources: list[np.ndarray], audio: AudioConfig, fps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random stretch of `frames` frames of `clip` through the augmentation `draw` -> (windows (frames, W),
    mouth (frames, 4)). A tempo change reads draw.speed times as many original frames and squeezes them into
    `frames`: the mouth targets are the clip's, interpolated at the original times those frames show."""
    per_frame, past, ahead = window_geometry(audio, fps)
    speed = draw.speed
    before = math.ceil((past + AUGMENT_CONTEXT_S * SAMPLE_RATE) / per_frame)  # frames of context, new timeline
    after = math.ceil(ahead / per_frame) + 1
    length = len(clip.mouth)
    latest = (length - 1) - (frames - 1) * speed
    start = float(rng.uniform(0, max(latest, 0.0)))  # original frame of the stretch's first frame
    first_sample = int(round((start - before * speed) * per_frame))
    count = int(round((before + frames + after) * speed * per_frame))
    waveform = clip.audio.numpy()
    excerpt = np.zeros(count, np.float32)
    lo, hi = max(first_sample, 0), min(first_sample + count, len(waveform))
    if hi > lo:
        excerpt[lo - first_sample : hi - first_sample] = waveform[lo:hi]
    changed = apply_augmentation(excerpt, draw, rng, reference_level=clip.level, babble_sources=sources)
    wanted = (before + frames + after) * per_frame
    changed = np.pad(changed, (0, max(0, wanted - len(changed))))[:wanted]
    stretch_windows = chunk_windows(torch.from_numpy(changed), before, frames, audio, fps)
    times = np.clip(start + np.arange(frames) * speed, 0, length - 1)
    mouth = torch.from_numpy(np.stack([np.interp(times, np.arange(length), clip.mouth[:, i].numpy())
                                       for i in range(clip.mouth.shape[1])], axis=1).astype(np.float32))
    return stretch_windows, mouth
