"""`dataset synth`: many identities x clips of synthetic talking avatars, deterministic for a seed, resumable.

Every clip depends only on (seed, identity, clip index), so clips can be made in any order by any worker, and a
run that stops can continue: a clip folder appears (by rename) only once complete, and the manifest records the
settings so that a resumed run refuses to mix in clips made with other settings.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from avatar_desktop.config import EXPRESSION_COMPONENTS, State
from avatar_desktop.data.clips import (FORMAT_VERSION, DatasetError, FrameWriter, open_output, publish_clip, write_json,
                                       write_record, write_wav)
from avatar_desktop.data.speech import Voice, make_sentence, speak
from avatar_desktop.data.synthetic import FrameParams, Identity, render_frame
from avatar_desktop.data.timeline import FPS, ClipTracks, make_clip_tracks
from avatar_desktop.data.voices import HELDOUT_VOICES, canonical_voice_name, check_voice, is_heldout_voice
from avatar_desktop.files import read_json


_CLIP_ONLY_KEYS = ("fps", "size", "source", "sentences")
"""Keys of clip.json that its manifest entry leaves out."""


@dataclass(frozen=True)
class SynthConfig:
    """What `dataset synth` makes: identities x clips_per_identity clips of `seconds` each at size x size pixels.

    voices: voices to draw from, 'engine:voice' or bare espeak-ng names (None: a pool of espeak-ng voices sampled
    from the seed); heldout_fraction of the identities are kept out of the training split, and so are the voices
    of heldout_voices when given, else heldout_fraction of the voices. The voices of HELDOUT_VOICES (flite:slt,
    festival:cmu_us_slt_arctic_hts) are refused unless heldout_voices lists them; a training clip never has a
    voice of heldout_voices, as its own nor as its far end's.
    """

    identities: int
    clips_per_identity: int
    seconds: float
    seed: int = 0
    size: int = 256
    voices: tuple[str, ...] | None = None
    heldout_fraction: float = 0.1
    voice_pool: int = 24
    heldout_voices: tuple[str, ...] | None = None

    def validate(self) -> None:
        if self.identities < 1:
            raise DatasetError(f"--identities must be at least 1, got {self.identities}")
        if self.clips_per_identity < 1:
            raise DatasetError(f"--clips-per-identity must be at least 1, got {self.clips_per_identity}")
        if not 0.5 <= self.seconds <= 600:
            raise DatasetError(f"--seconds must lie in [0.5, 600], got {self.seconds}")
        if not 64 <= self.size <= 1024 or self.size % 16:
            raise DatasetError(f"--size must be a multiple of 16 in [64, 1024], got {self.size}")
        if self.heldout_voices is not None and self.voices is None:
            raise DatasetError("--heldout-voices needs --voices (the voices of the training clips)")
        if self.voices is not None:
            if len(self.voices) < 2:
                raise DatasetError("--voices needs at least two voices (the avatar and the far end)")
            heldout = {canonical_voice_name(name) for name in self.heldout_voices or ()}
            refused = [name for name in self.voices if is_heldout_voice(name) and canonical_voice_name(name)
                       not in heldout]
            if refused:
                raise DatasetError(
                    f"{', '.join(refused)} {'is a held-out voice' if len(refused) == 1 else 'are held-out voices'} "
                    f"({', '.join(sorted(HELDOUT_VOICES))}): never used for training clips; to make held-out clips "
                    f"with {'it' if len(refused) == 1 else 'them'}, list {'it' if len(refused) == 1 else 'them'} in "
                    f"--heldout-voices")
            train = [name for name in _voice_names(self.voices) if name not in heldout]
            if self.heldout_voices is not None and len(train) < 2:
                raise DatasetError(f"--voices needs at least two voices outside --heldout-voices (the avatar and the "
                                   f"far end of training clips), got {', '.join(train) or 'none'}")
            for name in (*self.voices, *(self.heldout_voices or ())):
                check_voice(name)


@dataclass(frozen=True)
class ClipPlan:
    """One clip to make: which identity and voices, which split."""

    clip_id: str
    identity: int
    identity_seed: int
    clip_index: int
    voice: Voice
    far_voice: Voice
    heldout_identity: bool
    heldout_voice: bool

    @property
    def split(self) -> str:
        return "heldout" if self.heldout_identity or self.heldout_voice else "train"


def _heldout_count(total: int, fraction: float) -> int:
    return 0 if total < 2 else max(1, int(round(total * fraction)))


def _voice_names(names: tuple[str, ...]) -> list[str]:
    """Canonical voice names ('espeak:en-us+f3' -> 'en-us+f3'), each once, in their order."""
    return list(dict.fromkeys(canonical_voice_name(name) for name in names))


def plan_clips(config: SynthConfig) -> list[ClipPlan]:
    """Every clip of the data set, in a fixed order; the last identities of the pool are held out, and the voices
    of config.heldout_voices or else the last voices of the pool."""
    pool_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5017]))
    if config.voices is not None:
        names = _voice_names(config.voices)
    else:
        names = sorted({Voice.random(pool_rng).name for _ in range(config.voice_pool * 3)})
        pool_rng.shuffle(names)
        names = names[: config.voice_pool]
    if config.heldout_voices is not None:
        heldout_names = _voice_names(config.heldout_voices)
        names += [name for name in heldout_names if name not in names]
        heldout_voices = set(heldout_names)
    else:
        heldout_voices = set(names[len(names) - _heldout_count(len(names), config.heldout_fraction):])
    # Voices held out by explicit choice keep out of training clips entirely, the far end included.
    strict = config.heldout_voices is not None or any(is_heldout_voice(name) for name in names)
    heldout_voices |= {name for name in names if is_heldout_voice(name)}
    heldout_identities = set(range(config.identities - _heldout_count(config.identities, config.heldout_fraction),
                                   config.identities))
    plans = []
    for identity in range(config.identities):
        identity_seed = int(np.random.SeedSequence([config.seed, identity]).generate_state(1)[0])
        for clip_index in range(config.clips_per_identity):
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, identity, clip_index, 0xC11F]))
            if strict:
                voice_name = names[int(rng.integers(len(names)))]
                far_names = [name for name in names if name != voice_name
                             and (voice_name in heldout_voices or name not in heldout_voices)]
                far_name = far_names[int(rng.integers(len(far_names)))]
            else:
                voice_name, far_name = (names[i] for i in rng.choice(len(names), 2, replace=False))
            voice = Voice(voice_name, rate=int(rng.integers(135, 196)), pitch=int(rng.integers(25, 76)))
            far_voice = Voice(far_name, rate=int(rng.integers(135, 196)), pitch=int(rng.integers(25, 76)))
            plans.append(ClipPlan(
                clip_id=f"id{identity:04d}_c{clip_index:02d}", identity=identity, identity_seed=identity_seed,
                clip_index=clip_index, voice=voice, far_voice=far_voice,
                heldout_identity=identity in heldout_identities, heldout_voice=voice_name in heldout_voices,
            ))
    return plans


def render_clip(folder: Path, plan: ClipPlan, config: SynthConfig) -> dict[str, Any]:
    """Synthesize, render and write one clip into `folder` (created); returns its manifest entry."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, plan.identity, plan.clip_index]))
    tracks = make_clip_tracks(rng, config.seconds, plan.voice, plan.far_voice, fps=FPS)
    identity = Identity.from_seed(plan.identity_seed)
    folder.mkdir(parents=True)
    face_boxes = np.zeros((tracks.frames, 4), np.float32)
    mouth_boxes = np.zeros((tracks.frames, 4), np.float32)
    with FrameWriter(folder / "frames.mp4", size=config.size, fps=FPS) as writer:
        for index in range(tracks.frames):
            frame, geometry = render_frame(identity, tracks.frame_params(index), config.size)
            writer.write(frame)
            face_boxes[index], mouth_boxes[index] = geometry.face_box, geometry.mouth_box
    write_wav(folder / "audio.wav", tracks.audio)
    write_wav(folder / "far_end.wav", tracks.far_audio)
    write_record(folder / "record.npz", _record(tracks, face_boxes, mouth_boxes))
    entry = {
        "id": plan.clip_id, "path": f"clips/{plan.clip_id}", "identity": plan.identity,
        "identity_seed": plan.identity_seed, "clip_index": plan.clip_index, "voice": asdict(plan.voice),
        "far_voice": asdict(plan.far_voice), "split": plan.split, "heldout_identity": plan.heldout_identity,
        "heldout_voice": plan.heldout_voice, "frames": tracks.frames, "seconds": tracks.frames / FPS,
    }
    clip_only = {"fps": FPS, "size": config.size, "source": "synthetic", "sentences": tracks.sentences}
    write_json(folder / "clip.json", {**entry, **clip_only})
    return entry


