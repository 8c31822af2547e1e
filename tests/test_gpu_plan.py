"""The recipe on a GPU (gpu_plan.py): mixed precision by compute capability, saving by time, a batch that
fits the GPU's memory.  No GPU needed: the GPUs are described by their facts, as torch.cuda gives them."""
from __future__ import annotations

import pytest

from ganforge import config as C
from ganforge import gpu_plan
from ganforge.gpu_plan import HEADROOM, GpuFacts, amp_for
from ganforge.nets.measure import training_memory
from ganforge.recipe import auto_config

GiB = 2**30
T4 = GpuFacts("Tesla T4", (7, 5), 15 * GiB)
A100 = GpuFacts("NVIDIA A100-SXM4-40GB", (8, 0), 40 * GiB)
H100 = GpuFacts("NVIDIA H100 80GB HBM3", (9, 0), 80 * GiB)


@pytest.mark.parametrize("capability, amp", [((6, 1), "off"), ((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                             ((8, 6), "bf16"), ((8, 9), "bf16"), ((9, 0), "bf16")])
def test_mixed_precision_follows_the_compute_capability(capability, amp):
    """fp16 with the scaler before Ampere (V100 7.0, T4 7.5), bf16 from Ampere on, nothing before Volta."""
    chosen, reason = amp_for(GpuFacts("some GPU", capability, 16 * GiB))
    assert chosen == amp and f"compute capability {capability[0]}.{capability[1]}" in reason


@pytest.mark.parametrize("gpu, amp, why", [(T4, "fp16", "before Ampere"), (A100, "bf16", "Ampere or later"),
                                           (H100, "bf16", "Ampere or later")])
def test_the_recipe_on_a_cuda_device_names_its_amp_and_saves_by_time(image_folder, gpu, amp, why):
    cfg = auto_config(str(image_folder), ["train.device=cuda"], gpu=gpu)
    notes = "\n".join(cfg.notes)
    assert cfg.notes[0].endswith("on cuda:") and f"on {gpu}:" in cfg.notes
    # The AMP mode, named with the GPU's compute capability and the reason.
    assert cfg.train.amp == amp
    assert f"train.amp={amp}: {gpu.name} has compute capability {gpu.capability[0]}.{gpu.capability[1]} ({why})" in notes
    assert ("gradient scaler" in notes) == (amp == "fp16")
    # Checkpoints and report refreshes by time, and a grid (a report refresh) every 5% of the run.
    assert cfg.train.save_every_minutes == gpu_plan.SAVE_EVERY_MINUTES
    assert f"train.save_every_minutes={gpu_plan.SAVE_EVERY_MINUTES}: a GPU trains a short epoch in seconds" in notes
    steps = cfg.train.epochs * (64 // cfg.data.batch_size)
    assert cfg.train.sample_every == steps // 20 and f"every {cfg.train.sample_every:,} of the run's {steps:,} steps" in notes
    # The batch fits the GPU's memory with the headroom, and the printout says so.
    predicted = training_memory(cfg).per_step(cfg.data.batch_size, amp)
    assert predicted <= HEADROOM * gpu.total_memory
    assert f"data.batch_size={cfg.data.batch_size} fits" in notes and f"of {gpu.name}" in notes
    # The few-shot rules rebuild reals at 64 px on a GPU, or at the images' own 32 px where that is less.
    assert cfg.data.image_size == 32 and cfg.model.fastgan_decoder == 32


def test_a_gpu_too_small_gets_a_smaller_batch_then_narrower_networks(image_folder):
    base = auto_config(str(image_folder), ["train.device=cuda"], gpu=H100)
    memory = training_memory(base)
    # Room for batch 16 but not 32: the batch is halved twice, the epochs keep the number of steps.
    small = GpuFacts("small", (8, 6), int(memory.per_step(16, "bf16") / HEADROOM) + 1)
    cfg = auto_config(str(image_folder), ["train.device=cuda"], gpu=small)
    assert (cfg.data.batch_size, cfg.model.ngf) == (16, base.model.ngf)
    assert cfg.train.epochs == base.train.epochs * 16 // base.data.batch_size
    assert training_memory(cfg).per_step(16, "bf16") <= HEADROOM * small.total_memory
    assert any(n.startswith("data.batch_size=16: the largest batch up to 64 whose step fits") for n in cfg.notes)
    assert not any(n.startswith("data.batch_size=64") or n.startswith(f"train.epochs={base.train.epochs}")
                   for n in cfg.notes)  # the choices it replaced are gone
    # Room for less than batch 8 at the recipe's width: the networks are narrowed.
    tiny = GpuFacts("tiny", (8, 6), int(memory.per_step(4, "bf16") / HEADROOM))
    fitted = gpu_plan.fit(base, tiny, "bf16")
    assert fitted.batch == gpu_plan.MIN_BATCH and fitted.ngf < base.model.ngf and fitted.fits
    # Nothing fits: the recipe says so with the fix.
    chosen, why = gpu_plan.on_gpu(["data.batch_size=8", "model.ngf=8", "model.ndf=8", "train.epochs=5"], [],
                                  {}, GpuFacts("none", (8, 6), 1), images=64)
    assert "data.batch_size=8" in chosen and any(
        n.startswith("memory: a training step needs about") and "would run out of memory" in n for n in why)


def test_on_a_gpu_given_keys_win(image_folder):
    cfg = auto_config(str(image_folder), ["train.device=cuda", "train.amp=off", "data.batch_size=32",
                                          "train.save_every_minutes=0"], gpu=T4)
    assert (cfg.train.amp, cfg.data.batch_size, cfg.train.save_every_minutes) == ("off", 32, 0)
    assert {"train.amp=off (given)", "data.batch_size=32 (given)", "train.save_every_minutes=0 (given)"} <= set(cfg.notes)
    # The fit is judged at the given batch and precision.
    assert any(n.startswith("memory: ") and "per step (off)" in n and "data.batch_size=32 fits" in n for n in cfg.notes)
    # A given batch that does not fit is kept, the networks under it too, and the printout warns.
    chosen, why = gpu_plan.on_gpu(["model.ngf=16", "model.ndf=16", "train.epochs=5"], [], {"data.batch_size": 64},
                                  GpuFacts("none", (8, 6), 1), images=64)
    assert "model.ngf=16" in chosen and not any(c.startswith(("model.ngf=8", "data.batch_size")) for c in chosen)
    assert any(n.startswith("memory: a training step needs about") for n in why)


def test_without_a_gpu_a_cuda_recipe_is_refused_clearly(image_folder):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(C.ConfigError, match="train.device=cuda asks for a CUDA GPU, and none is available"):
        auto_config(str(image_folder), ["train.device=cuda"])


def test_memory_warnings():
    assert gpu_plan.memory_warning(GiB, 2 * GiB, "the GPU") is None
    assert "may run out of memory" in gpu_plan.memory_warning(int(1.5 * GiB), 2 * GiB, "the GPU")
    assert "would run out of memory" in gpu_plan.memory_warning(3 * GiB, 2 * GiB, "the GPU")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_real_gpu_the_recipe_and_the_dry_run_read_it(tmp_path, image_folder, capsys):
    import torch

    from ganforge.cli import main
    gpu = gpu_plan.read_gpu()
    assert gpu.capability == torch.cuda.get_device_capability() and gpu.total_memory > 0
    cfg = auto_config(str(image_folder), ["train.device=cuda"])
    assert cfg.train.amp == amp_for(gpu)[0] and f"on {gpu}:" in cfg.notes
    assert main(["train", "--dry-run", "--data", str(image_folder), "--runs-dir", str(tmp_path / "runs"),
                 "train.device=cuda", "data.num_workers=0"]) == 0
    out = capsys.readouterr().out
    assert "memory per step on cuda: about " in out and f"in the GPU ({gpu.name})" in out and "warning:" not in out
