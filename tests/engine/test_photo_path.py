"""The photo path through the engine and the commands: PhotoStreamingGenerator (a tiny seeded motion model, the real
face mesh and renderer on the astronaut), the path choice of ModelSpec, `render` and `live` with photos."""

from __future__ import annotations

import pickle
import shutil

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from skimage import data as skimage_data

from avatar_desktop.cli import main
from avatar_desktop.config import EngineConfig, State
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.model_spec import ModelSpec, open_generator
from avatar_desktop.engine.photo import PHOTO_PATH, PhotoStreamingGenerator
from avatar_desktop.engine.streaming import LATENT_PATH, StreamingGenerator
from avatar_desktop.errors import AvatarError, CheckpointError
from avatar_desktop.face import NoFaceError
from avatar_desktop.models.folders import DEFAULT_MOTION_MODEL, resolve_model
from avatar_desktop.models.motion import build_motion_model
from avatar_desktop.models.store import save_motion_model
from tests.conftest import write_wav


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()  # uint8 (512, 512, 3) RGB, the face about 94 px wide


@pytest.fixture(scope="module")
def motion_model_dir(tmp_path_factory):
    return save_motion_model(build_motion_model(seed=0), tmp_path_factory.mktemp("models") / "motion-tiny")


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    cv2.imwrite(str(path), astronaut[:, :, ::-1])
    return path


def _stream(generator, audio: np.ndarray, blocks: int = 23) -> list:
    """Feed `audio` in `blocks` pieces as a live session would, then end the stream; every chunk made."""
    chunks = []
    for piece in np.array_split(audio, blocks):
        while (chunk := generator.step(piece, State.SPEAKING)) is not None:
            chunks.append(chunk)
            piece = None
    while (chunk := generator.step(None, State.SPEAKING, end_of_stream=True)) is not None:
        chunks.append(chunk)
    return chunks


@pytest.mark.parametrize("fps", [25, 30, 15])
def test_frames_come_at_the_asked_rate_and_size(astronaut, fps):
    generator = PhotoStreamingGenerator(build_motion_model(seed=0), EngineConfig(), frame_limit=(640, 360), fps=fps)
    generator.prepare(astronaut, warmup=False)
    assert generator.path == PHOTO_PATH and generator.frame_size == (640, 360)
    assert generator.renderer.frame_size == (360, 360)  # the square photo fitted in the middle
    chunks = _stream(generator, benchmark_audio(1.6))
    timestamps = np.concatenate([chunk.timestamps for chunk in chunks])
    assert len(timestamps) == round(1.6 * fps)
    np.testing.assert_allclose(timestamps, np.arange(len(timestamps)) / fps)
    assert all(chunk.frames.shape[1:] == (360, 640, 3) and chunk.frames.dtype == np.uint8 for chunk in chunks)
    frame = chunks[-1].frames[-1]
    sides = np.concatenate([frame[:, :140], frame[:, 500:]], axis=1).astype(float)  # the blurred, darkened photo
    assert 5 < sides.mean() < 0.6 * generator.renderer.neutral.mean() and sides.std() > 2
    middle = frame[:, 140:500]
    assert np.abs(middle.astype(int) - generator.renderer.neutral).mean() < 12  # the photo, its face moved


def test_at_the_motion_rate_the_frames_show_the_motion_codes_themselves(astronaut):
    """Resampling to the motion model's own rate is the identity: each frame renders its motion frame's code."""
    model = build_motion_model(seed=0)
    generator = PhotoStreamingGenerator(model, EngineConfig(seed=4), frame_limit=(320, 320))
    generator.prepare(astronaut, warmup=False)
    frames = np.concatenate([chunk.frames for chunk in _stream(generator, benchmark_audio(1.0))])

    from avatar_desktop.engine.motion_stream import MotionStreamer

    motion = MotionStreamer(model, EngineConfig(seed=4))
    motion.prepare(warmup=False)
    codes = np.concatenate([chunk.codes for chunk in _stream(motion, benchmark_audio(1.0))])
    assert len(codes) == len(frames) == 25
    for index in (0, 7, 24):
        np.testing.assert_array_equal(frames[index], generator.renderer.render(codes[index]))


def test_a_photo_without_a_face_is_refused_and_the_old_one_kept(astronaut):
    generator = PhotoStreamingGenerator(build_motion_model(seed=0), EngineConfig(), frame_limit=(320, 320))
    generator.prepare(astronaut, warmup=False)
    renderer = generator.renderer
    landscape = np.tile(np.linspace(0, 255, 400, dtype=np.uint8)[:, None, None], (1, 600, 3))
    with pytest.raises(NoFaceError, match="no face found in sky.png: use a photo with the face visible"):
        generator.prepare(landscape, source="sky.png", warmup=False)
    assert generator.renderer is renderer
    assert _stream(generator, benchmark_audio(0.4))[0].frames.shape[1:3] == (320, 320)