def _record(tracks: ClipTracks, face_boxes: np.ndarray, mouth_boxes: np.ndarray) -> dict[str, np.ndarray]:
    names = [p[0] for p in tracks.phonemes]
    return {
        "state": tracks.state.astype(np.int8),
        "viseme": tracks.viseme.astype(np.int8),
        "mouth_open": tracks.mouth[:, 0].astype(np.float32),
        "mouth_shape": tracks.mouth[:, 1:].astype(np.float32),
        "expression": tracks.expression.astype(np.float32),
        "head_pose": tracks.head_pose.astype(np.float32),
        "blink": tracks.blink.astype(np.float32),
        "sway": tracks.sway.astype(np.float32),
        "face_box": face_boxes,
        "mouth_box": mouth_boxes,
        "phoneme_start": np.array([p[1] for p in tracks.phonemes], np.float32),
        "phoneme_end": np.array([p[2] for p in tracks.phonemes], np.float32),
        "phoneme_viseme": np.array([p[3] for p in tracks.phonemes], np.int8),
        "phoneme_name": np.array(names, dtype="<U8"),
    }


def _settings(config: SynthConfig) -> dict[str, Any]:
    settings = {**asdict(config), "voices": list(config.voices) if config.voices else None, "fps": FPS}
    if config.heldout_voices is None:
        del settings["heldout_voices"]  # as data sets made before the option recorded them
    else:
        settings["heldout_voices"] = list(config.heldout_voices)
    return settings


