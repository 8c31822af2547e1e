"""Speed switches: they change how fast the step runs, not what it computes."""
from __future__ import annotations

import json

import pytest
import torch

import ganforge
from ganforge.config import ConfigError
from ganforge.sampling import load_generator
from ganforge.training import speed
from ganforge.training.trainer import Trainer


def trainer_with(tiny, tmp_path, source, *overrides) -> Trainer:
    cfg = tiny(source, "train.seed=3", *overrides)
    trainer = Trainer(cfg, tmp_path / "run", log_format="quiet")
    trainer.speed = speed.accelerate(trainer, steps_left=10)
    return trainer


def train_steps(trainer: Trainer, batches, n: int) -> list[dict[str, float]]:
    """``n`` steps on the same real batches and the same latents (seeded per step)."""
    losses = []
    for i in range(n):
        torch.manual_seed(100 + i)
        real, labels = batches[i % len(batches)]
        if trainer.speed.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        out = trainer.step_fn([(real, labels)], i)
        losses.append({k: float(out[k]) for k in ("loss_d", "loss_g", "d_x", "d_g_z")})
    return losses


def assert_same_training(a: Trainer, b: Trainer, losses_a, losses_b, tol: float) -> None:
    for step, (la, lb) in enumerate(zip(losses_a, losses_b)):
        for k in la:
            assert la[k] == pytest.approx(lb[k], abs=tol, rel=tol), f"step {step}: {k} {la[k]} vs {lb[k]}"
    for net in ("G", "D"):
        for (name, pa), pb in zip(getattr(a, net).state_dict().items(), getattr(b, net).state_dict().values()):
            torch.testing.assert_close(pa.float(), pb.float(), atol=tol, rtol=tol, msg=f"{net}.{name}")


@pytest.mark.slow  # compiling G and D (twice: D's step and the G step's frozen-weight D) with inductor
def test_compiled_training_gives_the_eager_losses(tmp_path, image_folder, tiny, real_batches):
    batches = real_batches(2)
    eager = trainer_with(tiny, tmp_path / "eager", image_folder, "train.compile=off")
    compiled = trainer_with(tiny, tmp_path / "compiled", image_folder, "train.compile=on")
    assert compiled.speed.compile and not eager.speed.compile
    assert compiled.step_fn.G is not compiled.G  # the step runs compiled modules ...
    # ... sharing the trainer's parameters, so checkpoints and sampling see the trained weights.
    assert {id(p) for p in compiled.step_fn.G.parameters()} == {id(p) for p in compiled.G.parameters()}
    # Alternating D and G steps, four times: the compiled graphs must follow every update.
    assert_same_training(eager, compiled, train_steps(eager, batches, 4), train_steps(compiled, batches, 4), 1e-4)


def test_channels_last_gives_the_same_training(tmp_path, image_folder, tiny, real_batches):
    batches = real_batches(2)
    plain = trainer_with(tiny, tmp_path / "plain", image_folder, "train.channels_last=off")
    cl = trainer_with(tiny, tmp_path / "cl", image_folder, "train.channels_last=on")
    assert cl.G.main[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_training(plain, cl, train_steps(plain, batches, 3), train_steps(cl, batches, 3), 1e-4)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(tmp_path, image_folder, tiny, real_batches, amp):
    batches = real_batches(2)
    fp32 = trainer_with(tiny, tmp_path / "fp32", image_folder, "train.amp=off")
    mixed = trainer_with(tiny, tmp_path / amp, image_folder, f"train.amp={amp}")
    if amp == "fp16":  # one GradScaler per network: their gradients have unrelated scales
        assert isinstance(mixed.step_fn.scaling_d, speed.GradScaling)
        assert mixed.step_fn.scaling_d.scaler is not mixed.step_fn.scaling_g.scaler
    n = 2 if amp == "bf16" else 1
    la, lb = train_steps(fp32, batches, n), train_steps(mixed, batches, n)
    # fp16 with a fresh GradScaler skips the first updates, whose scaled gradients overflow, so only
    # D's first loss (before any update) is comparable; bf16 keeps fp32's range and follows it.
    keys = ["loss_d", "loss_g"] if amp == "bf16" else ["loss_d"]
    for a, b in zip(la, lb):
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=0.05), f"{k}: {amp} {b[k]} vs fp32 {a[k]}"
    assert all(torch.isfinite(torch.tensor(list(d.values()))).all() for d in lb)
    assert all(p.dtype == torch.float32 for p in mixed.G.parameters())  # weights stay fp32