def test_prepare_takes_the_portrait_as_load_portrait_made_it_and_refuses_other_arrays(astronaut):
    """Normalising is load_portrait's (once); prepare() uses the RGB array as it is and says what it got instead."""
    generator = PhotoStreamingGenerator(build_motion_model(seed=0), EngineConfig(), frame_limit=(320, 320))
    generator.prepare(astronaut, warmup=False)
    renderer = generator.renderer
    grey = astronaut[:, :, 0]
    with pytest.raises(ValueError, match=r"grey.png: expected a uint8 \(H, W, 3\) RGB array .*got uint8 \(512, 512\)"):
        generator.prepare(grey, source="grey.png", warmup=False)
    assert generator.renderer is renderer


@pytest.mark.slow
def test_model_spec_picks_the_path(astronaut, motion_model_dir, tiny_model_dir):
    photo = open_generator(ModelSpec(str(motion_model_dir)), astronaut, EngineConfig())
    assert isinstance(photo, PhotoStreamingGenerator) and photo.frame_size == (512, 512)  # the photo's own size
    latent = open_generator(ModelSpec(str(tiny_model_dir)), astronaut, EngineConfig())
    assert isinstance(latent, StreamingGenerator) and latent.path == LATENT_PATH
    assert ModelSpec(None).kind == "motion" and ModelSpec(str(tiny_model_dir)).kind == "latent"


def test_a_model_spec_is_checked_once_when_made(tmp_path, tiny_model_dir, motion_model_dir):
    """Made, a spec knows its kind, folder and config; a bad one is refused then, saying what to do."""
    latent, motion = ModelSpec(str(tiny_model_dir)), ModelSpec(str(motion_model_dir))
    assert (latent.kind, latent.folder, latent.config.preset) == ("latent", tiny_model_dir, "tiny-test")
    assert (motion.kind, motion.folder) == ("motion", motion_model_dir)
    automatic = ModelSpec(None)  # the default motion model, found on the model search path
    assert (automatic.kind, automatic.folder) == ("motion", resolve_model(DEFAULT_MOTION_MODEL))
    preset = ModelSpec("tiny-cpu", random_weights=True)
    assert (preset.kind, preset.folder, preset.config.preset) == ("latent", None, "tiny-cpu")
    with pytest.raises(AvatarError, match="unknown preset 'huge': available presets are tiny-cpu"):
        ModelSpec("huge", random_weights=True)
    with pytest.raises(CheckpointError, match="no model named 'nonexistent-model' \\(available:"):
        ModelSpec("nonexistent-model")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.json").write_text("{ not JSON")
    with pytest.raises(CheckpointError, match="model.json is not valid JSON"):
        ModelSpec(str(damaged))


def test_the_worker_trusts_the_spec_it_is_sent(tmp_path, tiny_model_dir, portrait):
    """What crosses to the worker (pickled) is the checked spec; loading it reads the weights, not model.json."""
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    spec = pickle.loads(pickle.dumps(ModelSpec(str(folder))))
    assert spec == ModelSpec(str(folder)) and spec.config == ModelSpec(str(folder)).config
    (folder / "model.json").unlink()  # a second look would fail now
    generator = open_generator(spec, portrait, EngineConfig())
    assert generator.path == LATENT_PATH and generator.resolution == spec.config.autoencoder.image_size


def test_render_of_a_photo_keeps_its_resolution(tmp_path, astronaut_png, motion_model_dir, capsys):
    audio = write_wav(tmp_path / "speech.wav", benchmark_audio(1.2), 16000)
    out = tmp_path / "astronaut.mp4"
    assert main(["render", "--portrait", str(astronaut_png), "--audio", str(audio), "--out", str(out),
                 "--model", str(motion_model_dir)]) == 0
    assert "render: photo renderer, 512x512 px" in capsys.readouterr().err
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert meta["size"] == (512, 512) and sum(1 for _ in reader) == 30


def test_render_and_live_say_when_there_is_no_face(tmp_path, motion_model_dir, capsys):
    sky = tmp_path / "sky.png"
    cv2.imwrite(str(sky), np.tile(np.linspace(40, 250, 300, dtype=np.uint8)[:, None, None], (1, 400, 3)))
    audio = write_wav(tmp_path / "speech.wav", benchmark_audio(1.0), 16000)
    assert main(["render", "--portrait", str(sky), "--audio", str(audio), "--out", str(tmp_path / "o.mp4"),
                 "--model", str(motion_model_dir)]) == 2
    assert f"no face found in {sky}: use a photo with the face visible" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()
    assert main(["live", "--portrait", str(sky), "--camera", "off", "--seconds", "1"]) == 2
    assert f"no face found in {sky}" in capsys.readouterr().err


def test_render_says_which_face_of_several_it_animates(tmp_path, astronaut, motion_model_dir, capsys):
    pair = tmp_path / "pair.png"
    cv2.imwrite(str(pair), np.concatenate([astronaut, astronaut[:, ::-1]], 1)[:, :, ::-1])
    audio = write_wav(tmp_path / "speech.wav", benchmark_audio(0.5), 16000)
    assert main(["render", "--portrait", str(pair), "--audio", str(audio), "--out", str(tmp_path / "pair.mp4"),
                 "--model", str(motion_model_dir)]) == 0
    assert f"2 faces in {pair}: the largest is animated" in capsys.readouterr().err
