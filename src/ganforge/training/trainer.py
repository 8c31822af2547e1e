"""The training loop: epochs of GAN steps, with logging, progress grids and checkpoints.

The loop itself is :meth:`Trainer.fit`; everything a run does besides training (TensorBoard, the HTML
report, in-training evaluation, diagnostics) attaches as a *callback* (the contract and the context a
callback is given: :mod:`ganforge.training.context`), so the loop stays short.
"""
from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ganforge import nets
from ganforge.classes import fixed_labels
from ganforge.config import Config, ConfigError
from ganforge.data import build_loader
from ganforge.data.channel_check import check_channels
from ganforge.devices import PeakMemory, hardware_description, pick_device, rng_state, set_rng_state  # noqa: F401  (also imported from here)
from ganforge.runfiles import RunDir, RunFacts
from ganforge.sampling import generate, save_grid
from ganforge.storage import CheckpointStore, atomic_torch_save, atomic_write_text, safe_load
from ganforge.training import distributed
from ganforge.training.build import Components, build_components
from ganforge.training.clusters import latent_clusters
from ganforge.training.context import Hooks, RunContext
from ganforge.training.guard import Recovery
from ganforge.training.loop_schedule import LoopSchedule
from ganforge.training.progress_bar import ProgressBar
from ganforge.training.signals import StopSignals, StopWaiting, ignore_stop_signals
from ganforge.training.speed import accelerate


@dataclass
class Progress:
    step: int = 0  # generator steps done
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # real batches consumed in the current epoch
    images_seen: int = 0
    elapsed: float = 0.0  # training seconds across resumes


class _LogWindow:
    """The steps since the last metrics line: their outputs, their images, and when the window opened."""

    def __init__(self):
        self.reset()

    def reset(self, now: float | None = None) -> None:
        self.outputs: list[dict[str, torch.Tensor]] = []
        self.images = 0
        self.opened = time.perf_counter() if now is None else now

    def add(self, out: dict[str, torch.Tensor], images: int) -> None:
        self.outputs.append(out)
        self.images += images

    def images_per_s(self, now: float) -> float:
        return self.images / max(now - self.opened, 1e-9)