def _manifest(config: SynthConfig, entries: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "source": "synthetic",
        "settings": _settings(config),
        "fps": FPS,
        "size": config.size,
        "complete": complete,
        "states": {state.name.lower(): int(state) for state in State},
        "expression_components": list(EXPRESSION_COMPONENTS),
        "clips": entries,
    }


def _make_one(job: tuple[Path, ClipPlan, SynthConfig]) -> dict[str, Any]:
    out, plan, config = job
    temporary = out / "clips" / f".tmp-{plan.clip_id}"
    entry = render_clip(temporary, plan, config)
    publish_clip(temporary, out / "clips" / plan.clip_id)
    return entry


def build_synthetic(out: Path, config: SynthConfig, *, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Make (or finish making) the data set in `out`; returns the manifest written to out/manifest.json."""
    config.validate()
    out = Path(out)
    open_output(out, _settings(config))
    plans = plan_clips(config)
    entries: dict[str, dict[str, Any]] = {}
    for plan in plans:
        done = out / "clips" / plan.clip_id / "clip.json"
        if done.is_file():
            meta = read_json(done, "clip description", DatasetError)
            entries[plan.clip_id] = {key: value for key, value in meta.items() if key not in _CLIP_ONLY_KEYS}
    write_json(out / "manifest.json", _manifest(config, [entries[p.clip_id] for p in plans if p.clip_id in entries],
                                                complete=False))
    todo = [(out, plan, config) for plan in plans if plan.clip_id not in entries]
    bar = tqdm(total=len(plans), initial=len(plans) - len(todo), unit="clip", desc="dataset synth",
               disable=not progress)
    # A fresh process per clip: espeak-ng carries state from one utterance to the next (its voice tables and
    # pitch flutter), so a clip is reproducible only when its speech starts from the same library state. Workers are
    # forked from a fork server, a clean process with no threads: a worker forked straight from this one could
    # inherit a lock that another thread (tqdm's monitor, the pool's own) held, wait on it forever, and then even
    # the pool's terminate() would hang.
    methods = multiprocessing.get_all_start_methods()
    start_method = "forkserver" if "forkserver" in methods else "spawn"
    with bar, multiprocessing.get_context(start_method).Pool(max(1, workers), maxtasksperchild=1) as pool:
        for entry in pool.imap_unordered(_make_one, todo):
            entries[entry["id"]] = entry
            bar.update()
    manifest = _manifest(config, [entries[p.clip_id] for p in plans], complete=True)
    write_json(out / "manifest.json", manifest)
    return manifest


def write_assets(out: Path, *, seed: int = 7, portraits: int = 4, size: int = 512) -> list[Path]:
    """The app's default assets: `portraits` neutral portraits (PNG, size x size) and sample_speech.wav (16 kHz)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(portraits):
        identity = Identity.from_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
        frame, _ = render_frame(identity, FrameParams(), size)
        path = out / f"portrait_{index + 1}.png"
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        written.append(path)
    rng = np.random.default_rng(seed)
    voice = Voice("en-us+f3", rate=160, pitch=55)
    pause = np.zeros(int(0.35 * 16000), np.float32)
    audio = np.concatenate([part for _ in range(3) for part in (speak(make_sentence(rng), voice).audio, pause)])
    path = out / "sample_speech.wav"
    write_wav(path, audio * (0.8 / max(1e-6, float(np.abs(audio).max()))))
    written.append(path)
    return written
