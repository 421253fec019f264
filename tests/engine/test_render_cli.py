"""`avatar-desktop render` end to end on a tiny seeded model, and its handling of bad input."""

import json

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from avatar_desktop.cli import main
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.portrait import MAX_DECODED_SIDE, load_portrait
from avatar_desktop.errors import InputFileError
from avatar_desktop.media import Mp4Writer, decode_audio
from tests.conftest import write_wav


@pytest.fixture(scope="module")
def portrait_png(tmp_path_factory, portrait):
    path = tmp_path_factory.mktemp("img") / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    return path


def _count_frames(path) -> tuple[int, float]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), meta["fps"]


def _render(tmp_path, portrait, audio, model_dir, *extra):
    out = tmp_path / "out.mp4"
    code = main(["render", "--portrait", str(portrait), "--audio", str(audio), "--out", str(out), "--model", str(model_dir), *extra])
    return code, out


def test_render_writes_a_playable_mp4_with_matching_frames_and_audio(tmp_path, portrait_png, tiny_model_dir):
    audio = write_wav(tmp_path / "a.wav", benchmark_audio(1.3), 16000)
    code, out = _render(tmp_path, portrait_png, audio, tiny_model_dir, "--expression", "smile=0.5", "--seed", "3")
    assert code == 0
    frames, fps = _count_frames(out)
    assert fps == 25 and abs(frames - round(1.3 * 25)) <= 1
    assert abs(len(decode_audio(out)) / 16000 - 1.3) < 0.05  # AAC adds at most a frame of padding
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "out.mp4"]


@pytest.mark.parametrize("rate, channels", [(8000, 1), (22050, 1), (44100, 2), (48000, 2)])
def test_audio_of_any_rate_and_channel_count_is_resampled(tmp_path, rate, channels):
    seconds = 0.5
    tone = np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 0.5
    decoded = decode_audio(write_wav(tmp_path / "a.wav", tone, rate, channels))
    assert abs(len(decoded) - seconds * 16000) <= 2
    spectrum = np.abs(np.fft.rfft(decoded))
    assert abs(np.argmax(spectrum) * 16000 / len(decoded) - 440) < 4  # the same tone after resampling


def test_render_accepts_stereo_44k(tmp_path, portrait_png, tiny_model_dir):
    audio = write_wav(tmp_path / "a.wav", benchmark_audio(0.6)[::1], 44100, channels=2)
    code, out = _render(tmp_path, portrait_png, audio, tiny_model_dir, "--state", "listening")
    assert code == 0 and abs(_count_frames(out)[0] - round(0.6 * 16000 / 44100 * 25)) <= 1


