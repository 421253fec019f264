"""Speech engines behind one signature: espeak-ng, flite and festival, each giving 16 kHz audio with exact phoneme
timings from the engine itself.

- `espeak`: espeak-ng's library (speech.Synthesizer): phoneme events with sample positions.
- `flite`: libflite through ctypes (`flite_synth_text`): the whole text is one utterance; its Segment relation holds
  each phone's end time, which the waveform synthesis follows (diphone voices kal/kal16 are modified to the target
  durations; the clustergen voices awb, rms, slt generate frame by frame from them).
- `festival`: `festival --batch` runs a small Scheme script that synthesizes the text, saves the wave and prints the
  Segment relation's names and end times (the diphone voices are modified to those durations; the HTS voice writes
  the durations it generated back into the relation).

Voices are named 'engine:voice' ('flite:kal', 'festival:kal_diphone'); a bare name is an espeak-ng voice
('en-us+f3' = 'espeak:en-us+f3'). `HELDOUT_VOICES` are never used for training. A missing engine or voice raises
SpeechError naming the Debian package to install.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tempfile
import threading
import wave
import zlib
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from avatar_desktop.config import SAMPLE_RATE
from avatar_desktop.data.speech import (
    LANGUAGES,
    VARIANTS,
    Phoneme,
    SpeechError,
    Synthesizer,
    Utterance,
    Voice,
    resample,
)

HELDOUT_VOICES = frozenset({"flite:slt", "festival:cmu_us_slt_arctic_hts"})
"""Voices never drawn for training clips (nor used to tune anything): evaluation only, reported as held out."""

_NORMAL_RATE = 165  # words/minute that an engine's own speed stands for


class Engine(Protocol):
    """A speech engine: its name, the voices it knows, and the same speak() signature for all."""

    name: str

    def voices(self) -> tuple[str, ...]:
        """Voice names inside the engine (without the 'engine:' prefix)."""

    def check_voice(self, speaker: str) -> None:
        """Raise SpeechError (naming the package to install) when the engine or the voice is missing."""

    def speak(self, text: str, voice: Voice) -> Utterance:
        """16 kHz float32 audio in [-1, 1] and the phonemes with their times (seconds)."""


def _pcm_to_utterance(text: str, voice: Voice, samples: np.ndarray, rate: int, segments: list[tuple[str, float]],
                      phoneset: str) -> Utterance:
    """int16 samples at `rate` and (name, end seconds) segments in order -> Utterance at 16 kHz."""
    native = samples.astype(np.float32) / 32768.0
    duration = len(native) / rate
    phonemes, start = [], 0.0
    for name, end in segments:
        end = min(end, duration)
        if end > start:
            phonemes.append(Phoneme(name, start, end, phoneset))
            start = end
    if not len(native) or not phonemes:
        raise SpeechError(f"{voice.engine} could not speak {text!r} with voice {voice.name!r}")
    audio = np.clip(resample(native, rate, SAMPLE_RATE), -1.0, 1.0)
    return Utterance(text=text, voice=voice, audio=audio, phonemes=tuple(phonemes))


class EspeakEngine:
    """espeak-ng (speech.Synthesizer). Debian: espeak-ng, libespeak-ng1."""

    name = "espeak"

    def voices(self) -> tuple[str, ...]:
        return tuple(f"{language}+{variant}" for language in LANGUAGES for variant in VARIANTS)

    def check_voice(self, speaker: str) -> None:
        Synthesizer.shared().check_voice(speaker)

    def speak(self, text: str, voice: Voice) -> Utterance:
        return Synthesizer.shared().speak(text, voice)


# ---------------------------------------------------------------------------------------------------------------
# flite through ctypes

FLITE_VOICES = {"kal": "cmu_us_kal", "kal16": "cmu_us_kal16", "awb": "cmu_us_awb", "rms": "cmu_us_rms",
                "slt": "cmu_us_slt"}
"""flite voice -> its library module (libflite_<module>.so.1, Debian libflite1, installed with `flite`)."""


class _CstWave(ctypes.Structure):
    """cst_wave from cst_wave.h."""

    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
                ("num_channels", ctypes.c_int), ("samples", ctypes.POINTER(ctypes.c_short))]


class _CstVoice(ctypes.Structure):
    """The head of cst_voice from cst_voice.h."""

    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p), ("ffunctions", ctypes.c_void_p)]


class FliteEngine:
    """flite 2.x (libflite1) through ctypes; voices registered on first use. Calls are serialised.

    Rate sets `duration_stretch` (165 / rate); pitch scales `int_f0_target_mean` by 2 ** ((pitch - 50) / 100).
    The clustergen voices' excitation noise comes from libc's rand(), seeded from the text and voice before each
    utterance, so the same utterance is the same samples whatever was spoken before it.
    """

    name = "flite"
    library = "libflite.so.1"

    def __init__(self) -> None:
        try:
            self._lib = ctypes.CDLL(self.library)
        except OSError as error:
            raise SpeechError(f"flite is not installed ({error}): `apt-get install flite`") from None
        lib = self._lib
        lib.flite_init.restype = ctypes.c_int
        lib.flite_synth_text.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        lib.flite_synth_text.restype = ctypes.c_void_p
        lib.utt_wave.argtypes = [ctypes.c_void_p]
        lib.utt_wave.restype = ctypes.POINTER(_CstWave)
        lib.utt_relation.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.utt_relation.restype = ctypes.c_void_p
        lib.relation_head.argtypes = [ctypes.c_void_p]
        lib.relation_head.restype = ctypes.c_void_p
        lib.item_next.argtypes = [ctypes.c_void_p]
        lib.item_next.restype = ctypes.c_void_p
        lib.item_feat_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.item_feat_string.restype = ctypes.c_char_p
        lib.item_feat_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.item_feat_float.restype = ctypes.c_float
        lib.delete_utterance.argtypes = [ctypes.c_void_p]
        lib.delete_utterance.restype = None
        lib.flite_feat_set_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_float]
        lib.flite_feat_set_float.restype = None
        lib.flite_get_param_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_float]
        lib.flite_get_param_float.restype = ctypes.c_float
        lib.flite_init()
        self._libc = ctypes.CDLL(None)
        self._libc.srand.argtypes = [ctypes.c_uint]
        self._voices: dict[str, tuple[ctypes.CDLL, int, float]] = {}  # name -> (library, cst_voice *, f0 mean)
        self._lock = threading.Lock()

    def voices(self) -> tuple[str, ...]:
        return tuple(FLITE_VOICES)

    def _voice(self, speaker: str) -> tuple[int, float]:
        if speaker not in FLITE_VOICES:
            raise SpeechError(f"unknown flite voice {speaker!r}: expected one of {', '.join(FLITE_VOICES)}")
        if speaker not in self._voices:
            module = FLITE_VOICES[speaker]
            try:
                library = ctypes.CDLL(f"libflite_{module}.so.1")
            except OSError as error:
                raise SpeechError(f"flite voice {speaker!r} is not installed ({error}): `apt-get install flite`"
                                  ) from None
            register = getattr(library, f"register_{module}")
            register.argtypes = [ctypes.c_char_p]
            register.restype = ctypes.c_void_p
            pointer = register(None)
            if not pointer:
                raise SpeechError(f"flite could not load its voice {speaker!r}: reinstall `apt-get install flite`")
            features = _CstVoice.from_address(pointer).features
            f0_mean = float(self._lib.flite_get_param_float(features, b"int_f0_target_mean", 100.0))
            self._voices[speaker] = (library, pointer, f0_mean)
        _, pointer, f0_mean = self._voices[speaker]
        return pointer, f0_mean

    def check_voice(self, speaker: str) -> None:
        with self._lock:
            self._voice(speaker)

    def speak(self, text: str, voice: Voice) -> Utterance:
        if not text.strip():
            raise SpeechError("nothing to say: the text is empty")
        with self._lock:
            pointer, f0_mean = self._voice(voice.speaker)
            features = _CstVoice.from_address(pointer).features
            self._lib.flite_feat_set_float(features, b"duration_stretch", _NORMAL_RATE / max(1, voice.rate))
            self._lib.flite_feat_set_float(features, b"int_f0_target_mean", f0_mean * 2 ** ((voice.pitch - 50) / 100))
            self._libc.srand(zlib.crc32(f"{voice.name}|{voice.rate}|{voice.pitch}|{text}".encode("utf-8")))
            utt = self._lib.flite_synth_text(text.encode("utf-8"), pointer)
            if not utt:
                raise SpeechError(f"flite could not speak {text!r} with voice {voice.name!r}")
            try:
                wave_struct = self._lib.utt_wave(utt).contents
                samples = np.ctypeslib.as_array(wave_struct.samples, (wave_struct.num_samples,)).copy()
                rate = int(wave_struct.sample_rate)
                segments = []
                item = self._lib.relation_head(self._lib.utt_relation(utt, b"Segment"))
                while item:
                    segments.append((self._lib.item_feat_string(item, b"name").decode("ascii", "replace"),
                                     float(self._lib.item_feat_float(item, b"end"))))
                    item = self._lib.item_next(item)
            finally:
                self._lib.delete_utterance(utt)
        return _pcm_to_utterance(text, voice, samples, rate, segments, "cmu")


# ---------------------------------------------------------------------------------------------------------------
# festival through its batch mode

FESTIVAL_VOICES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                   "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}
"""festival voice -> the Debian package holding it."""

FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"), Path("/usr/local/share/festival/voices"))

_SCRIPT = """(voice_{voice})
{settings}
(set! utt (utt.synth (Utterance Text "{text}")))
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "SEG\\t%s\\t%f\\n" (item.name s) (item.feat s "end"))) (utt.relation.items utt 'Segment))
"""


class FestivalEngine:
    """festival (`festival --batch`), one process per utterance.

    Rate: the diphone voices' Duration_Stretch (1.1 x 165 / rate, 1.1 being their own setting), the HTS voice's
    speed (hts_engine -r); pitch: the diphone voices' target F0 mean (x 2 ** ((pitch - 50) / 100)); the HTS voice
    keeps its own pitch (festival passes no F0 shift to hts_engine).
    """

    name = "festival"

    def __init__(self, program: str = "festival", voice_dirs: tuple[Path, ...] = FESTIVAL_VOICE_DIRS) -> None:
        self._program = shutil.which(program)
        if self._program is None:
            raise SpeechError(f"festival is not installed ({program!r} not found): `apt-get install festival`")
        self._voice_dirs = voice_dirs

    def voices(self) -> tuple[str, ...]:
        installed = {p.name for root in self._voice_dirs if root.is_dir() for p in root.glob("*/*") if p.is_dir()}
        return tuple(sorted(installed | set(FESTIVAL_VOICES)))

    def check_voice(self, speaker: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", speaker):
            raise SpeechError(f"unknown festival voice {speaker!r}: expected one of {', '.join(FESTIVAL_VOICES)}")
        if any((root / language / speaker).is_dir() for root in self._voice_dirs if root.is_dir()
               for language in (p.name for p in root.iterdir())):
            return
        if speaker in FESTIVAL_VOICES:
            raise SpeechError(f"festival voice {speaker!r} is not installed: "
                              f"`apt-get install {FESTIVAL_VOICES[speaker]}`")
        raise SpeechError(f"unknown festival voice {speaker!r}: expected one of {', '.join(FESTIVAL_VOICES)} "
                          f"(Debian packages {', '.join(FESTIVAL_VOICES.values())})")

    def speak(self, text: str, voice: Voice) -> Utterance:
        if not text.strip():
            raise SpeechError("nothing to say: the text is empty")
        self.check_voice(voice.speaker)
        stretch = _NORMAL_RATE / max(1, voice.rate)
        if voice.speaker.endswith("_hts"):
            settings = f"(set! hts_engine_params (append hts_engine_params '((\"-r\" {1 / stretch:.4f}))))"
        else:
            settings = (f"(Parameter.set 'Duration_Stretch {1.1 * stretch:.4f})\n"
                        f"(set! int_lr_params (cons (list 'target_f0_mean (* {2 ** ((voice.pitch - 50) / 100):.4f} "
                        f"(car (cdr (assoc 'target_f0_mean int_lr_params))))) int_lr_params))")
        escaped = " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"')
        with tempfile.TemporaryDirectory(prefix="festival-") as folder:
            wav_path = Path(folder) / "speech.wav"
            script = Path(folder) / "speak.scm"
            script.write_text(_SCRIPT.format(voice=voice.speaker, settings=settings, text=escaped, wav=wav_path))
            result = subprocess.run([self._program, "--batch", str(script)], capture_output=True, text=True,
                                    timeout=120)
            segments = [(parts[1], float(parts[2])) for line in result.stdout.splitlines()
                        if len(parts := line.split("\t")) == 3 and parts[0] == "SEG"]
            if not wav_path.is_file() or not segments:
                detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
                raise SpeechError(f"festival could not speak {text!r} with voice {voice.name!r}: {' '.join(detail)}")
            with wave.open(str(wav_path), "rb") as reader:
                rate, channels = reader.getframerate(), reader.getnchannels()
                samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1)
        return _pcm_to_utterance(text, voice, samples, rate, segments, "cmu")


# ---------------------------------------------------------------------------------------------------------------
# Registry

ENGINES: dict[str, Callable[[], Engine]] = {"espeak": EspeakEngine, "flite": FliteEngine, "festival": FestivalEngine}
"""Engine name -> its constructor (one instance per process, see get_engine)."""

ENGINE_PACKAGES = {"espeak": "espeak-ng libespeak-ng1", "flite": "flite", "festival": "festival"}

_instances: dict[str, Engine] = {}
_instances_lock = threading.Lock()


def get_engine(name: str) -> Engine:
    """The engine `name` ('espeak', 'flite', 'festival'), made once per process."""
    if name not in ENGINES:
        raise SpeechError(f"unknown speech engine {name!r}: expected one of {', '.join(ENGINES)} "
                          f"(voices are 'engine:voice', e.g. flite:kal, or a bare espeak-ng voice such as en-us+f3)")
    with _instances_lock:
        if name not in _instances:
            _instances[name] = ENGINES[name]()
        return _instances[name]


def canonical_voice_name(name: str) -> str:
    """'espeak:en-us+f3' -> 'en-us+f3' (espeak voices keep their bare names); others unchanged, stripped."""
    name = name.strip()
    engine, sep, speaker = name.partition(":")
    return speaker if sep and engine == "espeak" else name


def check_voice(name: str) -> str:
    """Raise SpeechError when the engine or voice `name` is missing (naming the package to install); returns the
    canonical name."""
    name = canonical_voice_name(name)
    voice = Voice(name)
    get_engine(voice.engine).check_voice(voice.speaker)
    return name


def is_heldout_voice(name: str) -> bool:
    """True for the voices that are never trained or tuned on (HELDOUT_VOICES)."""
    return canonical_voice_name(name) in HELDOUT_VOICES
