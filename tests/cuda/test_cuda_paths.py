"""ganforge's CUDA paths on a real GPU: compile, bf16, fp16 loss scaling, CUDA graphs, data on the GPU,
sampling and evaluation, and torchrun.  Marked ``cuda``; each test skips cleanly without a CUDA device.

``bash scripts/gpu_check.sh`` runs them (``pytest -m cuda``) with the throughput and quality checks.  The
assertion messages carry the measured differences, so a failing tolerance shows how far off it was.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.data import build_loader
from ganforge.data.prepared import prepare
from ganforge.training import speed
from ganforge.storage import safe_load
from ganforge.training.session import resume
from ganforge.training.trainer import Trainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")


# --------------------------------------------------------------------------------------------------
# Helpers: trainers stepped by hand on the same batches and latents
# --------------------------------------------------------------------------------------------------
def trainer_with(cuda_tiny, tmp_path, source, *overrides) -> Trainer:
    trainer = Trainer(cuda_tiny(source, "train.seed=3", *overrides), tmp_path / "run", log_format="quiet")
    trainer.speed = speed.accelerate(trainer, steps_left=10)
    return trainer


def train_steps(trainer: Trainer, batches, n: int) -> list[dict[str, float]]:
    """``n`` alternating D/G steps on the same real batches and latents (seeded per step, CUDA included)."""
    losses = []
    for i in range(n):
        torch.manual_seed(100 + i)
        real, labels = batches[i % len(batches)]
        real, labels = real.to(CUDA), labels.to(CUDA)
        if trainer.speed.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        out = trainer.step_fn([(real, labels)], i)
        losses.append({k: float(out[k]) for k in ("loss_d", "loss_g", "d_x", "d_g_z")})
    return losses


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"{net}.{k}": v.detach().float().cpu().clone()
            for net in ("G", "D") for k, v in getattr(trainer, net).state_dict().items() if v.is_floating_point()}


def assert_same_training(a_losses, b_losses, start, a_end, b_end, loss_tol: float, update_tol: float,
                         weight_tol: float | None = None) -> None:
    """Same losses step by step, and the same weight updates: per network, |update_a - update_b| / |update_a|
    at most ``update_tol`` (a compiled graph missing an optimiser update would be off by about 1)."""
    for step, (la, lb) in enumerate(zip(a_losses, b_losses, strict=True)):
        for k in la:
            assert lb[k] == pytest.approx(la[k], abs=loss_tol, rel=loss_tol), f"step {step}: {k} {la[k]} vs {lb[k]}"
    for net in ("G", "D"):
        keys = [k for k in start if k.startswith(net + ".") and "running" not in k]
        da = torch.cat([(a_end[k] - start[k]).flatten() for k in keys])
        db = torch.cat([(b_end[k] - start[k]).flatten() for k in keys])
        assert da.norm() > 0, f"{net} did not change"
        rel = float((da - db).norm() / da.norm())
        assert rel <= update_tol, f"{net}: the updates differ by {rel:.3g} (relative), allowed {update_tol}"
        if weight_tol is not None:
            for k in keys:
                torch.testing.assert_close(b_end[k], a_end[k], atol=weight_tol, rtol=weight_tol, msg=lambda m: f"{k}: {m}")


def on_cuda(batches):
    return [(x.to(CUDA), y.to(CUDA)) for x, y in batches]


# --------------------------------------------------------------------------------------------------
# Compile, bf16, CUDA graphs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("amp, loss_tol, update_tol, weight_tol", [
    ("off", 1e-4, 1e-3, 1e-4),  # fp32 (TF32 off for the comparison)
    # bf16 rounds differently in fused and eager kernels, and Adam turns that into sign flips of the small
    # updates: 0.16 measured on a CPU (inductor vs eager); a graph that missed an update would be off by ~1.
    ("bf16", 2e-2, 0.35, None),
])
def test_compiled_training_matches_eager_on_cuda(tmp_path, image_folder, cuda_tiny, real_batches, strict_fp32,
                                                 amp, loss_tol, update_tol, weight_tol):
    batches = on_cuda(real_batches(2))
    eager = trainer_with(cuda_tiny, tmp_path / "eager", image_folder, f"train.amp={amp}")
    compiled = trainer_with(cuda_tiny, tmp_path / "compiled", image_folder, f"train.amp={amp}", "train.compile=on")
    assert compiled.speed.compile and not eager.speed.compile and compiled.speed.amp == amp
    # What accelerate switches on for CUDA: channels_last, cuDNN autotuning, TF32 for the fp32 parts.
    assert compiled.speed.channels_last and compiled.speed.cudnn_benchmark and torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert "cudnn autotune on" in compiled.speed.describe()
    assert {id(p) for p in compiled.step_fn.G.parameters()} == {id(p) for p in compiled.G.parameters()}
    if amp == "off":
        strict_fp32()
    start = weights(eager)
    assert all(torch.equal(start[k], v) for k, v in weights(compiled).items()), "the two trainers start apart"
    la, lb = train_steps(eager, batches, 4), train_steps(compiled, batches, 4)
    assert_same_training(la, lb, start, weights(eager), weights(compiled), loss_tol, update_tol, weight_tol)
    assert all(p.dtype == torch.float32 and p.is_cuda for p in compiled.G.parameters())


def test_cuda_graphs_give_the_losses_of_compile(tmp_path, image_folder, cuda_tiny, real_batches):
    batches = on_cuda(real_batches(2))
    compiled = trainer_with(cuda_tiny, tmp_path / "compiled", image_folder, "train.amp=bf16", "train.compile=on")
    graphs = trainer_with(cuda_tiny, tmp_path / "graphs", image_folder, "train.amp=bf16", "train.compile=on",
                          "train.cuda_graphs=true")
    assert graphs.speed.cuda_graphs and "cuda graphs on" in graphs.speed.describe()
    start = weights(compiled)
    # Six steps: CUDA graph trees warm up, record, then replay; every replay must follow the updates.
    la, lb = train_steps(compiled, batches, 6), train_steps(graphs, batches, 6)
    assert_same_training(la, lb, start, weights(compiled), weights(graphs), 1e-3, 1e-2)


# --------------------------------------------------------------------------------------------------
# fp16 with one GradScaler per network, across a resume
# --------------------------------------------------------------------------------------------------
def test_fp16_grad_scalers_are_saved_and_restored_on_resume(tmp_path, image_folder, cuda_tiny):
    args = (image_folder, "train.amp=fp16", "train.deterministic=true")
    straight = ganforge.train(cuda_tiny(*args, "train.max_steps=4"), runs_dir=tmp_path / "a", log_format="quiet")
    stopped = ganforge.train(cuda_tiny(*args, "train.max_steps=2"), runs_dir=tmp_path / "b", log_format="quiet")
    checkpoint = stopped / "checkpoints" / "step_00000002.pt"
    saved = safe_load(checkpoint)["loss_scaling"]
    assert set(saved) == {"d", "g"} and all(saved[k]["scale"] > 0 and "_growth_tracker" in saved[k] for k in saved)

    # Into a fresh trainer: one scaler per network, on CUDA, each with its saved state (a scale no fresh
    # scaler has, so a silent reset would show).
    state = safe_load(checkpoint)
    state["loss_scaling"]["d"]["scale"], state["loss_scaling"]["g"]["scale"] = 1024.0, 2048.0
    trainer = Trainer(cuda_tiny(*args), tmp_path / "fresh", log_format="quiet")
    trainer.load_state_dict(state)
    speed.accelerate(trainer, steps_left=2)
    d, g = trainer.step_fn.scaling_d, trainer.step_fn.scaling_g
    assert isinstance(d, speed.GradScaling) and isinstance(g, speed.GradScaling) and d.scaler is not g.scaler
    assert (d.scaler.get_scale(), g.scaler.get_scale()) == (1024.0, 2048.0)
    assert d.scaler.state_dict()["_growth_tracker"] == saved["d"]["_growth_tracker"]

    # The resumed run ends with the loss scales (and weights) of the uninterrupted one.
    resume(stopped, log_format="quiet", overrides=["train.max_steps=4"])
    a = safe_load(straight / "checkpoints" / "step_00000004.pt")
    b = safe_load(stopped / "checkpoints" / "step_00000004.pt")
    assert a["loss_scaling"] == b["loss_scaling"], f"{a['loss_scaling']} vs {b['loss_scaling']}"
    for k, v in a["G"].items():
        torch.testing.assert_close(b["G"][k], v, atol=1e-5, rtol=1e-5, msg=lambda m: f"G.{k}: {m}")


# --------------------------------------------------------------------------------------------------
# data.on_gpu
# --------------------------------------------------------------------------------------------------
def test_data_on_gpu_trains_checkpoints_and_resumes_in_the_cpu_loader_order(tmp_path, image_folder, cuda_tiny):
    prepared = tmp_path / "prepared"
    prepare(cuda_tiny(image_folder), prepared, workers=0, progress=False)  # 64 images at 32x32x3
    host = build_loader(cuda_tiny(prepared, "data.hflip=0.5"), CUDA)
    gpu = build_loader(cuda_tiny(prepared, "data.hflip=0.5", "data.on_gpu=true"), CUDA)
    assert host.dataset.on_device is None and gpu.dataset.on_device is not None and gpu.dataset.on_device.is_cuda
    for epoch, start in ((0, 0), (1, 0), (2, 2)):  # a resume mid-epoch starts at a later batch
        pairs = list(zip(host.epoch(epoch, start), gpu.epoch(epoch, start)))
        assert len(pairs) == 4 - start
        for (xa, ya), (xb, yb) in pairs:
            assert xa.is_cuda and xb.is_cuda and torch.equal(xa, xb) and torch.equal(ya.cpu(), yb.cpu())

    # Training: on the GPU, stopped after 3 steps and resumed to 6 (an epoch is 4), against the host
    # loader's uninterrupted run.
    args = ("data.hflip=0.5", "train.deterministic=true", "train.amp=off")
    reference = ganforge.train(cuda_tiny(prepared, *args, "train.max_steps=6"), runs_dir=tmp_path / "host",
                               log_format="quiet")
    run = ganforge.train(cuda_tiny(prepared, *args, "data.on_gpu=true", "train.max_steps=3"),
                         runs_dir=tmp_path / "gpu", log_format="quiet")
    assert (run / "checkpoints" / "step_00000003.pt").is_file()
    resume(run, log_format="quiet", overrides=["train.max_steps=6"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 6 and summary["device"].startswith("cuda")
    a = safe_load(reference / "checkpoints" / "step_00000006.pt")
    b = safe_load(run / "checkpoints" / "step_00000006.pt")
    for net in ("G", "D"):
        for k, v in a[net].items():
            torch.testing.assert_close(b[net][k], v, atol=1e-5, rtol=1e-5, msg=lambda m: f"{net}.{k}: {m}")
    logged = lambda r: {x["step"]: (x["loss_d"], x["loss_g"]) for x in map(json.loads, (r / "metrics.jsonl").open())
                        if "loss_d" in x}  # noqa: E731
    # A line averages the steps since the one before: the stopped run logged step 3 (its last), so its step-4
    # line holds step 4 alone; the lines of steps 2 and 6 cover the same steps in both runs.
    ours, theirs = logged(run), logged(reference)
    assert {2, 6} <= set(ours) and {2, 6} <= set(theirs)
    for step in (2, 6):
        assert ours[step] == pytest.approx(theirs[step], abs=1e-5), f"step {step}: {ours[step]} vs {theirs[step]}"


# --------------------------------------------------------------------------------------------------
# Sampling, interpolation, evaluation
# --------------------------------------------------------------------------------------------------
def test_sampling_interpolation_and_eval_run_on_cuda(tmp_path, image_folder, cuda_tiny, fashion_images):
    run = ganforge.train(cuda_tiny(image_folder, "train.epochs=1"), runs_dir=tmp_path / "runs", log_format="quiet")
    assert json.loads((run / "summary.json").read_text())["device"].startswith("cuda")

    # The same latents give the same images on the GPU as on the CPU (to within rounding).
    for device in ("cuda", "cpu"):
        assert main(["sample", str(run), "--n", "16", "--seed", "1", "--out", str(tmp_path / f"{device}.png"),
                     "--device", device]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f"{d}.png").convert("RGB"), dtype=np.int16) for d in ("cuda", "cpu"))
    assert a.shape == b.shape and a.std() > 5  # a grid of real samples, not a blank
    diff = np.abs(a - b)
    assert diff.mean() < 1.0 and diff.max() <= 16, f"cuda vs cpu samples: mean {diff.mean():.2f}, max {diff.max()}"

    walk = tmp_path / "walk.gif"
    assert main(["interpolate", str(run), "--steps", "4", "--rows", "2", "--out", str(walk), "--device", "cuda"]) == 0
    with Image.open(walk) as gif:
        assert gif.n_frames >= 4
    assert walk.with_suffix(".png").is_file()

    # ganforge eval on CUDA, as a user runs it.
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "ganforge", "eval", str(run), "--data", str(image_folder), "--n", "8",
                           "--metrics", "fid,kid", "--features", "effnet-lite0", "--device", "cuda", "--no-cache",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert np.isfinite(report["fid_effnet_lite0"]) and np.isfinite(report["kid_effnet_lite0"])

    # The extractor gives the CPU's features on the GPU.
    from ganforge.metrics.features import build_extractor
    x = torch.from_numpy(fashion_images[:8]).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    f_gpu, _ = build_extractor("effnet-lite0", "cuda")(x.to(CUDA))
    f_cpu, _ = build_extractor("effnet-lite0", "cpu")(x)
    cosine = torch.nn.functional.cosine_similarity(f_gpu.cpu(), f_cpu, dim=1)
    assert f_gpu.is_cuda and cosine.min() > 0.999, f"cuda vs cpu features: cosine {cosine.tolist()}"


# --------------------------------------------------------------------------------------------------
# torchrun: 2 processes on one GPU
# --------------------------------------------------------------------------------------------------
RANK_DUMP = textwrap.dedent("""
    import os, sys, torch
    import torch.distributed as dist
    from ganforge.training.trainer import Trainer

    fit = Trainer.fit
    def fit_and_dump(self):  # each rank saves the weights it ended with, and where it trained
        out = fit(self)
        torch.save({"G": self.G.state_dict(), "D": self.D.state_dict(), "device": str(next(self.G.parameters()).device),
                    "backend": dist.get_backend() if dist.is_initialized() else None, "step": self.progress.step},
                   os.path.join(os.environ["DUMP_DIR"], f"rank{self.rank}.pt"))
        return out
    Trainer.fit = fit_and_dump
    from ganforge.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _kill_tree(pid: int) -> None:
    """``pid`` and its descendants (torchrun starts each rank in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_two_processes_on_one_gpu_end_with_equal_weights(tmp_path, image_folder):
    driver = tmp_path / "rank_dump.py"
    driver.write_text(RANK_DUMP)
    first_gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    env = dict(os.environ, OMP_NUM_THREADS="1", DUMP_DIR=str(tmp_path), CUDA_VISIBLE_DEVICES=first_gpu)
    settings = [f"data.source={image_folder}", "data.channels=3", "data.batch_size=16", "data.num_workers=0",
                "model.ngf=8", "model.ndf=8", "model.nz=16", "train.n_fixed_noise=16", "train.log_every=1",
                "train.tensorboard=false", "train.report=false", "train.device=cuda", "train.compile=off",
                "data.limit=0", "train.max_steps=4"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(driver),
           "train", "--quiet", "--runs-dir", str(tmp_path / "runs"), *settings]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish in 240 s (ranks deadlocked?)\n{stderr[-5000:]}")
    assert proc.returncode == 0, f"stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-5000:]}"
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1))
    assert r0["device"].startswith("cuda") and r1["device"].startswith("cuda") and r0["step"] == r1["step"] == 4
    assert r0["backend"] == r1["backend"] == "gloo"  # NCCL refuses two ranks on one GPU
    for net in ("G", "D"):
        for name, value in r0[net].items():
            if "running" not in name and "num_batches" not in name:
                assert torch.equal(value, r1[net][name]), f"{net}.{name} differs between the ranks"
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "config.yaml").is_file()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 4
