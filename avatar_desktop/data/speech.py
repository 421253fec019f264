"""Speech with phoneme timings: espeak-ng through its shared library, sentences from a built-in grammar, visemes.

espeak-ng runs in synchronous mode with phoneme events enabled: one callback receives both the 22.05 kHz audio
blocks and the events, each event carrying its sample position, so every phoneme's start is known to the sample.
The audio is resampled to 16 kHz (`avatar_desktop.config.SAMPLE_RATE`). `speak` also speaks with the other engines
(flite, festival: `avatar_desktop.data.voices`) for voices named 'engine:voice'; phones map to visemes in
`avatar_desktop.data.phones`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np

from avatar_desktop.config import SAMPLE_RATE
# Viseme, its shapes and phoneme_viseme live in phones.py (the one phone -> viseme table); imported from here too.
from avatar_desktop.data.phones import VISEME_SHAPES, MouthShape, Viseme, phoneme_viseme, viseme_of  # noqa: F401
from avatar_desktop.errors import AvatarError


class SpeechError(AvatarError):
    """A speech engine or voice is missing (the message names the Debian package), or a voice or text it cannot
    speak."""


# ---------------------------------------------------------------------------------------------------------------
# Sentences: a small built-in grammar over word lists written for this project (rich in p/b/m for lip closures).

_NAMES = ["Maya", "Bruno", "Pablo", "Emma", "Tom", "Lina", "Omar", "Paula", "Ben", "Mia", "Felix", "Rosa"]
_ADJECTIVES = ["blue", "happy", "small", "bright", "purple", "busy", "calm", "warm", "brave", "tiny", "modern",
               "open", "famous", "gentle", "broken", "empty"]
_NOUNS = ["map", "boat", "piano", "window", "garden", "bottle", "market", "movie", "problem", "pillow", "rabbit",
          "museum", "bicycle", "mountain", "phone", "picture", "umbrella", "bridge", "window", "puppy"]
_VERBS = ["paints", "moves", "buys", "builds", "opens", "borrows", "remembers", "prepares", "fixes", "bakes",
          "measures", "pushes", "brings", "plays with", "finds", "watches"]
_PLACES = ["in the morning", "by the beach", "before lunch", "at the park", "near the bus stop", "every Monday",
           "after the meeting", "on the boat", "above the bakery", "behind the museum"]
_OPENERS = ["Well,", "By the way,", "Maybe", "Probably", "To be honest,", "I think", "Oh,"]
_QUESTIONS = ["Would you", "Could we", "May I", "Should Bob"]
_QUESTION_VERBS = ["bring the", "borrow a", "paint the", "move the", "open a", "buy the"]


def make_sentence(rng: np.random.Generator) -> str:
    """One random English sentence from the built-in grammar (statement, question or exclamation)."""

    def pick(words: list[str]) -> str:
        return words[int(rng.integers(len(words)))]

    kind = int(rng.integers(4))
    if kind == 0:
        return f"{pick(_NAMES)} {pick(_VERBS)} the {pick(_ADJECTIVES)} {pick(_NOUNS)} {pick(_PLACES)}."
    if kind == 1:
        return f"{pick(_OPENERS)} the {pick(_NOUNS)} is {pick(_ADJECTIVES)} {pick(_PLACES)}."
    if kind == 2:
        return f"{pick(_QUESTIONS)} {pick(_QUESTION_VERBS)} {pick(_ADJECTIVES)} {pick(_NOUNS)} {pick(_PLACES)}?"
    return f"What a {pick(_ADJECTIVES)} {pick(_NOUNS)}, {pick(_NAMES)}!"


# ---------------------------------------------------------------------------------------------------------------
# Voices

LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2")


@dataclass(frozen=True)
class Voice:
    """A voice of one speech engine: `name` is 'engine:voice' ('flite:kal', 'festival:kal_diphone') or a bare
    espeak-ng name 'language+variant' (e.g. 'en-us+f3', the same as 'espeak:en-us+f3'); rate in words/minute
    (165 is an engine's normal speed), pitch 0..99 (50 normal; engines that cannot change it ignore it)."""

    name: str
    rate: int = 165
    pitch: int = 50

    @property
    def engine(self) -> str:
        """'espeak', 'flite', 'festival', ... (see avatar_desktop.data.voices.ENGINES)."""
        engine, sep, _ = self.name.partition(":")
        return engine if sep else "espeak"

    @property
    def speaker(self) -> str:
        """The voice's name inside its engine ('en-us+f3', 'kal', 'kal_diphone')."""
        engine, sep, rest = self.name.partition(":")
        return rest if sep else engine

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Voice":
        language = LANGUAGES[int(rng.integers(len(LANGUAGES)))]
        variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
        return cls(f"{language}+{variant}", rate=int(rng.integers(135, 196)), pitch=int(rng.integers(25, 76)))


@dataclass(frozen=True)
class Phoneme:
    """One phoneme of an utterance: times in seconds from the start of its audio; `phoneset` names the engine's
    phone set ('espeak' mnemonics or 'cmu' phones, see phones.py)."""

    name: str
    start: float
    end: float
    phoneset: str = "espeak"

    @property
    def viseme(self) -> Viseme:
        return viseme_of(self.name, self.phoneset)


@dataclass(frozen=True)
class Utterance:
    """Synthesized speech: audio float32 (N,) in [-1, 1] at 16 kHz and its phonemes in order."""

    text: str
    voice: Voice
    audio: np.ndarray
    phonemes: tuple[Phoneme, ...]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# ---------------------------------------------------------------------------------------------------------------
# espeak-ng through ctypes

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EVENT_MSG_TERMINATED = 6
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class Synthesizer:
    """The espeak-ng library, initialised once per process (it keeps global state; calls are serialised).

    `speak(text, voice)` -> Utterance. Unknown voices raise SpeechError naming the voice.
    """

    _instance: "Synthesizer | None" = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as error:
            raise SpeechError(
                f"espeak-ng library not found ({error}); install it, e.g. `apt-get install libespeak-ng1 espeak-ng`"
            ) from None
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._native_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if self._native_rate <= 0:
            raise SpeechError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self._blocks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _SynthCallback(self._on_synth)  # kept referenced: the library holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> "Synthesizer":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_synth(self, wav, num_samples: int, events) -> int:
        if num_samples > 0:
            self._blocks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                self._events.append((event.id.string.decode("ascii", "replace"), int(event.sample)))
            index += 1
        return 0

    def check_voice(self, name: str) -> None:
        """Raise SpeechError when espeak-ng has no voice `name` ('language' or 'language+variant')."""
        variant = name.partition("+")[2]
        with self._lock:
            status = self._lib.espeak_SetVoiceByName(name.encode())
        if status != _EE_OK or (variant and variant not in VARIANTS):  # espeak-ng ignores unknown variants
            raise SpeechError(
                f"unknown espeak-ng voice {name!r}: expected 'language+variant' with language one of "
                f"{', '.join(LANGUAGES)} and variant one of {', '.join(VARIANTS)} (see `espeak-ng --voices`)"
            )

    def speak(self, text: str, voice: Voice) -> Utterance:
        """Synthesize `text`; returns 16 kHz audio with phoneme times (seconds)."""
        if not text.strip():
            raise SpeechError("nothing to say: the text is empty")
        self.check_voice(voice.speaker)
        with self._lock:
            self._lib.espeak_SetVoiceByName(voice.speaker.encode())
            self._lib.espeak_SetParameter(_PARAM_RATE, int(voice.rate), 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, int(voice.pitch), 0)
            self._blocks, self._events = [], []
            data = text.encode("utf-8")
            status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            blocks, events = self._blocks, self._events
        if status != _EE_OK or not blocks:
            raise SpeechError(f"espeak-ng could not speak {text!r} with voice {voice.name!r} (status {status})")
        native = np.concatenate(blocks).astype(np.float32) / 32768.0
        duration = len(native) / self._native_rate
        starts = [min(sample / self._native_rate, duration) for _, sample in events]
        ends = starts[1:] + [duration]
        phonemes = tuple(Phoneme(name, s, e) for (name, _), s, e in zip(events, starts, ends) if e > s)
        audio = resample(native, self._native_rate, SAMPLE_RATE)
        return Utterance(text=text, voice=voice, audio=audio, phonemes=phonemes)


def resample(audio: np.ndarray, source_rate: int, target_rate: int, half_taps: int = 16) -> np.ndarray:
    """Band-limited resampling with a Hann-windowed sinc: float32 (N,) at source_rate -> (M,) at target_rate."""
    if source_rate == target_rate or len(audio) == 0:
        return audio.astype(np.float32)
    cutoff = min(1.0, target_rate / source_rate) * 0.95  # fraction of the source Nyquist frequency
    out_length = int(round(len(audio) * target_rate / source_rate))
    positions = np.arange(out_length) * (source_rate / target_rate)  # in source samples
    base = np.floor(positions).astype(np.int64)
    offsets = np.arange(-half_taps + 1, half_taps + 1)
    taps = base[:, None] + offsets[None, :]  # (M, 2 * half_taps)
    distance = positions[:, None] - taps
    window = 0.5 + 0.5 * np.cos(np.pi * np.clip(distance / half_taps, -1.0, 1.0))
    kernel = cutoff * np.sinc(cutoff * distance) * window
    padded = np.concatenate([np.zeros(half_taps), audio.astype(np.float64), np.zeros(half_taps + 1)])
    return (padded[taps + half_taps] * kernel).sum(axis=1).astype(np.float32)


def speak(text: str, voice: Voice) -> Utterance:
    """Synthesize `text` with `voice` through its engine (espeak-ng, flite, festival: avatar_desktop.data.voices)."""
    if voice.engine == "espeak":
        return Synthesizer.shared().speak(text, voice)
    from avatar_desktop.data.voices import get_engine  # the other engines; imported here as they import this module

    return get_engine(voice.engine).speak(text, voice)