def test_empty_audio_is_a_clear_error(tmp_path, portrait_png, tiny_model_dir, capsys):
    audio = write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    code, out = _render(tmp_path, portrait_png, audio, tiny_model_dir)
    assert code == 2 and "holds no samples" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge", "--random-weights"], "unknown preset 'huge': available presets are tiny-cpu, llia-384, llia-512, tiny-test"),
        (["--model", "nonexistent-model"], "no model named 'nonexistent-model' (available:"),
        (["--preset", "tiny-cpu"], "add --random-weights"),
        (["--state", "sleeping"], "unknown state 'sleeping'"),
        (["--expression", "grin=0.5"], "bad expression item 'grin=0.5'"),
    ],
)
def test_bad_arguments_say_what_to_do(tmp_path, portrait_png, speech_wav, tiny_model_dir, capsys, args, message):
    out = tmp_path / "o.mp4"
    model = [] if any(a in args for a in ("--preset", "--model")) else ["--model", str(tiny_model_dir)]
    code = main(["render", "--portrait", str(portrait_png), "--audio", str(speech_wav), "--out", str(out), *model, *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_missing_and_unreadable_files(tmp_path, portrait_png, speech_wav, tiny_model_dir, capsys):
    (tmp_path / "not-an-image.png").write_text("hello")
    for portrait, audio, message in [
        (tmp_path / "missing.png", speech_wav, "does not exist"),
        (tmp_path / "not-an-image.png", speech_wav, "is not a readable image"),
        (portrait_png, tmp_path / "missing.wav", "does not exist"),
        (portrait_png, tmp_path / "not-an-image.png", "could not be decoded"),
    ]:
        code, out = _render(tmp_path, portrait, audio, tiny_model_dir)
        assert code == 2 and message in capsys.readouterr().err
        assert not out.exists()


def test_portrait_formats(tmp_path):
    gray = np.tile(np.arange(200, dtype=np.uint8)[None], (150, 1))
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    assert load_portrait(tmp_path / "gray.png").shape == (150, 200, 3)

    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[:50, :, :3] = (0, 0, 255)  # BGR red, opaque top half
    rgba[:50, :, 3] = 255
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    image = load_portrait(tmp_path / "rgba.png")
    assert tuple(image[10, 10]) == (255, 0, 0) and tuple(image[90, 90]) == (255, 255, 255)

    deep = (np.ones((80, 80, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert load_portrait(tmp_path / "deep.png").max() == 255

    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(InputFileError, match="40x32 pixels; a portrait needs at least 64x64"):
        load_portrait(tmp_path / "tiny.png")

    cv2.imwrite(str(tmp_path / "huge.jpg"), np.zeros((5000, 6000, 3), np.uint8))
    assert load_portrait(tmp_path / "huge.jpg").shape == (round(5000 * MAX_DECODED_SIDE / 6000), MAX_DECODED_SIDE, 3)


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_leaves_no_file(tmp_path, interruption):
    with pytest.raises(interruption):
        with Mp4Writer(tmp_path / "v.mp4", size=(64, 64), fps=25) as writer:
            writer.write(np.zeros((5, 64, 64, 3), np.uint8))
            raise interruption()
    assert list(tmp_path.iterdir()) == []


def test_bench_json_reports_every_field(tiny_model_dir, capsys):
    assert main(["bench", "--model", str(tiny_model_dir), "--seconds", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("preset", "device", "dtype", "resolution", "steps", "chunk_plan", "fps", "first_frame_ms",
                "p50_frame_ms", "p99_frame_ms", "peak_mem_mb", "stages_ms_per_frame"):
        assert key in result, key
    assert result["frames"] == 50 and result["fps"] > 0 and result["first_frame_ms"] > 0
    assert set(result["stages_ms_per_frame"]) == {"audio", "denoise", "decode"}


def test_bench_naive_uses_the_teacher_without_caches(tiny_model_dir, capsys):
    assert main(["bench", "--model", str(tiny_model_dir), "--seconds", "1", "--naive", "--steps", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sampler"] == "heun" and result["steps"] == 3 and not result["cached_reference"]
    assert result["denoiser_evaluations_per_chunk"] == 5
    assert result["dtype"] == "float32" and result["chunk_plan"]["steady"] == 4


def test_bench_holds_the_sliders_it_is_given(tiny_model_dir, capsys):
    assert main(["bench", "--model", str(tiny_model_dir), "--seconds", "1", "--expression", "head_yaw=0.5",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["expression"] == {"head_yaw": 0.5}
    assert main(["bench", "--model", str(tiny_model_dir), "--expression", "nose=1"]) == 2
    assert "--expression: bad expression item 'nose=1'" in capsys.readouterr().err


def test_bench_on_cuda_without_a_gpu_says_so(capsys, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(["bench", "--model", str(tiny_model_dir), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def _float_wav(path, samples: np.ndarray, rate: int = 16000):
    """A 32-bit float WAV (format 3), which may hold NaN and infinity."""
    data = samples.astype("<f4").tobytes()
    header = (b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
              + (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
              + (rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
              + b"data" + len(data).to_bytes(4, "little"))
    path.write_bytes(header + data)
    return path


def test_audio_with_nan_samples_is_refused_and_says_how_many(tmp_path, portrait_png, tiny_model_dir, capsys):
    samples = benchmark_audio(1.0)
    samples[100:110] = np.nan
    samples[5000] = np.inf
    audio = _float_wav(tmp_path / "broken.wav", samples)
    code, out = _render(tmp_path, portrait_png, audio, tiny_model_dir)
    assert code == 2 and not out.exists()
    message = capsys.readouterr().err
    assert f"audio file {audio} holds" in message and "not numbers (NaN or infinity)" in message
    assert _float_wav(tmp_path / "fine.wav", benchmark_audio(1.0)) and decode_audio(tmp_path / "fine.wav").size == 16000


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--seconds", "nan"], "--seconds must be at least 1, got nan"),
    (["--threads", "-2"], "--threads must be at least 1, got -2"),
    (["--camera-size", "wide"], "--camera-size 'wide': expected WIDTHxHEIGHT"),
])
def test_bench_refuses_bad_numbers(flags, message, tiny_model_dir, tmp_path, portrait_png, capsys):
    extra = ["--portrait", str(portrait_png)] if "--camera-size" in flags else []
    assert main(["bench", "--model", str(tiny_model_dir), *extra, *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_file_name_cannot_select_an_ffmpeg_protocol(tmp_path, monkeypatch):
    """'data:speech.wav' is a relative file name here, not ffmpeg's data: protocol (media.ffmpeg_input)."""
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "data:speech.wav", benchmark_audio(0.5), 16000)
    assert decode_audio("data:speech.wav").size == 8000
