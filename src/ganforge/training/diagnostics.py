"""Plain-words diagnostics while training: each names what it saw and the knob to turn.

- *The discriminator wins completely*: it separates nearly every batch (D(x) near 1 and D(G(z)) near 0)
  for many steps in a row.  The
  generator then gets almost no gradient (the tutorial's failure on small datasets).
- *Mode collapse*: the fixed-noise samples grow alike: their diversity in feature space falls well
  below the diversity of real images (and below what this run reached before).
- *Divergence*: a loss that is not finite.

Findings go to the log (stderr), to ``diagnostics.jsonl`` in the run directory (the report shows them),
and to ``summary.json``.  Each kind is reported once per episode, not at every log line.
"""
from __future__ import annotations

import json
import math
import sys

import torch
import torch.nn.functional as F

from ganforge.sampling import generate
from ganforge.training.context import RunContext

ADVICE = {
    "d_wins": ("the discriminator is winning completely (D(x) ~ {d_x:.2f}, D(G(z)) ~ {d_g_z:.3f} over {steps} steps): "
               "the generator gets almost no gradient. Try augment.name=diffaugment (small datasets), "
               "model.spectral_norm=true with loss.name=hinge, a lower optim.d.lr, or loss.real_label=0.9."),
    "collapse": ("the fixed-noise samples are becoming alike (diversity {ratio:.2f} of the real images', "
                 "down from {best:.2f}): mode collapse. Try ema.enabled=true, augment.name=diffaugment, "
                 "loss.name=hinge with model.spectral_norm=true, or a lower optim.g.lr."),
    "diverged": ("a loss is not finite (loss_d={loss_d}, loss_g={loss_g}): training diverged. Lower the learning "
                 "rates (optim.g.lr, optim.d.lr), keep guard.enabled=true, or use loss.name=hinge."),
}


def diversity(images: torch.Tensor) -> float:
    """Mean pairwise distance of images in a small feature space (16x16 pooled, per-image normalised).

    Pooling discards pixel noise and keeps layout and colour, the features by which samples are alike.
    """
    x = F.adaptive_avg_pool2d(images.float(), 16).flatten(1)
    x = x - x.mean(1, keepdim=True)
    x = x / (x.norm(dim=1, keepdim=True) + 1e-8)
    d = torch.cdist(x, x)
    n = x.shape[0]
    return float(d.sum() / max(n * (n - 1), 1))


class Diagnostics:
    def __init__(self, d_wins_steps: int = 200, d_wins_threshold: float = 0.05, collapse_ratio: float = 0.35):
        self.d_wins_steps = d_wins_steps
        self.threshold = d_wins_threshold
        self.collapse_ratio = collapse_ratio
        self.identical_ratio = 0.03  # below this the samples are near-copies at any stage of training
        self.healthy_ratio = 0.5  # a fall counts only from at least this much diversity
        self.min_steps = 3000  # before this, low diversity alone is normal (blurry early samples)
        self.d_wins_since: int | None = None
        self.active: set[str] = set()
        # A slide to sameness: every one of the last ``slide_window`` epoch-ends under ``slide_ratio``, and
        # none of them above half the best.  (Measured on emoji: runs that collapsed into one image slid
        # 0.28 -> 0.06 over 8 epochs; healthy early blobs dip to 0.08 for an epoch or two, then rise.)
        self.slide_window, self.slide_ratio = 5, 0.15
        self.recent: list[float] = []
        self.best_ratio = 0.0
        self.real_diversity: float | None = None
        self.findings: list[dict] = []

    # ---------------------------------------------------------------- callback hooks
    def on_log(self, run: RunContext, record: dict) -> None:
        step = record["step"]
        losses = (record.get("loss_d"), record.get("loss_g"))
        if any(v is not None and not math.isfinite(v) for v in losses):
            self._report(run, "diverged", step, loss_d=losses[0], loss_g=losses[1])
        else:
            self.active.discard("diverged")
        d_x, d_g_z = record.get("d_x", 0.5), record.get("d_g_z", 0.5)
        # ``d_wins`` is the share of the logged steps in which D separated its batch completely, as the
        # loss defines it (probabilities for BCE-type losses, margins for hinge).
        if record.get("d_wins", 0.0) >= 1.0 - self.threshold:
            if self.d_wins_since is None:
                self.d_wins_since = step - run.cfg.train.log_every
            if step - self.d_wins_since >= self.d_wins_steps:
                self._report(run, "d_wins", step, d_x=d_x, d_g_z=d_g_z, steps=step - self.d_wins_since)
        else:
            self.d_wins_since = None
            self.active.discard("d_wins")

    def on_epoch_end(self, run: RunContext, epoch: int) -> None:
        if self.real_diversity is None:
            n = min(len(run.dataset), run.fixed_noise.shape[0])
            reals = torch.stack([run.dataset[i][0] for i in range(n)]).float() / 127.5 - 1
            self.real_diversity = diversity(reals)
        fakes = generate(run.sampling_generator(), run.fixed_noise, run.fixed_labels)
        ratio = diversity(fakes) / max(self.real_diversity, 1e-8)
        self.observe(ratio)
        run.add_summary(sample_diversity=round(ratio, 4))
        # Early samples are blurry and alike anyway: only near-copies, a drop from a diversity that was
        # once healthy, or low diversity that persists past the first thousands of steps count as
        # collapse.  (Early blobs swing between 0.1 and 0.35 of the real diversity from epoch to epoch;
        # the tutorial's collapse on emoji fell from 0.73 to 0.25.)
        if self.is_collapse(ratio, run.progress.step):
            self._report(run, "collapse", run.progress.step, ratio=ratio, best=self.best_ratio)
        else:
            self.active.discard("collapse")

    def observe(self, ratio: float) -> None:
        """Record the diversity ratio of one epoch end (before :meth:`is_collapse` judges it)."""
        self.best_ratio = max(self.best_ratio, ratio)
        self.recent = (self.recent + [ratio])[-self.slide_window:]

    def is_collapse(self, ratio: float, step: int) -> bool:
        """Whether diversity ``ratio`` (of the real images') at ``step`` counts as collapse; call after
        :meth:`observe` has recorded it."""
        dropped = ratio < 0.6 * self.best_ratio and self.best_ratio >= self.healthy_ratio
        slid = (len(self.recent) == self.slide_window and max(self.recent) < self.slide_ratio
                and max(self.recent) < 0.5 * self.best_ratio)
        return (ratio < self.identical_ratio or slid
                or (ratio < self.collapse_ratio and (dropped or step >= self.min_steps)))

    # ---------------------------------------------------------------- reporting
    def _report(self, run: RunContext, kind: str, step: int, **values) -> None:
        if kind in self.active:
            return
        self.active.add(kind)
        message = ADVICE[kind].format(**values)
        finding = {"step": step, "kind": kind, "message": message}
        self.findings.append(finding)
        run.add_summary(diagnostics=[f["message"] for f in self.findings])
        if run.is_main:
            print(f"\nganforge diagnostics (step {step}): {message}", file=sys.stderr, flush=True)
            with open(run.files.diagnostics, "a") as f:
                f.write(json.dumps(finding) + "\n")
