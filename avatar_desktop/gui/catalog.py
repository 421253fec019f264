"""What the window can offer: models (trained ones found on disk, and untrained presets), the bundled portrait,
audio devices. Plain Python, no Qt: the pickers fill themselves from these lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avatar_desktop.config import EXPRESSION_COMPONENTS, ModelConfig
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.errors import AvatarError

PORTRAIT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ASSETS = Path(__file__).resolve().parents[2] / "assets"


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker. key: what the settings store ('model:NAME' or 'preset:NAME')."""

    key: str
    label: str
    spec: ModelSpec
    trained: bool
    config: ModelConfig | None = None

    def expression_components(self) -> tuple[str, ...]:
        """Names of the model's expression-vector components (one slider each)."""
        dim = self.config.denoiser.expression_dim if self.config else len(EXPRESSION_COMPONENTS)
        return EXPRESSION_COMPONENTS[:dim]


AUTOMATIC = ModelChoice("auto", "Automatic: the photo renderer (any portrait with a face)", ModelSpec(None), True)


def model_choices() -> list[ModelChoice]:
    """Automatic (the photo path), trained latent models found on the search path (models/, the user folder), then
    every latent preset, untrained."""
    from avatar_desktop.models.presets import PRESETS
    from avatar_desktop.models.store import list_models, read_model_config

    choices = [AUTOMATIC]
    for name, folder in list_models().items():
        try:
            config, _ = read_model_config(folder)
        except (AvatarError, ValueError, TypeError):  # a damaged folder is shown, and fails with its reason on load
            config = None
        choices.append(ModelChoice(f"model:{name}", _trained_label(name, config), ModelSpec(name), True, config))
    for name, config in PRESETS.items():
        choices.append(ModelChoice(f"preset:{name}", f"{name}: untrained, random weights (for testing only)",
                                   ModelSpec(name, random_weights=True), False, config))
    return choices


def _trained_label(name: str, config: ModelConfig | None) -> str:
    """What the model picker shows: the name and the preset (no folder path: `doctor` lists where models are)."""
    return f"{name}  (trained, {config.preset})" if config is not None else f"{name}  (model.json unreadable)"


def model_choice_for(key: str, choices: list[ModelChoice]) -> ModelChoice:
    """The choice for a settings key, a model name or a model folder; else the best one found: automatic (the
    photo path)."""
    by_key = {choice.key: choice for choice in choices}
    for candidate in (key, f"model:{key}"):
        if candidate in by_key:
            return by_key[candidate]
    folder = Path(key)
    if key and (folder / "model.json").is_file():
        from avatar_desktop.models.store import read_model_config

        config, _ = read_model_config(folder)
        return ModelChoice(f"model:{folder}", _trained_label(folder.name, config), ModelSpec(str(folder)), True, config)
    return by_key.get("auto") or choices[0]


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
