"""The training loop shared by every stage: one code path for one CPU process and for `torchrun` (DDP).

A stage supplies an `Objective` (an nn.Module whose forward(batch) returns the mean loss of that batch) and a
`sample_batch(step, generator)` that draws the *global* batch. Every rank draws the same global batch from the same
seeded generator and keeps its own slice, so N ranks see exactly what one process sees with the same global batch.
Checkpoints hold weights, optimiser state and RNG state in safetensors files plus a JSON file (never pickle), and
are written atomically, so an interrupted run loses at most the steps since its last save.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from avatar_desktop.errors import AvatarError
from avatar_desktop.files import write_text_atomic
from avatar_desktop.training.config import RunConfig
from avatar_desktop.training.plot import plot_loss_curve


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        """Join the process group torchrun describes in the environment (gloo on CPU, nccl with CUDA)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), world)

    def shard(self, batch: dict[str, Any]) -> dict[str, Any]:
        """This rank's slice of a global batch (tensors along dim 0; other values kept)."""
        if self.world == 1:
            return batch
        size = next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
        if size % self.world:
            raise AvatarError(f"batch_size {size} must be a multiple of the number of processes ({self.world})")
        per = size // self.world
        return {k: v[self.rank * per : (self.rank + 1) * per] if torch.is_tensor(v) else v for k, v in batch.items()}

    def mean(self, value: torch.Tensor) -> float:
        if self.world > 1:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return float(value.detach())


class Checkpoint:
    """`out/checkpoint/`: weights.safetensors (the trained networks), optimizer.safetensors + state.json."""

    def __init__(self, out: Path):
        self.folder = out / "checkpoint"

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def save(self, step: int, networks: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        staging = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=self.folder.parent))
        tensors, scalars = _flatten_optimizer(optimizer)
        save_file({k: v.detach().contiguous().cpu() for k, v in networks.state_dict().items()}, staging / "weights.safetensors")
        save_file(tensors | {"rng": generator.get_state()}, staging / "optimizer.safetensors")
        (staging / "state.json").write_text(json.dumps({"step": step, "optimizer": scalars}) + "\n")
        old = self.folder.with_name(".checkpoint.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.folder.exists():
            self.folder.rename(old)
        staging.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, networks: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
        """Restore everything; returns the step to continue from. AvatarError naming the checkpoint when it is
        damaged (truncated, garbage) or belongs to another model; nothing is deleted."""
        try:
            return self._load(networks, optimizer, generator)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
            raise AvatarError(
                f"checkpoint {self.folder} is damaged and cannot be resumed ({type(error).__name__}: {error}): move "
                f"or delete that folder and run again without --resume (the run restarts from step 0), or choose "
                "another --out"
            ) from None

    def _load(self, networks: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
        state = json.loads((self.folder / "state.json").read_bytes())
        weights = load_file(self.folder / "weights.safetensors")
        expected = networks.state_dict()
        mismatched = sorted(k for k in expected.keys() & weights.keys() if expected[k].shape != weights[k].shape)
        if expected.keys() != weights.keys() or mismatched:
            raise AvatarError(
                f"checkpoint {self.folder} does not match this recipe's model ({len(expected.keys() - weights.keys())} "
                f"missing, {len(weights.keys() - expected.keys())} unexpected, {len(mismatched)} differently shaped "
                "tensors): it belongs to another preset or stage"
            )
        networks.load_state_dict(weights)
        tensors = load_file(self.folder / "optimizer.safetensors")
        generator.set_state(tensors.pop("rng"))
        _restore_optimizer(optimizer, tensors, state["optimizer"])
        return int(state["step"])


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.contiguous().cpu()
            else:
                scalars["state"].setdefault(str(index), {})[key] = value
    return tensors, scalars


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    for index, values in scalars["state"].items():
        per_param.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": per_param, "param_groups": scalars["param_groups"]})


class LossLog:
    """`out/loss.csv` (step, loss) and `out/loss.png`; on resume, rows after the resumed step are dropped."""

    def __init__(self, out: Path, resume_step: int):
        self.csv = out / "loss.csv"
        self.rows: list[tuple[int, float]] = []
        if resume_step and self.csv.is_file():
            try:
                with self.csv.open() as handle:
                    self.rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle)
                                 if int(r["step"]) <= resume_step]
            except (ValueError, KeyError, TypeError) as error:  # UnicodeDecodeError is a ValueError
                raise AvatarError(f"{self.csv} is damaged ({error}): move it away to resume without the earlier "
                                  "loss curve") from None

    def append(self, step: int, loss: float) -> None:
        self.rows.append((step, loss))

    def flush(self, title: str) -> None:
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(["step", "loss"])
        writer.writerows(self.rows)
        write_text_atomic(self.csv, table.getvalue())
        if self.rows:
            plot_loss_curve(self.rows, self.csv.with_suffix(".png"), title)


def learning_rate(step: int, run: RunConfig) -> float:
    """Linear warm-up to run.lr, then a cosine from run.lr down to run.lr * run.final_lr_fraction at the last step."""
    if step < run.warmup_steps:
        return run.lr * (step + 1) / run.warmup_steps
    progress = (step - run.warmup_steps) / max(1, run.steps - 1 - run.warmup_steps)
    floor = run.final_lr_fraction
    return run.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(
    objective: nn.Module,
    sample_batch: Callable[[int, torch.Generator], dict[str, Any]],
    *,
    run: RunConfig,
    out: Path,
    title: str,
    resume: bool,
    after_step: Callable[[int], None] | None = None,
    on_save: Callable[[int], None] | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
) -> list[tuple[int, float]]:
    """Optimise `objective` for run.steps steps; returns the loss curve [(step, loss)] of the whole run.

    after_step(step) runs after each optimiser step (e.g. an EMA update); on_save(step) after each checkpoint
    (e.g. exporting the model folder). Only rank 0 writes files.
    """
    ranks = Distributed.from_environment()
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Checkpoint(out)
    params = [p for p in (parameters if parameters is not None else objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=run.lr, weight_decay=run.weight_decay)
    generator = torch.Generator().manual_seed(run.seed)
    start = 0
    if resume:
        if not checkpoint.exists():
            raise AvatarError(f"--resume: {out} holds no checkpoint to resume from (start without --resume)")
        start = checkpoint.load(objective, optimizer, generator)
    elif checkpoint.exists():
        raise AvatarError(f"{out} already holds a training run: add --resume to continue it, or choose another --out")
    model = nn.parallel.DistributedDataParallel(objective) if ranks.world > 1 else objective
    log = LossLog(out, start)
    progress = tqdm(range(start, run.steps), initial=start, total=run.steps, desc=title, disable=not ranks.is_main or None)
    with torch.enable_grad():  # whatever grad mode the caller is in
        for step in progress:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, run)
            loss = model(ranks.shard(sample_batch(step, generator)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if run.grad_clip:
                nn.utils.clip_grad_norm_(params, run.grad_clip)
            optimizer.step()
            if after_step is not None:
                after_step(step)
            value = ranks.mean(loss)
            log.append(step + 1, value)
            progress.set_postfix(loss=f"{value:.4f}")
            done = step + 1
            if ranks.is_main and (done % run.save_every == 0 or done == run.steps):
                checkpoint.save(done, objective, optimizer, generator)
                log.flush(title)
                if on_save is not None:
                    on_save(done)
    return log.rows
