"""What the window can offer: models (trained ones found on disk, and untrained presets), the bundled portrait,
audio devices. Plain Python, no Qt: the pickers fill themselves from these lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avatar_desktop.config import EXPRESSION_COMPONENTS, ModelConfig
from avatar_desktop.engine.model_spec import ModelSpec, torch_installed
from avatar_desktop.errors import AvatarError, CheckpointError
from avatar_desktop.files import app_root

PORTRAIT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ASSETS = app_root() / "assets"
ICONS = ASSETS / "icons"
"""The application icon, avatar-desktop-N.png at N x N pixels (made by packaging/make_icons.py)."""


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker. key: what the settings store ('model:NAME' or 'preset:NAME'); spec: the
    model, checked when the list was made; None for a model folder that cannot be used, `problem` saying why."""

    key: str
    label: str
    spec: ModelSpec | None
    trained: bool
    problem: str | None = None

    def expression_components(self) -> tuple[str, ...]:
        """Names of the model's expression-vector components (one slider each)."""
        config = self.spec.config if self.spec is not None else None
        dim = config.denoiser.expression_dim if isinstance(config, ModelConfig) else len(EXPRESSION_COMPONENTS)
        return EXPRESSION_COMPONENTS[:dim]


AUTOMATIC = "Automatic: the photo renderer (any portrait with a face)"


def model_choices() -> list[ModelChoice]:
    """Automatic (the photo path), trained models found on the search path (models/, the user folder), then every
    latent preset, untrained (only where torch is installed: random weights are drawn by torch)."""
    from avatar_desktop.models.folders import list_models
    from avatar_desktop.models.presets import PRESETS

    choices = [_trained_choice("auto", AUTOMATIC, None)]
    choices += [_trained_choice(f"model:{name}", name, name) for name in list_models()]
    for name in PRESETS if torch_installed() else ():
        choices.append(ModelChoice(f"preset:{name}", f"{name}: untrained, random weights (for testing only)",
                                   ModelSpec(name, random_weights=True), False))
    return choices


def _trained_choice(key: str, shown_name: str, name_or_folder: str | None) -> ModelChoice:
    """The choice of a model folder (None: the default motion model); a damaged or unusable one is listed too,
    with why it cannot be used."""
    try:
        spec = ModelSpec(name_or_folder)
    except AvatarError as error:
        return ModelChoice(key, f"{shown_name}  (cannot be used)", None, True, str(error))
    preset = spec.config.preset if isinstance(spec.config, ModelConfig) else "photo path"
    return ModelChoice(key, f"{shown_name}  (trained, {preset})", spec, True)


def model_choice_for(key: str, choices: list[ModelChoice]) -> ModelChoice:
    """The choice for a settings key, a model name or a model folder; else the best one found: automatic (the
    photo path). CheckpointError (saying why) for a model folder that cannot be used."""
    by_key = {choice.key: choice for choice in choices}
    found = next((by_key[candidate] for candidate in (key, f"model:{key}") if candidate in by_key), None)
    folder = Path(key)
    if found is None and key and (folder / "model.json").is_file():
        found = _trained_choice(f"model:{folder}", folder.name, str(folder))
    if found is not None and found.problem is not None:
        raise CheckpointError(found.problem)
    return found or by_key.get("auto") or choices[0]


def bundled_portrait() -> Path | None:
    """The default portrait shipped in assets/ (assets/portraits/default.* first), or None when there is none."""
    for folder in (ASSETS / "portraits", ASSETS):
        if folder.is_dir():
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in PORTRAIT_SUFFIXES)
            defaults = [p for p in images if p.stem == "default"]
            if defaults or images:
                return (defaults or images)[0]
    return None


def audio_devices() -> tuple[list[str], list[str], str | None]:
    """(input device names, output device names, why there are none or None)."""
    try:
        import sounddevice as sd

        devices = sd.query_devices()
    except (OSError, ImportError) as error:  # PortAudio missing
        return [], [], f"audio is unavailable ({error}): install PortAudio (Debian/Ubuntu: apt install libportaudio2)"
    inputs = [d["name"] for d in devices if d["max_input_channels"] > 0]
    outputs = [d["name"] for d in devices if d["max_output_channels"] > 0]
    return inputs, outputs, None if inputs else "no microphone found: plug one in, or start the sound server"
