"""The chunk denoiser: a UNet of diffusers blocks over a chunk of T frames.

Per frame it sees the noisy latent, the reference latent (concatenated) and the previous chunk's last latents
(motion frames, concatenated); spatial attention layers attend to the frame's audio tokens (cross-attention) and,
with `reference_attention`, to reference-network tokens whose keys/values are computed once per portrait;
temporal attention layers mix the T frames of the chunk. Noise level, state label and expression vector enter
through the time embedding of every ResNet block; with `audio_embedding`, so does each frame's own audio (its tokens,
flattened), which reaches every block of that frame instead of only the attention levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from torch import nn
from torch.nn import functional as F

from avatar_desktop.config import DenoiserConfig

NOISE_EMBEDDING_SCALE = 250.0
"""c_noise = log(sigma) / 4 lies in about [-1.6, 1.1]; scaled so the sinusoidal embedding spans its frequencies."""

ReferenceKV = dict[int, tuple[torch.Tensor, torch.Tensor]]
"""Per spatial-attention layer index: projected reference keys and values, each (B, N_ref, channels)."""


def _attend(attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Multi-head attention with projected tokens: query (N, Lq, C), key/value (N, Lk, C) -> (N, Lq, C), out-projected."""
    n, lq, channels = query.shape
    heads = attn.heads
    q = query.view(n, lq, heads, -1).transpose(1, 2)
    k = key.view(n, key.shape[1], heads, -1).transpose(1, 2)
    v = value.view(n, value.shape[1], heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, lq, channels)
    return attn.to_out[0](out)


