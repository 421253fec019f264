"""Shared fixtures: tiny seeded models on CPU (diffusers' get_dummy_components idea), portraits and audio files."""

from __future__ import annotations

import csv
import os
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_desktop.config import State
from avatar_desktop.engine.bench import benchmark_audio, benchmark_portrait
from avatar_desktop.models.presets import build_model, tiny_test_config
from avatar_desktop.models.store import save_model


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """The app's user cache (files.user_cache_folder(): int8 timing answers, TensorRT engines) in a folder of the
    test session's, spawned workers included, instead of the user's."""
    folder = tmp_path_factory.mktemp("cache-home")
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder / "avatar-desktop"
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture
def tiny_model():
    """A fresh tiny model (64x64 video, reference attention on) with seeded random weights."""
    return build_model(tiny_test_config(), seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny seeded model saved as a model folder."""
    return save_model(build_model(tiny_test_config(), seed=0), tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def portrait() -> np.ndarray:
    return benchmark_portrait(160)


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    """Write float samples in [-1, 1], shape (N,) or (N, channels), as 16-bit PCM."""
    data = np.clip(samples, -1, 1)
    if data.ndim == 1 and channels > 1:
        data = np.repeat(data[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((data * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """1.0 s of speech-like audio at 16 kHz mono."""
    return write_wav(tmp_path_factory.mktemp("audio") / "speech.wav", benchmark_audio(1.0), 16000)


def write_recipe(folder: Path, name: str, text: str) -> Path:
    """A training recipe `folder/name.toml` holding `text`."""
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def read_losses(run: Path) -> list[float]:
    """The `loss` column of a training run's loss.csv."""
    with (run / "loss.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def stream_chunks(generator, seconds: float, labels=(State.SPEAKING,)) -> list:
    """Every chunk of `seconds` of speech handed to a prepared latent generator at once, the i-th step() with
    labels[i] (past the end, the last label), until the end of the stream."""
    generator.push_audio(benchmark_audio(seconds))
    chunks = []
    while (chunk := generator.step(None, labels[min(len(chunks), len(labels) - 1)], end_of_stream=True)) is not None:
        chunks.append(chunk)
    return chunks


def stream_overlapped(generator, seconds: float) -> tuple[list, list[int], set[str]]:
    """stream_chunks (speaking) of a generator with overlap_decode, and for each chunk the frames already queued past
    it when it came out, and the names of the threads its decodes ran on."""
    decode, threads = generator._decode, set()
    generator._decode = lambda *args: threads.add(threading.current_thread().name) or decode(*args)
    generator.push_audio(benchmark_audio(seconds))
    chunks, queued_ahead = [], []
    while (chunk := generator.step(None, end_of_stream=True)) is not None:
        chunks.append(chunk)
        queued_ahead.append(generator.frame_index - (chunk.start_frame + len(chunk.frames)))
    return chunks, queued_ahead, threads


def stream_frames(generator, audio: np.ndarray) -> np.ndarray:
    """Every frame of `audio` streamed through a prepared generator (speaking), uint8 (T, H, W, 3)."""
    generator.push_audio(audio)
    chunks = []
    while (chunk := generator.step(None, State.SPEAKING, end_of_stream=True)) is not None:
        chunks.append(chunk.frames)
    return np.concatenate(chunks)
