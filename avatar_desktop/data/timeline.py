"""Per-frame tracks of a synthetic clip: states, speech, visemes with coarticulation, blinks, head motion, expression.

A clip is a sequence of state segments (speaking, listening, idle), each a different state from the one before.
A speaking segment lasts one synthesized sentence; a listening segment lasts one sentence of the far end (another
voice) while the avatar keeps its mouth closed and nods; idle segments last 1.2-3 s. Video frame f covers audio [f / fps, (f + 1) / fps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS, SAMPLE_RATE, State
from avatar_desktop.data.speech import VISEME_SHAPES, Utterance, Viseme, Voice, make_sentence, speak
from avatar_desktop.data.synthetic import FrameParams
from avatar_desktop.drawn_face import expression_pose

FPS = 25
_IDLE_SECONDS = (1.2, 3.0)


@dataclass
class ClipTracks:
    """All per-frame parameters of one clip (T frames) and its audio.

    state int8 (T,); viseme int8 (T,) (a Viseme id, REST outside speech); mouth float32 (T, 4): opening, width,
    rounding, teeth; blink float32 (T,) in [0, 1]; expression float32 (T, 5) in EXPRESSION_COMPONENTS order;
    head_pose float32 (T, 3): yaw, pitch, roll in [-1, 1] as rendered; sway float32 (T, 2) in face units.
    audio / far_audio: float32 (N,) 16 kHz, N = T * 16000 / fps: the avatar's voice and the far end's voice.
    phonemes: (name, start s, end s, viseme id) of the avatar's speech, in clip time.
    """

    fps: int
    state: np.ndarray
    viseme: np.ndarray
    mouth: np.ndarray
    blink: np.ndarray
    expression: np.ndarray
    head_pose: np.ndarray
    sway: np.ndarray
    audio: np.ndarray
    far_audio: np.ndarray
    phonemes: list[tuple[str, float, float, int]]
    sentences: list[str]

    @property
    def frames(self) -> int:
        return len(self.state)

    def frame_params(self, index: int) -> FrameParams:
        return FrameParams(
            mouth_opening=float(self.mouth[index, 0]),
            mouth_width=float(self.mouth[index, 1]),
            mouth_rounding=float(self.mouth[index, 2]),
            teeth=float(self.mouth[index, 3]),
            blink=float(self.blink[index]),
            expression=self.expression[index],
            head_yaw=float(self.head_pose[index, 0]),
            head_pitch=float(self.head_pose[index, 1]),
            head_roll=float(self.head_pose[index, 2]),
            sway=(float(self.sway[index, 0]), float(self.sway[index, 1])),
        )


def _next_state(rng: np.random.Generator, state: State) -> State:
    """After speaking: listening or idle; otherwise mostly speaking (3 in 4), else the other quiet state."""
    if state == State.SPEAKING:
        return State.LISTENING if rng.random() < 0.5 else State.IDLE
    if rng.random() < 0.75:
        return State.SPEAKING
    return State.IDLE if state == State.LISTENING else State.LISTENING


def viseme_frames(phonemes: list[tuple[str, float, float, int]], frames: int, fps: int) -> np.ndarray:
    """Viseme id per frame (T,) int8: the longest-overlapping phoneme's viseme, except that a p/b/m overlapping a
    frame always wins, so that every bilabial closure shows in at least one frame."""
    best = np.full(frames, int(Viseme.REST), np.int8)
    overlap = np.zeros(frames)
    closed = np.zeros(frames, bool)
    for _, start, end, viseme in phonemes:
        first, last = int(np.floor(start * fps)), min(frames - 1, int(np.ceil(end * fps)) - 1)
        for f in range(max(first, 0), last + 1):
            amount = min(end, (f + 1) / fps) - max(start, f / fps)
            if viseme == Viseme.CLOSED and amount > 0:
                closed[f] = True
            if amount > overlap[f]:
                overlap[f], best[f] = amount, viseme
    best[closed] = int(Viseme.CLOSED)
    return best


def coarticulate(visemes: np.ndarray) -> np.ndarray:
    """Viseme ids (T,) -> smooth mouth parameters (T, 4): opening, width, rounding, teeth.

    Each frame blends its own target with its neighbours' (anticipation and carry-over); frames of p/b/m and REST
    keep their closed lips exactly, so closures are never smoothed away.
    """
    targets = np.array([[*vars(VISEME_SHAPES[Viseme(v)]).values()] for v in visemes], np.float32).reshape(-1, 4)
    padded = np.pad(targets, ((1, 1), (0, 0)), mode="edge")
    smooth = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    closed = np.isin(visemes, [int(Viseme.CLOSED), int(Viseme.REST)])
    smooth[closed, 0] = 0.0
    smooth[closed, 3] = 0.0
    return smooth


def _blinks(rng: np.random.Generator, frames: int, fps: int) -> np.ndarray:
    profile = np.array([0.5, 1.0, 1.0, 0.6, 0.25])
    blink = np.zeros(frames, np.float32)
    f = int(rng.uniform(0.5, 3.0) * fps)
    while f < frames:
        end = min(frames, f + len(profile))
        blink[f:end] = profile[: end - f]
        f += int(rng.uniform(2.0, 5.5) * fps)
    return blink


def _smooth_noise(rng: np.random.Generator, frames: int, width_frames: float, scale: float) -> np.ndarray:
    """Gaussian-smoothed white noise (T,), standard deviation about `scale`."""
    noise = rng.normal(0, 1, frames + 200)
    t = np.arange(-100, 101)
    kernel = np.exp(-0.5 * (t / width_frames) ** 2)
    smooth = np.convolve(noise, kernel / np.sqrt((kernel**2).sum()), mode="same")[100:-100]
    return (smooth * scale).astype(np.float32)


def _place(track: np.ndarray, utterance: Utterance, start_frame: int, end_frame: int, fps: int) -> float:
    """Write the utterance's audio at start_frame (cut at end_frame); returns the seconds written."""
    first = start_frame * SAMPLE_RATE // fps
    last = min(end_frame * SAMPLE_RATE // fps, first + len(utterance.audio))
    if last <= first:  # the clip ends before the speech begins
        return 0.0
    track[first:last] = utterance.audio[: last - first]
    return (last - first) / SAMPLE_RATE


def make_clip_tracks(rng: np.random.Generator, seconds: float, voice: Voice, far_voice: Voice,
                     fps: int = FPS) -> ClipTracks:
    """Plan and fill every track of one clip of `seconds` seconds (rounded to whole frames)."""
    frames = int(round(seconds * fps))
    samples = frames * SAMPLE_RATE // fps
    audio = np.zeros(samples, np.float32)
    far_audio = np.zeros(samples, np.float32)
    state = np.zeros(frames, np.int8)
    phonemes: list[tuple[str, float, float, int]] = []
    sentences: list[str] = []
    lead_in = int(0.12 * fps)
    start, segment_state = 0, State(int(rng.choice(3, p=[0.5, 0.25, 0.25])))
    while start < frames:
        utterance = None
        if segment_state == State.IDLE:
            length = int(rng.uniform(*_IDLE_SECONDS) * fps)
        else:
            utterance = speak(make_sentence(rng), voice if segment_state == State.SPEAKING else far_voice)
            length = lead_in + int(np.ceil(utterance.seconds * fps)) + 3
        end = min(frames, start + length)
        state[start:end] = segment_state
        if segment_state == State.LISTENING:
            _place(far_audio, utterance, start + lead_in, end, fps)
        elif segment_state == State.SPEAKING:
            sentences.append(utterance.text)
            offset = (start + lead_in) / fps
            written = _place(audio, utterance, start + lead_in, end, fps)
            phonemes += [(p.name, offset + p.start, offset + min(p.end, written), int(p.viseme))
                         for p in utterance.phonemes if p.start < written]
        start = end
        segment_state = _next_state(rng, segment_state)
    visemes = viseme_frames(phonemes, frames, fps)
    speaking = state == State.SPEAKING
    visemes[~speaking] = int(Viseme.REST)
    mouth = coarticulate(visemes)

    listening = (state == State.LISTENING).astype(np.float32)
    idle = (state == State.IDLE).astype(np.float32)
    time = np.arange(frames) / fps
    nod = listening * 0.12 * np.sin(2 * np.pi * 1.2 * time) * (np.sin(2 * np.pi * 0.3 * time + rng.uniform(0, 6)) > 0)
    motion_scale = 0.5 + 0.5 * speaking + 0.3 * listening - 0.2 * idle
    yaw = _smooth_noise(rng, frames, 12, 0.12) * motion_scale
    pitch = _smooth_noise(rng, frames, 10, 0.08) * motion_scale + nod
    roll = _smooth_noise(rng, frames, 15, 0.15) * motion_scale
    sway = np.stack([_smooth_noise(rng, frames, 20, 0.05), _smooth_noise(rng, frames, 20, 0.025)], 1)

    expression = _expression_track(rng, frames, listening)
    slider_yaw, slider_pitch = expression_pose(expression)
    head_pose = np.clip(np.stack([yaw + slider_yaw, pitch + slider_pitch, roll], 1), -1, 1).astype(np.float32)
    return ClipTracks(fps=fps, state=state, viseme=visemes, mouth=mouth, blink=_blinks(rng, frames, fps),
                      expression=expression, head_pose=head_pose, sway=sway.astype(np.float32), audio=audio,
                      far_audio=far_audio, phonemes=phonemes, sentences=sentences)


def record_frame_params(record: dict[str, np.ndarray], index: int, expression: np.ndarray | None = None) -> FrameParams:
    """FrameParams of frame `index` of a synthetic clip's record (record.npz arrays): rendering them gives the stored
    frame. With `expression` (5,), the frame as it would look with those slider values instead: the expression
    and the head pose the head sliders add (expression_pose) change, everything else (mouth, blink, head motion,
    sway) stays."""
    yaw, pitch, roll = (float(v) for v in record["head_pose"][index])
    if expression is None:
        expression = record["expression"][index]
    else:
        expression = np.asarray(expression, np.float32)
        new_yaw, new_pitch = expression_pose(expression)
        old_yaw, old_pitch = expression_pose(record["expression"][index])
        yaw = float(np.clip(yaw + new_yaw - old_yaw, -1, 1))
        pitch = float(np.clip(pitch + new_pitch - old_pitch, -1, 1))
    return FrameParams(
        mouth_opening=float(record["mouth_open"][index]),
        mouth_width=float(record["mouth_shape"][index, 0]),
        mouth_rounding=float(record["mouth_shape"][index, 1]),
        teeth=float(record["mouth_shape"][index, 2]),
        blink=float(record["blink"][index]),
        expression=expression,
        head_yaw=yaw,
        head_pitch=pitch,
        head_roll=roll,
        sway=(float(record["sway"][index, 0]), float(record["sway"][index, 1])),
    )


def _expression_track(rng: np.random.Generator, frames: int, listening: np.ndarray) -> np.ndarray:
    """(T, 5) slider values: a base expression per half clip, eased between, plus an attentive look when
    listening (brows up, eyes open, slight smile)."""
    halves = rng.uniform(-0.8, 0.8, (2, len(EXPRESSION_COMPONENTS))) * (rng.random((2, len(EXPRESSION_COMPONENTS)))
                                                                         < 0.6)
    switch = rng.uniform(0.3, 0.7) * frames
    ease = 1 / (1 + np.exp(-(np.arange(frames) - switch) / 6.0))
    expression = halves[0] * (1 - ease[:, None]) + halves[1] * ease[:, None]
    return np.clip(expression + attentive_look(listening), -1, 1).astype(np.float32)


def attentive_look(listening: np.ndarray) -> np.ndarray:
    """The expression (T, 5) a listener adds to its sliders (brows up, eyes open, slight smile), eased in and out
    over 9 frames: listening float (T,) 1 where the state is listening."""
    return np.convolve(listening, np.ones(9) / 9, mode="same")[:, None] * np.array([0.2, 0.25, 0.2, 0, 0])
