"""The audio stage: the audio encoder predicts each frame's mouth (opening, width, rounding, teeth) from its audio
window. Its recipe is training.config.AudioRecipe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from avatar_desktop.errors import AvatarError
from avatar_desktop.files import write_json_atomic
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.presets import build_model, preset_config
from avatar_desktop.models.store import save_model
from avatar_desktop.training.common import freeze, provenance, recorded_provenance
from avatar_desktop.training.config import LoadedRecipe
from avatar_desktop.training.data import MOUTH_TARGETS, MouthClip, chunk_windows, mouth_clips, sample_mouth_windows
from avatar_desktop.training.loop import Distributed, train
from avatar_desktop.training.stages.shared import load_init


class AudioObjective(nn.Module):
    """Squared error of the mouth predicted from audio: encoder tokens (B, T, N, D) -> linear head -> (B, T, 4)."""

    def __init__(self, model: AvatarModel):
        super().__init__()
        self.model = model
        audio = model.config.audio
        self.head = nn.Linear(audio.tokens_per_frame * audio.token_dim, len(MOUTH_TARGETS))

    def predict(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, W) audio windows -> (B, T, 4) predicted MOUTH_TARGETS."""
        return self.head(self.model.audio_encoder(windows).flatten(2))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((self.predict(batch["windows"]) - batch["mouth"]) ** 2).mean()


@torch.no_grad()
def mouth_prediction_scores(objective: AudioObjective, clips: list[MouthClip]) -> dict[str, float]:
    """Pearson r between predicted and true values of each MOUTH_TARGETS column over all frames of `clips`."""
    model = objective.model
    predicted, truth = [], []
    for clip in clips:
        windows = chunk_windows(clip.audio, 0, len(clip.mouth), model.config.audio, model.config.fps)
        predicted.append(objective.predict(windows[None])[0])
        truth.append(clip.mouth)
    p, t = torch.cat(predicted), torch.cat(truth)
    return {name: float(torch.corrcoef(torch.stack([p[:, i], t[:, i]]))[0, 1]) for i, name in enumerate(MOUTH_TARGETS)}


def train_audio(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    previous = load_init(loaded)
    started_from = recorded_provenance(loaded.resolve(recipe.init))
    architecture = preset_config(previous.config.preset)
    config = dataclasses.replace(architecture, autoencoder=previous.config.autoencoder)
    if recipe.encoder_channels:
        if recipe.encoder_channels % 8:
            raise AvatarError(f"recipe {loaded.source}: encoder_channels = {recipe.encoder_channels}: must be a multiple "
                              f"of 8 (the encoder's group norm has 8 groups)")
        config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, channels=recipe.encoder_channels))
    model = build_model(config, seed=recipe.run.seed)
    model.autoencoder.load_state_dict(previous.autoencoder.state_dict())
    for network in (model.autoencoder, model.denoiser):
        freeze(network)
    model.audio_encoder.train()
    clips = mouth_clips(data)
    objective = AudioObjective(model)

    def batch(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return sample_mouth_windows(clips, recipe.run.batch_size, recipe.frames, config.audio, config.fps, generator,
                                    recipe.augment)

    def export(step: int) -> None:
        save_model(model, out / "model", provenance=provenance(loaded, data, step, started_from))

    rows = train(objective, batch, run=recipe.run, out=out, title="audio encoder", resume=resume, on_save=export)
    if Distributed.from_environment().is_main:
        _report_mouth_prediction(objective.eval(), data, out)
    return rows


def _report_mouth_prediction(objective: AudioObjective, data: Path, out: Path) -> None:
    """Write out/mouth_prediction.json: the Pearson r of each predicted mouth value on held-out (else training) clips."""
    try:
        clips, split = mouth_clips(data, "heldout"), "heldout"
    except AvatarError:
        clips, split = mouth_clips(data), "train"
    scores = mouth_prediction_scores(objective, clips)
    write_json_atomic(out / "mouth_prediction.json", {"split": split, "clips": len(clips), "pearson_r": scores})
    print(f"mouth from audio, {split} clips: " + ", ".join(f"{name} r={r:.3f}" for name, r in scores.items()))
