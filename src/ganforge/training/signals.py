"""Stopping on SIGINT / SIGTERM without losing work: finish the step, save, say how to resume, exit 0.

A cluster scheduler sends SIGTERM some seconds before it preempts a job (Slurm, Kubernetes), and Ctrl-C
sends SIGINT.  Either one only sets a flag: the training loop checks it after every step
(:attr:`StopSignals.requested`), saves a checkpoint where it is and returns normally, so the process
exits with status 0 and the scheduler sees a clean stop.  A second signal means "now": the process
exits at once with status 128 + signal number, as a shell reports a killed command.  Even then nothing
is lost but the work since the last save, because every checkpoint write is atomic.

Data-loader worker processes ignore both signals (:func:`ignore_stop_signals`, called as they start),
since a terminal or a scheduler signals the whole process group; the trainer shuts them down as it stops.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from ganforge.data.errors import DataError
from ganforge.runfiles import RunDir
from ganforge.storage import StorageError, resume_command, storage_error_message

HANDLED = (signal.SIGINT, signal.SIGTERM)
#: Seconds a stop signal waits for the next batch before it gives up on the data and saves.
STUCK_AFTER = 2.0


class StopWaiting(BaseException):
    """A stop signal came while the loop waited for data (which may never come: a hung network mount).

    A BaseException, like KeyboardInterrupt, so that the data loader's own ``except Exception`` handlers
    let it through."""


class StopSignals:
    """The "please stop" flag of a training run, set by SIGINT or SIGTERM while installed.

    Use as a context manager around the loop; outside one (or off the main thread, where Python cannot
    install handlers) it is a flag nobody sets.  The loop asks :meth:`check` after every step.  With
    several processes (torchrun) every rank must stop after the same step, or the others would wait
    forever in the next step's all-reduce: the ranks agree (one small all-reduce) every ``every`` steps,
    so a stop comes at most that many steps after the signal.
    """

    def __init__(self, world_size: int = 1, every: int = 1) -> None:
        self.signum: int | None = None  # the signal this process received
        self.stopping = False  # the decision the loop acts on (the same on every rank)
        self.agreed: int = 0  # with several processes: the signal some rank received (0: none yet)
        self.world_size, self.every = world_size, max(1, every)
        self._previous: dict[int, object] = {}
        self._owner_pid = os.getpid()
        self._waiting = False  # inside waiting(): a first signal ends the wait

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self, step: int) -> bool:
        """Whether to stop after ``step``; once true it stays true."""
        if not self.stopping:
            if self.world_size <= 1:
                self.stopping = self.requested
            elif step % self.every == 0:
                from ganforge.training import distributed
                # The signal number rather than a flag: rank 0 names the signal even when it went to
                # another process only (a scheduler or `kill` signalling one rank).
                self.agreed = distributed.max_over_ranks(self.signum or 0)
                self.stopping = self.agreed > 0
        return self.stopping

    @property
    def name(self) -> str:
        signum = self.signum or self.agreed
        return signal.Signals(signum).name if signum else ""

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked data-loader worker: the trainer decides when to stop
        if self.signum is None:
            self.signum = signum
            print(f"\nganforge: {signal.Signals(signum).name} received: finishing this step, then saving a "
                  "checkpoint (send it again to stop at once, losing the work since the last save)",
                  file=sys.stderr, flush=True)
            if self._waiting and hasattr(signal, "setitimer"):
                # Between steps, waiting for data that may never come (a worker stuck on a dead mount):
                # if it has not come in STUCK_AFTER seconds, stop waiting (interrupting the wait at once
                # could cut a batch's transfer from a worker in half) and save where the run is.
                self._previous.setdefault(signal.SIGALRM, signal.signal(signal.SIGALRM, self._stop_waiting))
                signal.setitimer(signal.ITIMER_REAL, STUCK_AFTER)
            return
        print(f"\nganforge: second signal ({signal.Signals(signum).name}): stopping at once", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    def _stop_waiting(self, signum: int, frame) -> None:
        if self._waiting and os.getpid() == self._owner_pid:
            self.stopping = True
            raise StopWaiting()

    @contextlib.contextmanager
    def waiting(self):
        """Around waiting for the next batch (between steps): a first signal that finds the wait still
        going ``STUCK_AFTER`` seconds later raises :class:`StopWaiting` there, so a run whose data stopped
        coming (a loader worker stuck on a dead mount) still saves and stops.  With several processes the
        ranks must stop together, so they wait as before."""
        if self.world_size > 1 or self.stopping:
            yield
            return
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in HANDLED:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if hasattr(signal, "SIGALRM") and signal.SIGALRM in self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def ignore_stop_signals() -> None:
    """In a data-loader worker: SIGINT and SIGTERM sent to the whole process group (Ctrl-C, a scheduler)
    are the trainer's to act on; torch's worker would otherwise die of SIGTERM and take the run with it."""
    for s in HANDLED:
        signal.signal(s, signal.SIG_IGN)


def stopped_message(run_dir: Path, signame: str, step: int, checkpoint: str | None) -> str:
    saved = f"saved {Path(run_dir) / checkpoint}" if checkpoint else "nothing to save yet"
    return (f"ganforge: stopped by {signame} at step {step}; {saved}.\n"
            f"Resume with:\n  {resume_command(run_dir)}")


def _save_after_data_error(trainer, error: Exception) -> str:
    """After the data failed between steps: close the loader, checkpoint where the run is (unless that
    step is saved already), mark the run stopped; the message for the user."""
    if trainer.loader is not None:
        trainer.loader.close(at_once=True)
    run_dir = Path(trainer.run_dir)
    checkpoint = None
    if trainer.world_size == 1:  # with several ranks the others are inside a step: no save together
        saved = trainer.checkpoints.manifest()["checkpoints"]
        if trainer.progress.step > (saved[-1]["step"] if saved else 0):
            path = trainer.save_checkpoint()
            checkpoint = path.name if path is not None else None
        trainer.write_summary("stopped: data error")
    found = trainer.checkpoints.latest_valid(warn=lambda *_: None) if trainer.is_main else None
    if found is None:
        kept = "no checkpoint was saved yet, so nothing is lost but this start"
        then = "start the run again"
    else:
        kept = f"{'saved' if checkpoint else 'the last checkpoint is'} {found[0]} (step {found[1]['step']})"
        then = f"continue with: {resume_command(run_dir)}"
    return (f"{error}. Training stopped at step {trainer.progress.step}; {kept}. Restore the data "
            f"({trainer.cfg.data.source}), then {then}")


def fit_until_stopped(trainer) -> Path:
    """``trainer.fit()`` with SIGINT/SIGTERM turned into a clean stop (it prints the resume command), and a
    write that the disk refused turned into a :class:`~ganforge.storage.StorageError` that
    says what to do."""
    import json

    with StopSignals(trainer.world_size, every=trainer.cfg.train.log_every) as stop:
        trainer.stop = stop
        ended = False
        try:
            run_dir = trainer.fit()
            ended = True
        except OSError as e:  # a full disk or a read-only run directory: the one-paragraph explanation
            message = storage_error_message(e, within=trainer.run_dir)
            if message is None:
                raise
            raise StorageError(message, e.errno) from e
        except DataError as e:  # the data went away mid-run: save where the run is, say how to go on
            raise DataError(_save_after_data_error(trainer, e)) from None
        finally:
            # The loader's worker processes end with the run, whatever ended it: left running, a worker
            # (which ignores SIGTERM) would keep the process from exiting.
            if trainer.loader is not None:
                trainer.loader.close(at_once=not ended or stop.stopping)
    if stop.stopping and trainer.is_main:
        try:
            summary = json.loads(RunDir(run_dir).summary.read_text())
        except (OSError, ValueError):
            summary = {"status": "interrupted"}
        if summary.get("status") == "interrupted":  # not when the signal came after the last step
            print(stopped_message(run_dir, stop.name, trainer.progress.step, summary.get("last_checkpoint")), flush=True)
    return run_dir