def test_auto_defaults_per_device_type(tiny, image_folder):
    train = tiny(image_folder).train  # amp, compile, channels_last = auto
    cpu_short = speed.resolve(train, torch.device("cpu"), steps_left=100)
    assert (cpu_short.amp, cpu_short.compile, cpu_short.channels_last) == ("off", False, True)
    cpu_long = speed.resolve(train, torch.device("cpu"), steps_left=speed.CPU_COMPILE_MIN_STEPS)
    assert cpu_long.compile and cpu_long.amp == "off"
    mps = speed.resolve(train, torch.device("mps"), steps_left=10**6)
    assert not mps.compile and not mps.channels_last
    cuda = speed.resolve(tiny(image_folder, "train.amp=off").train, torch.device("cuda"), steps_left=1)
    assert cuda.compile and cuda.channels_last and cuda.cudnn_benchmark


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_amp_on_cuda_is_bf16_where_supported(tiny, image_folder):
    s = speed.resolve(tiny(image_folder, "train.device=cuda").train, torch.device("cuda"), steps_left=1)
    # bf16 from compute capability 8.0 on; fp16 before, where is_bf16_supported() may be true (emulated).
    assert s.amp == ("bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp16")


@pytest.mark.parametrize("overrides, message", [
    (["train.cuda_graphs=true"], "cuda_graphs=true.*needs a CUDA device"),
    (["train.amp=fp16"], "fp16 is not supported on MPS"),
])
def test_impossible_switches_are_clear_errors(tiny, image_folder, overrides, message):
    device = torch.device("mps" if "fp16" in overrides[0] else "cpu")
    with pytest.raises(ConfigError, match=message):
        speed.resolve(tiny(image_folder, *overrides).train, device, steps_left=1)


def test_train_prints_what_is_on_and_records_it(tmp_path, image_folder, tiny, capsys):
    cfg = tiny(image_folder, "train.max_steps=2")  # every switch on auto
    run = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="json")
    out = capsys.readouterr().out
    assert "ganforge: speed (cpu): amp off, compile off, channels_last on" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["speed"]["channels_last"] is True and summary["speed"]["amp"] == "off"
    # The checkpoint holds ordinary (contiguous-keyed, uncompiled) weights that load anywhere.
    G, _, _ = load_generator(run, device="cpu")
    assert not any(k.startswith("_orig_mod") for k in G.state_dict())


def test_fp16_loss_scales_survive_a_resume(tmp_path, image_folder, tiny):
    from ganforge.storage import safe_load
    run = ganforge.train(tiny(image_folder, "train.max_steps=3", "train.amp=fp16"), runs_dir=tmp_path / "runs",
                         log_format="quiet")
    (checkpoint,) = (run / "checkpoints").glob("step_*.pt")
    scales = safe_load(checkpoint)["loss_scaling"]
    assert scales["d"]["scale"] < 65536.0  # the first steps overflowed at the initial scale and backed off
    trainer = Trainer(tiny(image_folder, "train.amp=fp16"), run, log_format="quiet")
    trainer.load_state_dict(safe_load(checkpoint))
    speed.accelerate(trainer, steps_left=1)
    assert trainer.step_fn.scaling_d.scaler.get_scale() == scales["d"]["scale"]
    assert trainer.step_fn.scaling_g.scaler.get_scale() == scales["g"]["scale"]
