"""The divergence guard (``guard.*``): notice a run that has broken and roll it back once.

Two things count as a failure:

- a NaN or infinite loss (D's or G's), from an exploding gradient, a too-high learning rate or fp16
  overflow;
- with ``guard.d_wins_steps = N > 0``: the discriminator winning completely (see
  :meth:`ganforge.training.losses.Loss.d_wins`) on N generator steps in a row, the classic collapse in
  which G stops receiving useful gradient.

The guard only notices; :class:`Recovery` owns what follows.  On a failure it restores the last good
checkpoint (the in-memory state at the start when no checkpoint exists yet), multiplies both learning
rates by ``guard.lr_factor``, and the trainer writes a ``"event": "guard"`` line to ``metrics.jsonl`` and
goes on.  After ``guard.max_recoveries`` recoveries the next
failure stops the run: the last good checkpoint is restored for ``generator.pt`` and
``summary.json`` says ``"status": "diverged"`` with the reason.

The guard watches every step without reading anything back from the device: the per-step checks
accumulate in device tensors and :meth:`DivergenceGuard.failure` (one host sync) is called where the
trainer syncs anyway, at each log line and before anything is saved, so a bad state is never
checkpointed and at most ``train.log_every`` steps are thrown away.

Under torchrun each rank watches its own losses, and a failure one rank sees (a NaN from its batch, D
winning on its share) may not show on the others before the check.  Every rank calls
:meth:`DivergenceGuard.failure` at the same points and the ranks agree on the worst failure any of
them saw (one small all-reduce), so all restore the same checkpoint and lower the learning rates
together, and their recovery counters stay equal.
"""
from __future__ import annotations

import io
from typing import Callable

import torch

from ganforge.config import GuardConfig
from ganforge.storage import CheckpointStore, safe_load, to_bytes
from ganforge.training import distributed


class DivergenceGuard:
    def __init__(self, cfg: GuardConfig):
        self.enabled = cfg.enabled
        self.d_wins_steps = cfg.d_wins_steps
        self.lr_factor = cfg.lr_factor
        self.max_recoveries = cfg.max_recoveries
        self.recoveries = 0
        self._pending: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.nonfinite = None  # any non-finite loss since the last check (device bool)
        self.wins_in_a_row = None  # consecutive steps D won completely (device int)
        self.wins_too_long = None  # wins_in_a_row reached d_wins_steps since the last check

    def watch(self, out: dict[str, torch.Tensor]) -> None:
        """Fold one step's outputs into the pending checks, on the device."""
        if not self.enabled:
            return
        bad = ~(torch.isfinite(out["loss_d"]) & torch.isfinite(out["loss_g"]))
        self.nonfinite = bad if self.nonfinite is None else self.nonfinite | bad
        if self.d_wins_steps:
            won = out["d_wins"] > 0
            run = (torch.zeros((), dtype=torch.long, device=won.device) if self.wins_in_a_row is None
                   else self.wins_in_a_row.to(won.device))
            self.wins_in_a_row = torch.where(won, run + 1, torch.zeros_like(run))
            too_long = self.wins_in_a_row >= self.d_wins_steps
            self.wins_too_long = too_long if self.wins_too_long is None else self.wins_too_long | too_long

    def peek(self) -> str | None:
        """Like :meth:`failure`, but the failure stays pending for the next :meth:`failure` call (under
        torchrun, called by every rank, as :meth:`failure` is)."""
        self._pending = self.failure()
        return self._pending

    def failure(self) -> str | None:
        """What went wrong since the last check, or None (one host sync).  Under torchrun every rank calls
        this at the same step and all get the same answer."""
        pending, self._pending = self._pending, None
        if pending is not None:  # already agreed by every rank in peek()
            return pending
        if not self.enabled:
            return None
        failed, wins_in_a_row = 0, self.wins_in_a_row  # 0: none, 1: D won too long, 2: a non-finite loss
        if self.nonfinite is not None:
            flags = [self.nonfinite]
            if self.wins_too_long is not None:
                flags.append(self.wins_too_long)
            nonfinite, *wins = torch.stack(flags).tolist()
            failed = 2 if nonfinite else 1 if wins and wins[0] else 0
        # The worst failure any rank saw: one rank's NaN or D-wins streak rolls every rank back.
        failed = distributed.max_over_ranks(failed)
        self.nonfinite, self.wins_too_long = None, None
        if failed:
            self.wins_in_a_row = None
            return ("a loss became NaN or infinite" if failed == 2
                    else f"the discriminator won completely for {self.d_wins_steps} steps in a row")
        self.wins_in_a_row = wins_in_a_row
        return None

    def can_recover(self) -> bool:
        return self.recoveries < self.max_recoveries

    def state_dict(self) -> dict:
        wins = 0 if self.wins_in_a_row is None else int(self.wins_in_a_row)
        return {"recoveries": self.recoveries, "wins_in_a_row": wins}

    def load_state_dict(self, state: dict) -> None:
        self._reset()
        self._pending = None
        self.recoveries = int(state.get("recoveries", 0))
        if state.get("wins_in_a_row"):
            self.wins_in_a_row = torch.tensor(int(state["wins_in_a_row"]))


class Recovery:
    """The rollback policy: what the run does when :class:`DivergenceGuard` reports a failure.

    Rank 0 picks the state to return to (it alone writes checkpoints) and every rank loads that one;
    before the first checkpoint exists, the state at the start of the run, kept in memory as bytes.
    ``stop_reason`` is set when the recoveries are spent and the run must stop."""

    def __init__(self, guard: DivergenceGuard, checkpoints: CheckpointStore, is_main: bool):
        self.guard, self.checkpoints, self.is_main = guard, checkpoints, is_main
        self.start_state: bytes | None = None
        self.stop_reason: str | None = None

    def _latest(self):
        found = self.checkpoints.latest_valid(warn=lambda *_: None) if self.is_main else None
        return distributed.broadcast_object(found)

    def snapshot_start(self, state: Callable[[], dict]) -> None:
        """Keep ``state()`` to roll back to while no checkpoint exists (only with the guard on)."""
        self.start_state = None
        if self.guard.enabled and self._latest() is None:
            self.start_state = to_bytes(state())

    def roll_back(self, reason: str, failed_at: int, restore: Callable[[dict], int],
                  scale_lr: Callable[[float], None]) -> str:
        """Restore the last good state (``restore`` loads it and returns its step); then lower the learning
        rates (``scale_lr``) or, with no recovery left, set ``stop_reason``.  Returns what was done."""
        recoveries = self.guard.recoveries  # restoring sets the checkpoint's older count: this one goes on
        found = self._latest()
        if found is not None:
            state, source = safe_load(found[0], map_location="cpu"), found[0].name
        else:
            state, source = torch.load(io.BytesIO(self.start_state), weights_only=True), "the start of the run"
        step = restore(state)
        self.guard.recoveries = recoveries
        if self.guard.can_recover():
            self.guard.recoveries += 1
            scale_lr(self.guard.lr_factor)
            return (f"restored {source} (step {step}) and multiplied the learning rates by {self.guard.lr_factor} "
                    f"(recovery {self.guard.recoveries} of {self.guard.max_recoveries})")
        self.stop_reason = (f"{reason} at step {failed_at} after {recoveries} recovery(ies); the run stopped "
                            f"and generator.pt holds the last good state ({source}, step {step}). "
                            "Try lower learning rates (optim.g.lr, optim.d.lr), loss.name=hinge with "
                            "model.spectral_norm=true, or an R1 penalty (loss.r1_gamma)")
        return "stopped the run"
