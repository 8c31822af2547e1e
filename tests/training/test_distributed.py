"""Multi-process training: real torchrun launches of 2 CPU processes (gloo) on real image files."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from ganforge import config as C
from ganforge.config import ConfigError
from ganforge.training import distributed
from ganforge.training.checkpoint import safe_load

TINY = ["data.channels=3", "data.batch_size=16", "data.num_workers=0", "model.ngf=8", "model.ndf=8",
        "model.nz=16", "train.n_fixed_noise=16", "train.log_every=1", "train.tensorboard=false",
        "train.report=false", "train.device=cpu", "train.compile=off", "data.limit=0"]

# The reference run goes through ganforge's own CLI; afterwards each rank saves the weights it holds,
# so the test can compare what the two processes ended with.
RANK_DUMP = textwrap.dedent("""
    import os, sys, torch
    from ganforge.training.trainer import Trainer
    fit = Trainer.fit
    def fit_and_dump(self):
        out = fit(self)
        torch.save({"G": self.G.state_dict(), "D": self.D.state_dict()},
                   os.path.join(os.environ["DUMP_DIR"], f"rank{self.rank}.pt"))
        return out
    Trainer.fit = fit_and_dump
    from ganforge.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def torchrun(args: list[str], cwd, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + args
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    return proc


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

    saved = yaml.safe_load((run_a / "config.yaml").read_text())
    assert saved["train"]["world_size"] == 2 and saved["train"]["effective_batch_size"] == 32
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


def test_resume_with_another_process_count_is_refused_without_force(tiny, image_folder):
    saved = distributed.record_scale(tiny(image_folder), 2)
    with pytest.raises(ConfigError, match="nproc_per_node=2"):
        distributed.check_resume_scale(saved, 1, force=False)
    distributed.check_resume_scale(saved, 1, force=True)


def test_lr_scaling_is_recorded_in_the_config(tiny, image_folder):
    cfg = tiny(image_folder, "train.lr_scaling=linear")
    scaled = distributed.record_scale(cfg, 4)
    assert scaled.train.effective_batch_size == 64 and scaled.train.world_size == 4
    assert scaled.optim.g.lr == pytest.approx(4 * cfg.optim.g.lr)
    assert "effective batch 64" in scaled.notes[-1]
    assert cfg.optim.g.lr == pytest.approx(2e-4)  # the caller's config is left alone
    sqrt = distributed.record_scale(tiny(image_folder, "train.lr_scaling=sqrt"), 4)
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