class _Stopwatch:
    """Training time since the last bank into ``progress.elapsed`` (callbacks' work excluded)."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def running(self) -> float:
        return time.perf_counter() - self.t0

    def bank(self, progress: Progress) -> None:
        progress.elapsed += time.perf_counter() - self.t0
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def excluded(self, window: _LogWindow):
        """Time spent inside counts neither as training time nor in the images-per-second of the log line."""
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            self.t0 += took
            window.opened += took


@dataclass
class Trainer:
    cfg: Config
    run_dir: Path
    quiet: bool = False
    log_format: str = "bar"  # bar, json, quiet
    callbacks: list = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    parts: Components | None = None  # what to train (training.build.build_components); built from cfg if None
    facts: RunFacts | None = None  # what ganforge records of the run (run.json); a new run's if None

    def __post_init__(self):
        cfg = self.cfg
        if self.facts is None:
            self.facts = RunFacts().at_scale(self.world_size, cfg.data.batch_size)
        self.device = pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed + self.rank)
        random.seed(cfg.train.seed + self.rank)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        parts = self.parts or build_components(cfg, self.device, self.world_size)
        self.G, self.D, self.opt_g, self.opt_d = parts.G, parts.D, parts.opt_g, parts.opt_d
        self.step_fn, self.lr_schedules, self.ema, self.guard = parts.step_fn, parts.lr_schedules, parts.ema, parts.guard
        if self.ema is not None:
            self.G_ema = self.ema.model  # sampling_generator() picks it up
        self.rolled_back = False  # set when the guard's failure rolled the run back mid-epoch
        self.stop = StopSignals()  # SIGINT/SIGTERM set it while signals.fit_until_stopped runs
        g = torch.Generator().manual_seed(cfg.train.seed + 12345)
        self.fixed_noise = torch.randn(cfg.train.n_fixed_noise, cfg.model.nz, generator=g).to(self.device)
        self.fixed_labels = fixed_labels(cfg.train.n_fixed_noise, cfg.model.num_classes).to(self.device) \
            if cfg.model.num_classes else None
        self.progress = Progress()
        self.peak_memory = PeakMemory(self.device)  # CUDA only: in each metrics line and summary.json
        self.checkpoints = CheckpointStore(RunDir(self.run_dir).checkpoints, cfg.train.keep_checkpoints)
        self.recovery = Recovery(self.guard, self.checkpoints, self.rank == 0)
        self.loader = None  # opened when fit() starts: reading data comes after every config check
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
            "facts": self.facts.to_dict(),
            "architecture": nets.architecture_id(self.cfg),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "d_input": self.step_fn.d_input.state_dict(),
            "penalties": [p.state_dict() for p in self.step_fn.penalties],
            "g_terms": [t.state_dict() for t in self.step_fn.g_terms],
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
        for term, saved in zip(self.step_fn.g_terms, state.get("g_terms", [])):
            term.load_state_dict(saved)
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
        path = save_grid(images, RunDir(self.run_dir).samples / f"{name}.png")
        with open(path.parent / RunDir.GRIDS, "a") as f:  # the grids in the order written, with their steps
            f.write(json.dumps({"file": path.name, "step": self.progress.step, "epoch": self.progress.epoch}) + "\n")
        self.hooks("on_samples", path)
        return path

    def _record_class_names(self) -> None:
        """A conditional run keeps its class folder names in its facts (run.json, checkpoints,
        generator.pt, exports); a resume whose data has other classes would mislabel every image: refused."""
        found = self.loader.classes if self.cfg.data.labels and self.cfg.model.num_classes else []
        known = self.facts.class_names
        if not found or found == known:
            return
        if known:
            raise ConfigError(
                f"the classes of {self.cfg.data.source} are not those this run was trained with: "
                f"now {', '.join(found[:8])}{', ...' if len(found) > 8 else ''}; the run has "
                f"{', '.join(known[:8])}{', ...' if len(known) > 8 else ''}. "
                "Labels are the sorted class folders, so they would mean other classes: restore the folders, "
                "or start a new run (--init-from this run fine-tunes it on the new classes if they are as many)")
        self.facts.class_names = list(found)  # in place: the callbacks hold the same facts
        if self.is_main:
            atomic_write_text(RunDir(self.run_dir).facts, self.facts.to_json())

    def sampling_generator(self) -> torch.nn.Module:
        """The generator that samples and metrics use (the EMA copy when the run keeps one)."""
        return getattr(self, "G_ema", None) or self.G

    def log(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(RunDir(self.run_dir).metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.log_format == "json":
            print(json.dumps(record), flush=True)
        self.hooks("on_log", record)

    def write_data_errors(self) -> None:
        errors = self.loader.drain_errors()
        if errors and self.is_main:
            with open(RunDir(self.run_dir).data_errors, "a") as f:
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
            **({"classes": list(self.facts.class_names)} if self.facts.class_names else {}),
            "device": str(self.device),
            "hardware": hardware_description(self.device),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            **self.peak_memory.over_run(),
        }
        summary.update(self.summary_extra)
        return summary

    def write_summary(self, status: str) -> None:
        if self.is_main:
            atomic_write_text(RunDir(self.run_dir).summary, json.dumps(self.summary(status), indent=2))

    def save_final_generator(self) -> Path:
        path = RunDir(self.run_dir).generator
        state = {"format": "ganforge-generator-1", "config": self.cfg.to_dict(), "facts": self.facts.to_dict(),
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
        group, batches = [], self.loader.epoch(epoch, start_batch)
        while True:
            try:
                with self.stop.waiting():  # a stop signal here ends the wait: the data may never come
                    batch = next(batches)
            except (StopIteration, StopWaiting):  # the epoch's end, or a stop: the loop saves where it is
                return
            group.append(batch)
            if len(group) == k:
                yield group
                group = []

    def fit(self) -> Path:
        """Train until the last step, the time budget, a stop signal, or a divergence it cannot recover."""
        self._start()
        schedule, window, status = self.schedule, _LogWindow(), "finished"
        bar = ProgressBar(schedule.total_steps, self.progress.step, self.cfg.train.max_minutes,
                          self.progress.elapsed, disable=self.log_format != "bar" or not self.is_main)
        while status == "finished" and not schedule.finished(self.progress.step) and not self.stop.stopping:
            watch = _Stopwatch()  # training time of this stretch of the epoch
            for group in self._groups(self.progress.epoch, self.progress.batch):
                out = self.step_fn(group, self.progress.step)
                window.add(out, self._advance(group))
                self.after_step(out)
                bar.update(self.progress.step, self.progress.elapsed + watch.running())
                step = self.progress.step
                if schedule.guard_check_due(step, self.progress.batch) and self._diverged():
                    window.reset()
                    bar.rolled_back(self.progress.step)  # where the rollback went back to
                    break
                with watch.excluded(window):  # per-step work such as evaluation is not training time
                    self.hooks("on_step", step)
                extra, self.log_extra = self.log_extra, {}
                if schedule.log_due(step, extra):
                    self._write_log_line(window, extra, bar)
                if schedule.sample_due(step):
                    self.write_samples(f"step_{step:08d}")
                if schedule.midsave_due(step):
                    watch.bank(self.progress)
                    self.save_checkpoint()
                    schedule.saved()
                trained = self.progress.elapsed + watch.running()
                if schedule.pace_due(step):  # a time budget: linear/cosine rates end when it does
                    self.lr_schedules.pace(step, schedule.agreed_seconds(trained))
                if schedule.out_of_time(step, trained):
                    status = "time budget reached"
                    break
                if schedule.finished(step) or self.stop.check(step):  # a stop signal: save below
                    break
            watch.bank(self.progress)
            if self.rolled_back:  # the guard restored the last good state: go on from there, or stop
                self.rolled_back = False
                status = "diverged" if self.stop_reason else status
            else:
                self._end_of_stretch(last=status != "finished" or self.stop.stopping)
        bar.close()
        return self._finish("interrupted" if self.stop.stopping and status == "finished" else status)

    # ------------------------------------------------------------------ the loop's parts
    def _start(self) -> None:
        """The data (after every config check), the resumed state, the schedule, speed-ups, on_start."""
        cfg = self.cfg
        self.loader = build_loader(cfg, self.device, self.rank, self.world_size, worker_init=ignore_stop_signals)
        check_channels(self.loader.dataset, cfg)  # data.channels against the images, before the first step
        self._record_class_names()
        # The latent groups' clusters of the training images, then the G terms that read the images
        # (feature matching: each cluster's statistics).
        clusters = latent_clusters(cfg, self.loader.dataset, self.device)
        for term in self.step_fn.g_terms:
            term.start(self.loader.dataset, self.device, clusters)
        if getattr(self, "_resume_state", None) is not None:
            self.load_state_dict(self._resume_state)
            self._resume_state = None
        self.schedule = LoopSchedule(cfg, self.loader.batches_per_epoch, self.world_size)
        self.lr_schedules.total_steps = self.schedule.total_steps
        self.speed = accelerate(self, steps_left=self.schedule.total_steps - self.progress.step)
        if self.is_main and self.log_format != "quiet":
            print(f"ganforge: {self.speed.describe()}", flush=True)
        self.recovery.snapshot_start(self.state_dict)
        self.hooks = Hooks(self.callbacks, self.context)
        self.hooks("on_start")

    def _advance(self, group: list) -> int:
        """Count one generator step of ``group``'s batches; the images it trained on (all ranks')."""
        n_images = sum(b[0].shape[0] for b in group) * self.world_size
        self.progress.step += 1
        self.progress.batch += len(group)
        self.progress.images_seen += n_images
        return n_images

    def _write_log_line(self, window: "_LogWindow", extra: dict, bar) -> None:
        now = time.perf_counter()
        record = self._log_record(window.outputs, window.images_per_s(now))
        record.update(extra)
        window.reset(now)
        bar.set_postfix_str(f"ep {self.progress.epoch + 1} D {record['loss_d']:.3f} G {record['loss_g']:.3f} "
                            f"D(x) {record['d_x']:.2f} D(G(z)) {record['d_g_z']:.2f} "
                            f"{record['images_per_s']:.0f} img/s")
        self.log(record)

    def _end_of_stretch(self, last: bool = False) -> None:
        """After the epoch's batches (or a stop inside it): its grid and checkpoint, so resume goes on here
        (with ``train.save_every_minutes``, at an epoch end only when that is due; the ``last`` always)."""
        self.write_data_errors()
        if self.schedule.epoch_over(self.progress.batch):  # the next epoch starts at its first batch
            self.progress.epoch += 1
            self.progress.batch = 0
            if not self.schedule.epoch_end_save_due(self.progress.step, last):
                return
            self.write_samples(f"epoch_{self.progress.epoch:04d}")
            self.save_checkpoint()
            self.schedule.saved()
            self.hooks("on_epoch_end", self.progress.epoch)
        else:  # stopped inside an epoch (max_steps, a signal, the time budget)
            self.write_samples(f"step_{self.progress.step:08d}")
            self.save_checkpoint()

    def _finish(self, status: str) -> Path:
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

    @property
    def stop_reason(self) -> str | None:
        """Why the run stopped after a divergence it could not recover from (None: it did not)."""
        return self.recovery.stop_reason

    def _diverged(self) -> bool:
        """Ask the guard (one host sync); on a failure, roll back as :class:`Recovery` decides."""
        reason = self.guard.failure()
        if reason is None:
            return False
        failed_at = self.progress.step

        def restore(state: dict) -> int:
            self.load_state_dict(state)
            return self.progress.step

        action = self.recovery.roll_back(reason, failed_at, restore, self.lr_schedules.scale)
        self.log({"step": failed_at, "epoch": self.progress.epoch + 1, "event": "guard", "reason": reason,
                  "action": action, "lr_g": self.opt_g.param_groups[0]["lr"], "lr_d": self.opt_d.param_groups[0]["lr"]})
        if self.is_main and self.log_format != "quiet":
            print(f"ganforge: divergence guard: {reason} at step {failed_at}; {action}", file=sys.stderr, flush=True)
        if self.stop_reason:
            self.summary_extra = {**getattr(self, "summary_extra", {}), "diverged": self.stop_reason}
        self.rolled_back = True
        return True

    def _log_record(self, pending: list[dict[str, torch.Tensor]], images_per_s: float) -> dict[str, Any]:
        # One host sync per log line: stack the steps' tensors and average them (a reading a piece gave
        # in only some of the window's steps, over those).
        keys = pending[-1].keys()
        means = torch.stack([torch.stack([p[k].float() for p in pending if k in p]).mean() for k in keys]).tolist()
        record: dict[str, Any] = {"step": self.progress.step, "epoch": self.progress.epoch + 1}
        record.update({k: round(v, 6) for k, v in zip(keys, means)})
        record["images_per_s"] = round(images_per_s, 1)
        record["lr_g"] = self.opt_g.param_groups[0]["lr"]
        record["lr_d"] = self.opt_d.param_groups[0]["lr"]
        record.update(self.step_fn.d_input.log())
        record.update(self.peak_memory.since_last())
        return record

