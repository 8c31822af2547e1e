"""The divergence guard on real runs: an injected NaN is rolled back once, a second failure stops the run."""
from __future__ import annotations

import json

import torch

from ganforge.config import GuardConfig
from ganforge.training.guard import DivergenceGuard
from ganforge.training.trainer import Trainer


def inject_nan(trainer: Trainer, at_step: int) -> None:
    """Make D's logits NaN during the generator step of index ``at_step``, until the guard has acted."""
    def hook(module, args, output):
        if trainer.progress.step == at_step and trainer.guard.recoveries == 0:
            return output * float("nan")
        return output
    trainer.D.register_forward_hook(hook)


def records(run) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_guard_recovers_from_an_injected_nan(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.max_steps=8", "train.midsave_steps=2", "train.log_every=2")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    inject_nan(trainer, 4)  # the 5th step; checked at step 6, rolled back to the checkpoint of step 4
    counted = []
    trainer.opt_g.register_step_post_hook(lambda *a: counted.append(trainer.progress.step))
    run = trainer.fit()
    lines = records(run)
    events = [r for r in lines if r.get("event") == "guard"]
    assert len(events) == 1 and events[0]["step"] == 6 and "NaN" in events[0]["reason"]
    assert "step_00000004.pt" in events[0]["action"] and events[0]["lr_g"] == 1e-4
    # Steps 5 and 6 were thrown away and done again with halved learning rates.
    assert counted == [0, 1, 2, 3, 4, 5, 4, 5, 6, 7]
    assert lines[-1]["step"] == 8 and lines[-1]["lr_g"] == 1e-4 and lines[-1]["lr_d"] == 1e-4
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert all(torch.isfinite(p).all() for p in list(trainer.G.parameters()) + list(trainer.D.parameters()))
    # The lowered rates and the spent recovery are part of the checkpoint.
    last = torch.load(run / "checkpoints" / "step_00000008.pt", weights_only=True)
    assert last["guard"]["recoveries"] == 1 and last["opt_g"]["param_groups"][0]["lr"] == 1e-4


def test_guard_rolls_back_to_the_start_when_no_checkpoint_exists(tmp_path, image_folder, tiny):
    trainer = Trainer(tiny(image_folder, "train.max_steps=3", "train.log_every=2"), tmp_path, log_format="quiet")
    initial = [p.detach().clone() for p in trainer.G.parameters()]
    inject_nan(trainer, 0)
    seen_after_rollback = []
    trainer.opt_g.register_step_pre_hook(
        lambda *a: seen_after_rollback.append([p.detach().clone() for p in trainer.G.parameters()]))
    run = trainer.fit()
    events = [r for r in records(run) if r.get("event") == "guard"]
    assert len(events) == 1 and "the start of the run" in events[0]["action"]
    # The first step after the roll-back starts from the initial weights again.
    assert all(torch.equal(a, b) for a, b in zip(seen_after_rollback[2], initial))
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_second_failure_stops_the_run_with_a_report(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.max_steps=8", "train.midsave_steps=2", "train.log_every=2")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    trainer.D.register_forward_hook(lambda m, a, out: out * float("nan") if trainer.progress.step >= 3 else out)
    run = trainer.fit()
    events = [r for r in records(run) if r.get("event") == "guard"]
    assert [e["step"] for e in events] == [4, 4] and events[1]["action"] == "stopped the run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert "NaN" in summary["diverged"] and "learning rates" in summary["diverged"]
    # generator.pt holds the last good weights, not the broken ones.
    state = torch.load(run / "generator.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())


def _out(d_wins: float, loss: float = 1.0) -> dict:
    return {"loss_d": torch.tensor(loss), "loss_g": torch.tensor(1.0), "d_wins": torch.tensor(d_wins)}


def test_d_winning_for_n_steps_in_a_row_is_a_failure():
    guard = DivergenceGuard(GuardConfig(enabled=True, d_wins_steps=3))
    for w in (1, 1, 0, 1, 1):
        guard.watch(_out(w))
    assert guard.failure() is None  # the run was interrupted; two in a row so far
    guard.watch(_out(1))  # the third in a row, counted across the check
    assert "won completely for 3 steps" in guard.failure()
    guard.watch(_out(0, loss=float("inf")))
    assert "NaN or infinite" in guard.failure()
    off = DivergenceGuard(GuardConfig(enabled=False))
    off.watch(_out(1, loss=float("nan")))
    assert off.failure() is None


def test_a_failure_seen_before_a_save_stays_pending_for_the_roll_back():
    guard = DivergenceGuard(GuardConfig(enabled=True))
    guard.watch(_out(0, loss=float("nan")))
    assert "NaN" in guard.peek()  # save_checkpoint asks this and skips the save
    assert "NaN" in guard.failure()  # the loop's next check still sees it and rolls back
    assert guard.failure() is None