class SpatialTransformer(nn.Module):
    """Per-frame tokens: self-attention (+ reference tokens), cross-attention to audio tokens, feed-forward.

    hidden: (B*T, C, H, W); audio: (B*T, N, D); reference_kv: (B*T, N_ref, C) keys and values or None.
    """

    def __init__(self, channels: int, head_dim: int, cross_dim: int, groups: int):
        super().__init__()
        heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn1 = Attention(channels, heads=heads, dim_head=channels // heads)
        self.norm2 = nn.LayerNorm(channels)
        self.attn2 = Attention(channels, cross_attention_dim=cross_dim, heads=heads, dim_head=channels // heads)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, mult=2, activation_fn="geglu")
        self.proj_out = nn.Linear(channels, channels)

    layer_index: int = -1  # position in ChunkDenoiser.spatial_layers(), the key of its reference keys/values

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> input tokens (N, H*W, C)."""
        return self.proj_in(self.norm(hidden).flatten(2).transpose(1, 2))

    def reference_kv(self, reference_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference features (B, C, H, W) -> this layer's reference keys and values, each (B, H*W, C)."""
        tokens = self.norm1(self._project(reference_hidden))
        return self.attn1.to_k(tokens), self.attn1.to_v(tokens)

    def forward(self, hidden, audio, reference_kv=None):
        n, c, h, w = hidden.shape
        x = self._project(hidden)
        normed = self.norm1(x)
        key, value = self.attn1.to_k(normed), self.attn1.to_v(normed)
        if reference_kv is not None:
            key = torch.cat([key, reference_kv[0]], dim=1)
            value = torch.cat([value, reference_kv[1]], dim=1)
        x = x + _attend(self.attn1, self.attn1.to_q(normed), key, value)
        normed = self.norm2(x)
        x = x + _attend(self.attn2, self.attn2.to_q(normed), self.attn2.to_k(audio), self.attn2.to_v(audio))
        x = x + self.ff(self.norm3(x))
        return hidden + self.proj_out(x).transpose(1, 2).reshape(n, c, h, w)


class TemporalAttention(nn.Module):
    """Self-attention across the T frames at each spatial position. hidden (B*T, C, H, W) -> same."""

    def __init__(self, channels: int, head_dim: int, max_frames: int):
        super().__init__()
        heads = max(1, channels // head_dim)
        self.frame_embedding = nn.Parameter(torch.zeros(max_frames, channels))
        self.norm = nn.LayerNorm(channels)
        self.attn = Attention(channels, heads=heads, dim_head=channels // heads)

    def forward(self, hidden: torch.Tensor, frames: int) -> torch.Tensor:
        bt, c, h, w = hidden.shape
        if frames > self.frame_embedding.shape[0]:
            raise ValueError(f"chunk of {frames} frames exceeds max_chunk_frames={self.frame_embedding.shape[0]}")
        x = hidden.reshape(bt // frames, frames, c, h * w).permute(0, 3, 1, 2).reshape(-1, frames, c)  # (B*HW, T, C)
        normed = self.norm(x + self.frame_embedding[:frames])
        x = _attend(self.attn, self.attn.to_q(normed), self.attn.to_k(normed), self.attn.to_v(normed))
        x = x.view(bt // frames, h * w, frames, c).permute(0, 2, 3, 1).reshape(bt, c, h, w)
        return hidden + x


class _Layer(nn.Module):
    """ResNet block, then optional spatial transformer and temporal attention, at one resolution."""

    def __init__(self, in_ch: int, out_ch: int, temb: int | None, cfg: DenoiserConfig, attention: bool, temporal: bool):
        super().__init__()
        self.resnet = ResnetBlock2D(in_channels=in_ch, out_channels=out_ch, temb_channels=temb, groups=cfg.norm_groups)
        self.spatial = SpatialTransformer(out_ch, cfg.attention_head_dim, cfg.cross_attention_dim, cfg.norm_groups) if attention else None
        self.temporal = TemporalAttention(out_ch, cfg.attention_head_dim, cfg.max_chunk_frames) if temporal else None


@dataclass
class DenoiserInputs:
    """Conditioning for one chunk. Shapes: reference (B, C, h, w); motion (B, M, C, h, w); audio (B, T, N, D);
    label (B,) int64 state indices; expression (B, E) in [-1, 1]; motion_expression (B, E) the slider values the
    newest motion frames were made with (None: the same as expression), read only by a denoiser whose config has
    motion_expression; reference_kv from `ChunkDenoiser.reference_kv`."""

    reference: torch.Tensor
    motion: torch.Tensor
    audio: torch.Tensor
    label: torch.Tensor
    expression: torch.Tensor
    reference_kv: ReferenceKV | None = None
    motion_expression: torch.Tensor | None = None


class ReferenceNet(nn.Module):
    """The reference path: the denoiser's down path without time, audio or temporal inputs, run once per portrait.

    (B, C, h, w) reference latent -> one feature map per resolution level, (B, C_i, h_i, w_i).
    """

    def __init__(self, cfg: DenoiserConfig, latent_channels: int):
        super().__init__()
        self.conv_in = _patchify_conv(latent_channels, cfg.block_channels[0], cfg.patch_size)
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = cfg.block_channels[0]
        for i, width in enumerate(cfg.block_channels):
            self.levels.append(
                nn.Sequential(*[ResnetBlock2D(in_channels=channels if j == 0 else width, out_channels=width, temb_channels=None, groups=cfg.norm_groups) for j in range(cfg.layers_per_block)])
            )
            channels = width
            if i + 1 < len(cfg.block_channels):
                self.downs.append(Downsample2D(width, use_conv=True, out_channels=cfg.block_channels[i + 1], name="op"))
                channels = cfg.block_channels[i + 1]

    def forward(self, reference: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.conv_in(reference)
        features = []
        for i, level in enumerate(self.levels):
            for block in level:
                hidden = block(hidden, None)
            features.append(hidden)
            if i < len(self.downs):
                hidden = self.downs[i](hidden)
        return features


def _patchify_conv(in_ch: int, out_ch: int, patch: int) -> nn.Conv2d:
    if patch == 1:
        return nn.Conv2d(in_ch, out_ch, 3, padding=1)
    return nn.Conv2d(in_ch, out_ch, patch, stride=patch)


class ChunkDenoiser(nn.Module):
    """F(c_in * x, c_noise, conditioning) over a chunk: (B, T, C, h, w) -> (B, T, C, h, w) (raw network output;
    the preconditioning that turns it into a clean estimate lives in `AvatarModel.denoise`)."""

    def __init__(self, cfg: DenoiserConfig, latent_channels: int, audio_tokens: int):
        super().__init__()
        if not (len(cfg.block_channels) == len(cfg.attention_levels) == len(cfg.temporal_levels)):
            raise ValueError("block_channels, attention_levels and temporal_levels must have the same length")
        uneven = [c for c in cfg.block_channels if c % cfg.attention_head_dim or c % cfg.norm_groups]
        if uneven:
            raise ValueError(
                f"block_channels {uneven} must be multiples of attention_head_dim={cfg.attention_head_dim} "
                f"and norm_groups={cfg.norm_groups}"
            )
        self.cfg = cfg
        self.latent_channels = latent_channels
        ch0 = cfg.block_channels[0]
        temb = ch0 * 4
        in_channels = latent_channels * (2 + cfg.num_motion_frames)
        self.conv_in = _patchify_conv(in_channels, ch0, cfg.patch_size)
        self.time_proj = Timesteps(ch0, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(ch0, temb)
        self.label_embedding = nn.Embedding(cfg.num_states, temb)
        expression_inputs = cfg.expression_dim * (2 if cfg.motion_expression else 1)
        self.expression_embedding = nn.Sequential(nn.Linear(expression_inputs, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.audio_embedding = None
        if cfg.audio_embedding:
            self.audio_embedding = nn.Sequential(
                nn.Linear(audio_tokens * cfg.cross_attention_dim, temb), nn.SiLU(), nn.Linear(temb, temb)
            )
            nn.init.zeros_(self.audio_embedding[-1].weight)  # starts as a no-op: a warm start keeps its function
            nn.init.zeros_(self.audio_embedding[-1].bias)

        self.down_layers = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        channels = ch0
        for i, width in enumerate(cfg.block_channels):
            self.down_layers.append(nn.ModuleList(
                _Layer(channels if j == 0 else width, width, temb, cfg, cfg.attention_levels[i], cfg.temporal_levels[i])
                for j in range(cfg.layers_per_block)
            ))
            channels = width
            if i + 1 < len(cfg.block_channels):
                self.downsamplers.append(Downsample2D(width, use_conv=True, out_channels=cfg.block_channels[i + 1], name="op"))
                channels = cfg.block_channels[i + 1]
        self.mid = _Layer(channels, channels, temb, cfg, True, True)
        self.mid_resnet = ResnetBlock2D(in_channels=channels, out_channels=channels, temb_channels=temb, groups=cfg.norm_groups)

        self.up_layers = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for i in reversed(range(len(cfg.block_channels))):
            width = cfg.block_channels[i]
            self.up_layers.append(nn.ModuleList(
                _Layer(width * 2, width, temb, cfg, cfg.attention_levels[i], cfg.temporal_levels[i])
                for _ in range(cfg.layers_per_block)
            ))
            if i > 0:
                self.upsamplers.append(Upsample2D(width, use_conv=True, out_channels=cfg.block_channels[i - 1]))
        self.norm_out = nn.GroupNorm(cfg.norm_groups, ch0, eps=1e-6)
        self.conv_out = nn.Conv2d(ch0, latent_channels * cfg.patch_size**2, 3, padding=1)
        self.reference_net = ReferenceNet(cfg, latent_channels) if cfg.reference_attention else None
        for index, (_, spatial) in enumerate(self.spatial_layers()):
            spatial.layer_index = index

    def spatial_layers(self) -> list[tuple[int, SpatialTransformer]]:
        """(resolution level, layer) for every spatial transformer, in a fixed order: down, mid, up."""
        levels = len(self.cfg.block_channels)
        found = [(i, layer.spatial) for i, group in enumerate(self.down_layers) for layer in group]
        found.append((levels - 1, self.mid.spatial))
        found += [(levels - 1 - k, layer.spatial) for k, group in enumerate(self.up_layers) for layer in group]
        return [(level, spatial) for level, spatial in found if spatial is not None]

    def reference_kv(self, reference: torch.Tensor) -> ReferenceKV | None:
        """Run the reference network once: (B, C, h, w) reference latent -> cached keys/values per spatial layer."""
        if self.reference_net is None:
            return None
        features = self.reference_net(reference)
        return {index: spatial.reference_kv(features[level]) for index, (level, spatial) in enumerate(self.spatial_layers())}

    def _expression_input(self, cond: DenoiserInputs) -> torch.Tensor:
        """What the expression embedding reads: (B, E), or (B, 2E) with the motion frames' slider values after."""
        if not self.cfg.motion_expression:
            return cond.expression
        before = cond.expression if cond.motion_expression is None else cond.motion_expression
        return torch.cat([cond.expression, before.to(cond.expression.dtype)], dim=1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: DenoiserInputs) -> torch.Tensor:
        batch, frames, channels, h, w = x.shape
        motion = cond.motion.flatten(1, 2)[:, None].expand(batch, frames, -1, h, w)
        reference = cond.reference[:, None].expand(batch, frames, channels, h, w)
        hidden = self.conv_in(torch.cat([x, reference, motion], dim=2).flatten(0, 1))  # (B*T, ch0, h', w')

        emb = self.time_embedding(self.time_proj(c_noise.reshape(-1).expand(batch) * NOISE_EMBEDDING_SCALE).to(x.dtype))
        expression = self.expression_embedding(self._expression_input(cond).to(x.dtype))
        emb = emb + self.label_embedding(cond.label) + expression
        emb = emb.repeat_interleave(frames, dim=0)  # (B*T, temb)
        audio = cond.audio.flatten(0, 1)  # (B*T, N, D)
        if self.audio_embedding is not None:
            emb = emb + self.audio_embedding(audio.flatten(1).to(x.dtype))

        reference_kv = cond.reference_kv
        if reference_kv is None and self.reference_net is not None:
            reference_kv = self.reference_kv(cond.reference)
        per_frame_kv = {
            index: tuple(t.repeat_interleave(frames, dim=0) for t in kv) for index, kv in (reference_kv or {}).items()
        }

        def run(layer: _Layer, hidden: torch.Tensor) -> torch.Tensor:
            hidden = layer.resnet(hidden, emb)
            if layer.spatial is not None:
                hidden = layer.spatial(hidden, audio, per_frame_kv.get(layer.spatial.layer_index))
            if layer.temporal is not None:
                hidden = layer.temporal(hidden, frames)
            return hidden

        skips = []
        for i, group in enumerate(self.down_layers):
            for layer in group:
                hidden = run(layer, hidden)
                skips.append(hidden)
            if i < len(self.downsamplers):
                hidden = self.downsamplers[i](hidden)
        hidden = self.mid_resnet(run(self.mid, hidden), emb)
        for k, group in enumerate(self.up_layers):
            for layer in group:
                hidden = run(layer, torch.cat([hidden, skips.pop()], dim=1))
            if k < len(self.upsamplers):
                hidden = self.upsamplers[k](hidden)
        out = self.conv_out(F.silu(self.norm_out(hidden)))
        if self.cfg.patch_size > 1:
            out = F.pixel_shuffle(out, self.cfg.patch_size)
        return out.reshape(batch, frames, channels, h, w)
