"""The training loop: epochs of GAN steps, with logging, progress grids and checkpoints.

The loop itself is :meth:`Trainer.fit`; everything a run does besides training (TensorBoard, the HTML
report, in-training evaluation, diagnostics) attaches as a *callback* (the contract and the context a
callback is given: :mod:`ganforge.training.context`), so the loop stays short.
"""
from __future__ import annotations

import io
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ganforge import nets
from ganforge.classes import fixed_labels
from ganforge.config import Config, ConfigError
from ganforge.data import build_loader
from ganforge.data.channel_check import check_channels
from ganforge.devices import hardware_description, pick_device, rng_state, set_rng_state  # noqa: F401  (also imported from here)
from ganforge.runfiles import RunDir
from ganforge.sampling import generate, save_grid
from ganforge.storage import CheckpointStore, atomic_torch_save, atomic_write_text, safe_load, to_bytes
from ganforge.training.ema import GeneratorEMA
from ganforge.training.guard import DivergenceGuard
from ganforge.training.losses import build_loss
from ganforge.training.optim import build_optimizer
from ganforge.training.schedules import build_lr_schedules
from ganforge.training.signals import StopSignals, ignore_stop_signals
from ganforge.training import distributed
from ganforge.training.speed import accelerate
from ganforge.training.step import GANStep
from ganforge.training.context import Hooks, RunContext
from ganforge.training.build import build_d_input, build_penalties, build_targets


@dataclass
class Progress:
    step: int = 0  # generator steps done
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # real batches consumed in the current epoch
    images_seen: int = 0
    elapsed: float = 0.0  # training seconds across resumes


