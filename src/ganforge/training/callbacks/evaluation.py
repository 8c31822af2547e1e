"""Evaluation during training: every ``eval.every`` steps, score the generator, log it, keep the best.

The scores join the losses on that step's line of ``metrics.jsonl`` (and so TensorBoard and the report):
``{"step", ..., "loss_d", ..., "fid_effnet_lite0", ..., "eval_seconds"}``.  When the metric named by
``eval.best`` improves, the full training state is saved as a checkpoint and as ``checkpoints/best.pt``
(beside the latest ones, never pruned), and ``summary.json`` names it with its score and step.

The generator evaluated is the one samples come from (the EMA copy when the run keeps one), with the
same latents (seed ``EVAL_SEED``) at every evaluation, so scores across steps compare like with like.
Evaluation draws no numbers from the training RNGs: a run trains the same with it on or off.
When training itself sees ImageNet features, ``summary.json``'s ``eval`` says so beside scores on an ImageNet
network's features (``shares_imagenet_features_with_training``: :mod:`ganforge.metrics.overlap`), and the
report labels them.
"""
from __future__ import annotations

import math
import time

import torch

from ganforge.config import Config
from ganforge.metrics import overlap
from ganforge.metrics.evaluate import best_key, check_eval_config, check_metrics, evaluate
from ganforge.training import distributed
from ganforge.training.context import RunContext


class EvalCallback:
    def __init__(self, cfg: Config):
        check_eval_config(cfg)
        e = cfg.eval
        self.every, self.n, self.features = e.every, e.n, e.features
        self.metrics = check_metrics(e.metrics)
        self.inception_weights = e.inception_weights
        self.best_key, self.higher_is_better = best_key(e.best, e.features)
        self.best_value: float | None = None

    def on_start(self, run: RunContext) -> None:
        if not run.is_main:
            return
        # A resumed run continues the comparison with the best score it already has.
        best = run.best_checkpoint() or {}
        if best.get("metric") is not None:
            self.best_value = float(best["metric"])

    def on_step(self, run: RunContext, step: int) -> None:
        if step % self.every:
            return
        # The main process scores (the others wait for its verdict); a best checkpoint is then saved by
        # every process together, as any checkpoint is (each contributes its random streams).
        candidate = self.evaluate(run) if run.is_main else None
        if distributed.broadcast_object(candidate is not None):
            saved = run.save_checkpoint(best=True, metric=candidate)
            if saved is not None:  # None: not the main process, or the guard refused a broken state
                self.best_value = candidate
                run.add_summary(
                    best_checkpoint="checkpoints/best.pt", best_metric=self.best_key, best_value=candidate,
                    best_step=step, best_rule="higher is better" if self.higher_is_better else "lower is better")

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.higher_is_better else value < self.best_value

    @staticmethod
    def _real_dataset(run: RunContext):
        """The run's own dataset, when it decodes images as evaluation wants them (no random crops)."""
        if run.cfg.data.crop != "center":
            return None
        return run.dataset

    def evaluate(self, run: RunContext) -> float | None:
        """Score the generator now and log the scores; the ``eval.best`` score if it beats the best so far."""
        step = run.progress.step
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
            report = evaluate(run.sampling_generator(), run.cfg, metrics=self.metrics, features=self.features,
                              n=self.n, cfg=run.cfg, device=run.device,
                              inception_weights=self.inception_weights, dataset=self._real_dataset(run))
        scores = {k: round(v, 6) for k, v in report.items() if k not in ("n_generated", "n_real")}
        # Logged on this step's metrics line, with the losses (the trainer writes it right after on_step).
        run.add_to_log(**scores, eval_seconds=round(time.perf_counter() - t0, 2))
        shared = {"shares_imagenet_features_with_training": overlap.training_imagenet_features(run.cfg)
                  } if overlap.shared_keys(run.cfg, scores) else {}
        run.add_summary(eval=dict(scores, step=step, features=self.features, n=report["n_generated"], **shared))
        value = report[self.best_key]
        return value if self._better(value) else None
