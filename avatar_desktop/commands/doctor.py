"""`avatar-desktop doctor`: what this machine offers a live session, what is missing, and how to fix it."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from avatar_desktop.commands.registry import command


def audio_report() -> dict:
    """Input and output devices as PortAudio sees them, or why it cannot."""
    try:
        import sounddevice as sd

        devices = sd.query_devices()
        default_in, default_out = sd.default.device
    except (OSError, ImportError) as error:  # libportaudio missing
        fix = "install PortAudio (Debian/Ubuntu: sudo apt install libportaudio2)"
        return {"ok": False, "error": str(error), "fix": fix, "inputs": [], "outputs": []}
    entries = []
    for index, device in enumerate(devices):
        entries.append({
            "index": index, "name": device["name"], "inputs": device["max_input_channels"],
            "outputs": device["max_output_channels"], "rate": device["default_samplerate"],
            "default_input": index == default_in, "default_output": index == default_out,
        })
    inputs = [e for e in entries if e["inputs"] > 0]
    outputs = [e for e in entries if e["outputs"] > 0]
    fix = None if inputs else "no microphone found: plug one in, or start the sound server (PulseAudio/PipeWire)"
    return {"ok": bool(inputs), "inputs": inputs, "outputs": outputs, "fix": fix}


def camera_report() -> dict:
    """Each pyvirtualcam backend: usable, or the reason it is not."""
    import pyvirtualcam

    from avatar_desktop.output.camera import driver_advice

    backends = []
    for name in list(pyvirtualcam.camera.BACKENDS):
        try:
            with pyvirtualcam.Camera(1280, 720, 25, backend=name) as camera:
                backends.append({"backend": name, "ok": True, "device": camera.device})
        except Exception as error:  # each backend says why in its own words
            backends.append({"backend": name, "ok": False, "reason": str(error).strip()})
    ok = any(b["ok"] for b in backends)
    return {"ok": ok, "backends": backends, "fix": None if ok else driver_advice()}


def gpu_report() -> dict:
    try:
        import torch
    except ImportError:  # the installed app: ONNX models on the CPU
        return {"ok": True, "cuda": False, "note": "this install runs its models on the CPU with onnxruntime (no torch); "
                                                   "the GPU presets need a source install (`pip install .[train]`)"}
    if not torch.cuda.is_available():
        return {"ok": True, "cuda": False, "note": "no CUDA GPU: the CPU model (tiny-cpu) runs on the CPU"}
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)})
    return {"ok": True, "cuda": True, "gpus": gpus}


def model_report() -> dict:
    from avatar_desktop.models.folders import list_models, model_search_path

    models = {name: str(path) for name, path in list_models().items()}
    fix = None
    if not models:
        folders = ", ".join(str(p) for p in model_search_path())
        fix = f"no model installed (searched {folders}); use --preset tiny-cpu --random-weights to try the pipeline"
    return {"ok": bool(models), "models": models, "fix": fix}


def photo_report() -> dict:
    """The photo path: the face models (LiteRT) and the default motion model."""
    from avatar_desktop.errors import AvatarError
    from avatar_desktop.face.tflite import model_dir
    from avatar_desktop.models.folders import DEFAULT_MOTION_MODEL, read_motion_model_config, resolve_model

    try:
        faces = str(model_dir())
        motion = str(resolve_model(DEFAULT_MOTION_MODEL))
        read_motion_model_config(motion)
    except AvatarError as error:
        return {"ok": False, "fix": f"the photo renderer cannot run: {error}"}
    return {"ok": True, "face_models": faces, "motion_model": motion, "fix": None}


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _run(args: argparse.Namespace) -> int:
    report = {
        "system": f"{platform.system()} {platform.release()} ({platform.machine()}), Python {platform.python_version()}",
        "audio": audio_report(),
        "camera": camera_report(),
        "gpu": gpu_report(),
        "models": model_report(),
        "photo_path": photo_report(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_text(report)
    return 0 if all(report[part]["ok"] for part in ("audio", "camera", "models", "photo_path")) else 1


def _print_text(report: dict) -> None:
    out = sys.stdout
    print(f"system: {report['system']}", file=out)
    audio = report["audio"]
    print("audio inputs:", file=out)
    for device in audio["inputs"]:
        mark = " (default)" if device["default_input"] else ""
        print(f"  {device['index']}: {device['name']}{mark}, {device['inputs']} ch, {device['rate']:.0f} Hz", file=out)
    print("audio outputs (--audio-out, e.g. a virtual cable):", file=out)
    for device in audio["outputs"]:
        mark = " (default)" if device["default_output"] else ""
        print(f"  {device['index']}: {device['name']}{mark}", file=out)
    print("virtual camera backends:", file=out)
    for backend in report["camera"]["backends"]:
        state = f"ok ({backend['device']})" if backend["ok"] else f"unavailable: {backend['reason']}"
        print(f"  {backend['backend']}: {state}", file=out)
    gpu = report["gpu"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in gpu.get("gpus", [])) or gpu.get("note")
    print(f"gpu: {gpus}", file=out)
    models = report["models"]["models"]
    print(f"models: {', '.join(models) or 'none'}", file=out)
    photo = report["photo_path"]
    if photo["ok"]:
        print(f"photo renderer: ready (motion model {photo['motion_model']}, face models {photo['face_models']})",
              file=out)
    fixes = [report[part]["fix"] for part in ("audio", "camera", "models", "photo_path") if report[part].get("fix")]
    for fix in fixes:
        print(f"to fix: {fix}", file=out)
    if not fixes:
        print("everything a live session needs is there", file=out)


command("doctor", "List audio devices, virtual-camera backends, GPUs and models; say what to fix")((_add, _run))
