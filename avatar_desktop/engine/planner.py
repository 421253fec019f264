"""Chunk planner: how many frames the next chunk gets.

A short first chunk is the first-frame latency; a short chunk after a state change makes the switch visible
quickly; steady chunks are longer for throughput. LLIA trains one model for all these lengths.
"""

from __future__ import annotations

from avatar_desktop.config import ChunkPlanConfig


class ChunkPlanner:
    def __init__(self, plan: ChunkPlanConfig, *, max_frames: int, fixed: int | None = None):
        lengths = (plan.first, plan.after_state_change, plan.steady) if fixed is None else (fixed,)
        if not all(1 <= n <= max_frames for n in lengths):
            raise ValueError(f"chunk lengths {lengths} must lie in 1..{max_frames} (the model's max_chunk_frames)")
        self.plan = plan
        self.fixed = fixed
        self.reset()

    def reset(self) -> None:
        self._started = False

    def length(self, *, state_changed: bool) -> int:
        """Frames in the next chunk (does not advance the plan; see commit())."""
        if self.fixed is not None:
            return self.fixed
        if not self._started:
            return self.plan.first
        return self.plan.after_state_change if state_changed else self.plan.steady

    def commit(self) -> None:
        """The planned chunk was generated."""
        self._started = True