@dataclass
class Trainer:
    cfg: Config
    run_dir: Path
    quiet: bool = False
    log_format: str = "bar"  # bar, json, quiet
    callbacks: list = field(default_factory=list)
    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        cfg = self.cfg
        self.device = pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed + self.rank)
        random.seed(cfg.train.seed + self.rank)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.G, self.D = nets.build(cfg)
        self.G.to(self.device)
        self.D.to(self.device)
        self.opt_g = build_optimizer(self.G, cfg.optim.g)
        self.opt_d = build_optimizer(self.D, cfg.optim.d)
        self.step_fn = GANStep(
            G=self.G, D=self.D, opt_g=self.opt_g, opt_d=self.opt_d, loss=build_loss(cfg), nz=cfg.model.nz,
            targets=build_targets(cfg), d_input=build_d_input(cfg), penalties=build_penalties(cfg),
            l1_g=cfg.optim.g.l1, l1_d=cfg.optim.d.l1, num_classes=cfg.model.num_classes)
        self.lr_schedules = build_lr_schedules(cfg, self.opt_g, self.opt_d)
        images_per_step = cfg.data.batch_size * max(self.world_size, 1)  # the EMA's half-life counts images
        self.ema = GeneratorEMA(self.G, cfg.ema, images_per_step) if cfg.ema.enabled else None
        if self.ema is not None:
            self.G_ema = self.ema.model  # sampling_generator() picks it up
        self.guard = DivergenceGuard(cfg.guard)
        self.rolled_back = False  # set when the guard restored a checkpoint mid-epoch
        self.stop_reason: str | None = None  # set when the guard gave up
        self.stop = StopSignals()  # SIGINT/SIGTERM set it while signals.fit_until_stopped runs
        g = torch.Generator().manual_seed(cfg.train.seed + 12345)
        self.fixed_noise = torch.randn(cfg.train.n_fixed_noise, cfg.model.nz, generator=g).to(self.device)
        self.fixed_labels = fixed_labels(cfg.train.n_fixed_noise, cfg.model.num_classes).to(self.device) \
            if cfg.model.num_classes else None
        self.progress = Progress()
        self.checkpoints = CheckpointStore(self.run_dir / "checkpoints", cfg.train.keep_checkpoints)
        self.loader = None  # built in fit(): reading data comes after every config check
        self.is_main = self.rank == 0
        self.summary_extra: dict = {}  # callbacks add to summary.json here (RunContext.add_summary)
        self.log_extra: dict = {}  # on_step callbacks add keys to this step's metrics line (RunContext.add_to_log)
        self.context = RunContext(self)  # all that callbacks see of the run
        self.hooks = Hooks(self.callbacks, self.context)  # bound again when fit() starts

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "format": "ganforge-checkpoint-1",
            "config": self.cfg.to_dict(),
            "architecture": nets.architecture_id(self.cfg),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "d_input": self.step_fn.d_input.state_dict(),
            "penalties": [p.state_dict() for p in self.step_fn.penalties],
            "loss_scaling": {"d": self.step_fn.scaling_d.state_dict(), "g": self.step_fn.scaling_g.state_dict()},
            "lr_schedules": self.lr_schedules.state_dict(),
            "guard": self.guard.state_dict(),
            **({"G_ema": self.ema.state_dict()} if self.ema is not None else {}),
            "progress": vars(self.progress).copy(),
            "fixed_noise": self.fixed_noise.cpu(),
            "rng": rng_state(self.device),
            "loader": self.loader.state_dict() if self.loader is not None else None,
            "epoch": self.progress.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        nets.check_architecture(state.get("architecture"), self.cfg)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step_fn.d_input.load_state_dict(state.get("d_input", {}))
        for penalty, saved in zip(self.step_fn.penalties, state.get("penalties", [])):
            penalty.load_state_dict(saved)
        self.loss_scaling_state = state.get("loss_scaling", {})  # fp16 GradScalers: set up by speed.accelerate
        self.lr_schedules.load_state_dict(state.get("lr_schedules", {}))
        self.guard.load_state_dict(state.get("guard", {}))
        if self.ema is not None:
            # A checkpoint from a run without EMA starts the average from its generator.
            self.ema.load_state_dict(state.get("G_ema") or state["G"])
        self.progress = Progress(**state["progress"])
        self.fixed_noise = state["fixed_noise"].to(self.device)
        if state.get("loader") is not None and self.loader is not None:
            self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"], self.device)
        distributed.restore_rank_state(self, state)  # under torchrun: this rank's own streams

    def save_checkpoint(self, best: bool = False, metric: float | None = None) -> Path | None:
        """Checkpoint now (every rank calls this); ``best``: also as checkpoints/best.pt, scored ``metric``."""
        # Never checkpoint a broken state: the guard's next check rolls back.  Every rank asks (the ranks
        # agree on the verdict), so they skip the save, or make it, together.
        if self.guard.peek() is not None:
            return None
        ranks = distributed.gather_rank_states(self)  # every rank's random streams (None on one process)
        if not self.is_main:
            return None
        state = self.state_dict()
        if ranks is not None:
            state["ranks"] = ranks
        return self.checkpoints.save(state, self.progress.step, best=best, metric=metric)

    # ------------------------------------------------------------------ outputs
    def write_samples(self, name: str) -> Path | None:
        """The fixed-noise grid ``samples/NAME.png``, listed in ``samples/grids.jsonl`` with its step, and
        handed to the callbacks' ``on_samples`` (the report and TensorBoard show it at once)."""
        if not self.is_main:
            return None
        images = generate(self.sampling_generator(), self.fixed_noise, self.fixed_labels)
        path = save_grid(images, self.run_dir / "samples" / f"{name}.png")
        with open(path.parent / RunDir.GRIDS, "a") as f:  # the grids in the order written, with their steps
            f.write(json.dumps({"file": path.name, "step": self.progress.step, "epoch": self.progress.epoch}) + "\n")
        self.hooks("on_samples", path)
        return path

    def _record_class_names(self) -> None:
        """A conditional run keeps its class folder names in its config (config.yaml, checkpoints,
        generator.pt, exports); a resume whose data has other classes would mislabel every image: refused."""
        found = self.loader.classes if self.cfg.data.labels and self.cfg.model.num_classes else []
        if not found or found == self.cfg.data.class_names:
            return
        if self.cfg.data.class_names:
            raise ConfigError(
                f"the classes of {self.cfg.data.source} are not those this run was trained with: "
                f"now {', '.join(found[:8])}{', ...' if len(found) > 8 else ''}; the run has "
                f"{', '.join(self.cfg.data.class_names[:8])}{', ...' if len(self.cfg.data.class_names) > 8 else ''}. "
                "Labels are the sorted class folders, so they would mean other classes: restore the folders, "
                "or start a new run (--init-from this run fine-tunes it on the new classes if they are as many)")
        self.cfg.data.class_names = list(found)  # in place: the callbacks hold the same config
        if self.is_main:
            atomic_write_text(self.run_dir / "config.yaml", self.cfg.to_yaml())

    def sampling_generator(self) -> torch.nn.Module:
        """The generator that samples and metrics use (the EMA copy when the run keeps one)."""
        return getattr(self, "G_ema", None) or self.G

    def log(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.log_format == "json":
            print(json.dumps(record), flush=True)
        self.hooks("on_log", record)

    def write_data_errors(self) -> None:
        errors = self.loader.drain_errors()
        if errors and self.is_main:
            with open(self.run_dir / "data_errors.txt", "a") as f:
                for name, reason in errors:
                    f.write(f"{name}\t{reason}\n")
            self.data_error_count = getattr(self, "data_error_count", 0) + len(errors)

    def summary(self, status: str) -> dict:
        """What ``summary.json`` says (``status`` "running" while the run goes on: the live report's)."""
        latest = self.checkpoints.manifest()["checkpoints"]
        summary = {
            "status": status,
            "preset": self.cfg.preset,
            "dataset": self.cfg.data.source,
            "images": self.loader.num_images if self.loader else None,
            "skipped_images": getattr(self, "data_error_count", 0),
            "step": self.progress.step,
            "epoch": self.progress.epoch,
            "images_seen": self.progress.images_seen,
            "train_seconds": round(self.progress.elapsed, 2),
            "last_checkpoint": f"checkpoints/{latest[-1]['file']}" if latest else None,
            "best_checkpoint": (self.checkpoints.manifest().get("best") or {}).get("file"),
            **({"classes": list(self.cfg.data.class_names)} if self.cfg.data.class_names else {}),
            "device": str(self.device),
            "hardware": hardware_description(self.device),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        }
        summary.update(self.summary_extra)
        return summary

    def write_summary(self, status: str) -> None:
        if self.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(self.summary(status), indent=2))

    def save_final_generator(self) -> Path:
        path = self.run_dir / "generator.pt"
        state = {"format": "ganforge-generator-1", "config": self.cfg.to_dict(),
                 "architecture": nets.architecture_id(self.cfg),
                 "G": self.sampling_generator().state_dict(), "fixed_noise": self.fixed_noise.cpu(),
                 "step": self.progress.step}
        atomic_torch_save(path, state)
        return path

    # ------------------------------------------------------------------ the loop
    def resume_from(self, checkpoint: Path) -> None:
        self._resume_state = safe_load(checkpoint, map_location="cpu")

    def _groups(self, epoch: int, start_batch: int):
        """Groups of ``d_steps`` consecutive real batches: one group per generator step."""
        k = self.cfg.train.d_steps
        group = []
        for batch in self.loader.epoch(epoch, start_batch):
            group.append(batch)
            if len(group) == k:
                yield group
                group = []

    def fit(self) -> Path:
        cfg = self.cfg
        self.loader = build_loader(cfg, self.device, self.rank, self.world_size, worker_init=ignore_stop_signals)
        check_channels(self.loader.dataset, cfg)  # data.channels against the images, before the first step
        self._record_class_names()
        if getattr(self, "_resume_state", None) is not None:
            self.load_state_dict(self._resume_state)
            self._resume_state = None
        steps_per_epoch = self.loader.batches_per_epoch // cfg.train.d_steps
        total_steps = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
        self.lr_schedules.total_steps = total_steps
        self.speed = accelerate(self, steps_left=total_steps - self.progress.step)
        if self.is_main and self.log_format != "quiet":
            print(f"ganforge: {self.speed.describe()}", flush=True)
        self._snapshot_start()
        self.hooks = Hooks(self.callbacks, self.context)
        self.hooks("on_start")
        bar = tqdm(total=total_steps, initial=self.progress.step, disable=self.log_format != "bar" or not self.is_main,
                   unit="step", dynamic_ncols=True)
        pending: list[dict[str, torch.Tensor]] = []
        t_log, images_since = time.perf_counter(), 0
        t_save = time.monotonic()
        status = "finished"
        while self.progress.step < total_steps and not self.stop.stopping and status == "finished":
            epoch = self.progress.epoch
            t0 = time.perf_counter()
            for group in self._groups(epoch, self.progress.batch):
                out = self.step_fn(group, self.progress.step)
                self.progress.step += 1
                self.progress.batch += len(group)
                n_images = sum(b[0].shape[0] for b in group) * self.world_size
                self.progress.images_seen += n_images
                images_since += n_images
                pending.append(out)
                self.after_step(out)
                bar.update(1)
                if self._guard_check_due(total_steps, t_save) and self._diverged():
                    pending, t_log, images_since = [], time.perf_counter(), 0
                    bar.n = self.progress.step
                    break
                hooks_start = time.perf_counter()
                self.hooks("on_step", self.progress.step)  # per-step work such as evaluation; it may add to the log line
                hooks_time = time.perf_counter() - hooks_start
                t_log, t0 = t_log + hooks_time, t0 + hooks_time  # evaluating is not training: keep it out of speeds
                extra, self.log_extra = self.log_extra, {}
                if extra or self.progress.step % cfg.train.log_every == 0 or self.progress.step == total_steps:
                    now = time.perf_counter()
                    record = self._log_record(pending, images_since / max(now - t_log, 1e-9))
                    record.update(extra)
                    pending, t_log, images_since = [], now, 0
                    bar.set_postfix_str(f"ep {epoch + 1} D {record['loss_d']:.3f} G {record['loss_g']:.3f} "
                                        f"D(x) {record['d_x']:.2f} D(G(z)) {record['d_g_z']:.2f} "
                                        f"{record['images_per_s']:.0f} img/s")
                    self.log(record)
                if cfg.train.sample_every and self.progress.step % cfg.train.sample_every == 0:
                    self.write_samples(f"step_{self.progress.step:08d}")
                if self._midsave_due(t_save):
                    self.progress.elapsed += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_checkpoint()
                    t_save = time.monotonic()
                if self._out_of_time(t0):
                    status = "time budget reached"
                    break
                if self.progress.step >= total_steps or self.stop.check(self.progress.step):  # a stop signal: save below
                    break
            self.progress.elapsed += time.perf_counter() - t0
            if self.rolled_back:  # the guard restored the last good state: go on from there, or stop
                self.rolled_back = False
                if self.stop_reason:
                    status = "diverged"
                    break
                continue
            self.write_data_errors()
            if self.progress.batch + cfg.train.d_steps > self.loader.batches_per_epoch:
                # The epoch is over: the next one starts at its first batch.
                self.progress.epoch += 1
                self.progress.batch = 0
                self.write_samples(f"epoch_{self.progress.epoch:04d}")
                self.save_checkpoint()
                t_save = time.monotonic()
                self.hooks("on_epoch_end", self.progress.epoch)
            else:
                # Stopped inside an epoch (max_steps): save where we are so resume continues here.
                self.write_samples(f"step_{self.progress.step:08d}")
                self.save_checkpoint()
        bar.close()
        if self.stop.stopping and status == "finished":
            status = "interrupted"
        if self.is_main:
            self.save_final_generator()
        self.write_summary(status)
        self.hooks("on_end")
        return self.run_dir

    # ------------------------------------------------------------------ after each step, and the guard
    def after_step(self, out: dict[str, torch.Tensor]) -> None:
        """What follows every generator step: the EMA of G, the learning-rate schedules, the guard's watch."""
        if self.ema is not None:
            self.ema.update(self.G, self.progress.step)
        self.lr_schedules.step()
        self.guard.watch(out)

    def _snapshot_start(self) -> None:
        """The state to roll back to before the first checkpoint exists (kept in memory, as bytes)."""
        self._start_state = None
        if not self.guard.enabled:
            return
        # Rank 0's view decides, as in _diverged: every rank must have this snapshot when it is used.
        found = self.checkpoints.latest_valid(warn=lambda *_: None) if self.is_main else None
        if distributed.broadcast_object(found is None):
            self._start_state = to_bytes(self.state_dict())

    def _guard_check_due(self, total_steps: int, t_save: float) -> bool:
        """At every log line and before anything is saved: a bad state is never checkpointed."""
        s, t, every = self.progress.step, self.cfg.train, self.cfg.eval.every
        return (s % t.log_every == 0 or s >= total_steps or self._midsave_due(t_save) or bool(every and s % every == 0)
                or self.progress.batch + t.d_steps > self.loader.batches_per_epoch)

    def _diverged(self) -> bool:
        """Ask the guard (one host sync); on a failure roll back to the last good state."""
        reason = self.guard.failure()
        if reason is None:
            return False
        failed_at, recoveries = self.progress.step, self.guard.recoveries
        # Every rank restores the checkpoint rank 0 picks (it alone writes them; the guard's verdict is
        # the same on every rank, see DivergenceGuard.failure).
        found = self.checkpoints.latest_valid(warn=lambda *_: None) if self.is_main else None
        found = distributed.broadcast_object(found)
        if found is not None:
            state, source = safe_load(found[0], map_location="cpu"), found[0].name
        else:
            state, source = torch.load(io.BytesIO(self._start_state), weights_only=True), "the start of the run"
        self.load_state_dict(state)
        if recoveries < self.guard.max_recoveries:
            self.guard.recoveries = recoveries + 1
            self.lr_schedules.scale(self.guard.lr_factor)
            action = (f"restored {source} (step {self.progress.step}) and multiplied the learning rates by "
                      f"{self.guard.lr_factor} (recovery {recoveries + 1} of {self.guard.max_recoveries})")
        else:
            self.guard.recoveries = recoveries
            self.stop_reason = (f"{reason} at step {failed_at} after {recoveries} recovery(ies); the run stopped "
                                f"and generator.pt holds the last good state ({source}, step {self.progress.step}). "
                                "Try lower learning rates (optim.g.lr, optim.d.lr), loss.name=hinge with "
                                "model.spectral_norm=true, or an R1 penalty (loss.r1_gamma)")
            action = "stopped the run"
        self.log({"step": failed_at, "epoch": self.progress.epoch + 1, "event": "guard", "reason": reason,
                  "action": action, "lr_g": self.opt_g.param_groups[0]["lr"], "lr_d": self.opt_d.param_groups[0]["lr"]})
        if self.is_main and self.log_format != "quiet":
            print(f"ganforge: divergence guard: {reason} at step {failed_at}; {action}", file=sys.stderr, flush=True)
        if self.stop_reason:
            self.summary_extra = {**getattr(self, "summary_extra", {}), "diverged": self.stop_reason}
        self.rolled_back = True
        return True

    def _out_of_time(self, t0: float) -> bool:
        """``train.max_minutes`` of training time (summed across resumes) are spent."""
        budget = self.cfg.train.max_minutes * 60
        over = bool(budget) and self.progress.elapsed + time.perf_counter() - t0 >= budget
        if budget and self.world_size > 1:
            # Each rank's clock says something else: the ranks agree (one small all-reduce, with a host
            # sync, so only at each log line's step, as StopSignals.check does) and stop after the same step.
            if self.progress.step % self.cfg.train.log_every:
                return False
            over = distributed.any_rank(over)
        return over

    def _midsave_due(self, t_save: float) -> bool:
        t = self.cfg.train
        by_steps = t.midsave_steps and self.progress.step % t.midsave_steps == 0
        by_time = t.midsave_minutes and time.monotonic() - t_save >= t.midsave_minutes * 60
        if t.midsave_minutes and self.world_size > 1:
            by_time = distributed.any_rank(bool(by_time))  # clocks differ: all ranks save together
        return bool(by_steps or by_time)

    def _log_record(self, pending: list[dict[str, torch.Tensor]], images_per_s: float) -> dict[str, Any]:
        # One host sync per log line: stack the steps' tensors and average them.
        keys = pending[-1].keys()
        means = torch.stack([torch.stack([p[k].float() for p in pending]).mean() for k in keys]).tolist()
        record: dict[str, Any] = {"step": self.progress.step, "epoch": self.progress.epoch + 1}
        record.update({k: round(v, 6) for k, v in zip(keys, means)})
        record["images_per_s"] = round(images_per_s, 1)
        record["lr_g"] = self.opt_g.param_groups[0]["lr"]
        record["lr_d"] = self.opt_d.param_groups[0]["lr"]
        record.update(self.step_fn.d_input.log())
        return record

