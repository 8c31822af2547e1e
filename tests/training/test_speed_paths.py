"""Every speed path a GPU run takes, run on the CPU through ``Trainer.fit`` and the CLI (issue 41).

No GPU has run ganforge: a user's first GPU run works only if these paths ran here first.  inductor's CPU
backend compiles the same graphs torch.compile builds for a GPU (other kernels, same tracing, guards and
autograd), so ``train.compile=on`` runs for each family and each loss, penalty and G term the recipe
picks.  What the CPU cannot run (CUDA graphs, a dataset in GPU memory, the peak-memory readings) is run
as far as it goes: the decisions, the unwrapping, the batch order with the device set to the CPU.

Compiled and eager runs of the same seed must log the same losses over their first steps, to within
``COMPILE_TOL`` (relative, and absolute for values near 0 such as D's mean outputs): inductor fuses and reorders fp32 reductions (BatchNorm statistics, the sums
inside convolutions and losses), which moves a loss by about 1e-6 before any update, and Adam turns
those differences in tiny gradient entries into updates of up to a learning rate, so three steps
later the losses differ by up to 5e-5 (measured: the GPU recipe's FastGAN on emoji without latent
groups, loss_g 9.645282 compiled against 9.644848 eager at step 3); the tolerance is ten times that.
A compiled graph that dropped an update, froze a buffer or lost a penalty would be off by far more:
every loss below moves by more than 1e-2 over these steps.

Some runs amplify reordered sums far more.  The GPU recipe with its latent groups (16 groups, 8 images
a batch here, so 0 to 3 images a group) and G at Adam 1e-3: compiled and eager were 3.0e-3 apart at step
3 (D's mean output on fakes, -0.0726 against -0.0756), and eager was as far from itself when only its
thread count changed (3.5e-3; eager on 2 threads against 1).  Such a test measures that sensitivity
first, eager against eager with its sums in another order, and allows compiling ten times it after the
first update (:func:`reordering_gap`); the first step, before any update, must still agree to
``COMPILE_TOL``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ganforge
from ganforge import config as C
from ganforge.cli import main
from ganforge.data import build_loader
from ganforge.data.prepared import prepare
from ganforge.devices import PeakMemory, memory_reading
from ganforge.gpu_plan import GpuFacts
from ganforge.recipe import auto_config
from ganforge.storage import safe_load
from ganforge.training import speed
from ganforge.training.penalties import R1Penalty, ReconstructionLoss
from ganforge.training.trainer import Trainer

#: Relative agreement of a compiled run's logged losses with the eager run's (see the module's doc).
COMPILE_TOL = 5e-4
STEPS = 3


@pytest.fixture
def eager_random():
    """inductor draws its random numbers (dropout, noise inside G) with its own generator unless told
    to call eager's ops; with ``fallback_random`` the compiled run draws exactly the eager run's."""
    import torch._inductor.config as inductor
    saved = inductor.fallback_random
    inductor.fallback_random = True
    yield
    inductor.fallback_random = saved


def logged(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").open()) if "loss_d" in r]


def loss_keys(lines: list[dict]) -> tuple[str, ...]:
    return ("loss_d", "loss_g", "d_x", "d_g_z", *(["loss_fm"] if "loss_fm" in lines[0] else []))


def apart(expected: float, got: float) -> float:
    """How far a logged value is from another run's: relative, and absolute below 1 (D's mean outputs, d_x
    and d_g_z, sit near 0, where a relative difference means nothing; the losses are O(1))."""
    return abs(got - expected) / max(abs(expected), 1.0)


def reordering_gap(eager: Path, reordered: Path) -> float:
    """How far two eager runs of the same seed part when only the order of their fp32 sums differs (one
    of them on another number of threads): the largest :func:`apart` of a logged loss."""
    a, b = logged(eager), logged(reordered)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    return max(apart(ra[k], rb[k]) for ra, rb in zip(a, b) for k in loss_keys(a))


def assert_same_losses(eager: Path, compiled: Path, tol: float = COMPILE_TOL) -> None:
    a, b = logged(eager), logged(compiled)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    keys = loss_keys(a)
    for ra, rb in zip(a, b):
        bound = COMPILE_TOL if ra["step"] == 1 else tol  # before any update only the forward's sums differ
        for k in keys:  # near 0 (d_x, d_g_z) reordered fp32 sums differed by up to 8e-5 (a clean clone's CI run)
            assert apart(ra[k], rb[k]) <= bound, f"step {ra['step']}: {k} {ra[k]} vs {rb[k]}"
    # The steps must change the losses far more than compiling does, or the agreement would show nothing.
    differ = max(abs(rb[k] - ra[k]) for ra, rb in zip(a, b) for k in keys)
    moved = max(abs(a[-1][k] - a[0][k]) for k in keys)
    assert moved > 10 * differ and moved > 0, f"the losses moved by {moved} over the steps, compiled and eager differ by {differ}"
    speeds = [json.loads((r / "summary.json").read_text())["speed"]["compile"] for r in (eager, compiled)]
    assert speeds == [False, True]
    # Checkpoints of a compiled run hold the plain modules' keys.
    (ckpt,) = (compiled / "checkpoints").glob("step_*.pt")
    assert not any("_orig_mod" in k for net in ("G", "D") for k in safe_load(ckpt)[net])


A100 = GpuFacts("NVIDIA A100-SXM4-40GB", (8, 0), 40 * 2**30)


def recipe_for_gpu(source, *overrides: str) -> C.Config:
    """The default recipe exactly as a CUDA user gets it on an A100 (compile on, FastGAN, rpgan with lazy R1
    and R2, DiffAugment, EMA; on 128 images or more, feature matching on EfficientNet-Lite1 with its latent
    groups), then trained on the CPU at a tiny size; in float32 unless ``train.amp`` is given (the A100's
    bf16 is a test of its own)."""
    amp = [] if any(o.startswith("train.amp=") for o in overrides) else ["train.amp=off"]
    cfg = auto_config(str(source), ["data.image_size=32", "model.fastgan_decoder=16", "model.ngf=8", "model.ndf=8",
                                    "data.batch_size=8", "data.num_workers=0", "train.n_fixed_noise=8",
                                    "train.epochs=0", f"train.max_steps={STEPS}", "train.log_every=1", "train.seed=5",
                                    "train.tensorboard=false", "train.report=false", *amp, *overrides],
                      device="cuda", gpu=A100)
    cfg.train.device = "cpu"
    return cfg


# --------------------------------------------------------------------------------------------------
# torch.compile through Trainer.fit: each family, loss, penalty and G term the recipe picks
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow  # compiles G, D and the G step's D (forward and backward) with inductor: minutes on 2 cores
def test_the_gpu_recipe_compiled_trains_as_eager_on_emoji(tmp_path, emoji_128_dir, eager_random):
    cfg = recipe_for_gpu(emoji_128_dir)
    m, loss = cfg.model, cfg.loss
    assert (m.name, loss.name, loss.r1_every) == ("fastgan", "rpgan", 4) and cfg.train.compile != "off"
    assert loss.r1_gamma > 0 and loss.r2_gamma > 0 and loss.feature_match > 0 and m.spectral_norm
    assert cfg.augment.name == "diffaugment" and cfg.ema.enabled
    assert m.latent_groups > 1 and loss.feature_match_gram > 0 and loss.feature_match_unbiased
    runs = {}
    for mode in ("off", "on"):
        c = recipe_for_gpu(emoji_128_dir, f"train.compile={mode}")
        runs[mode] = ganforge.train(c, runs_dir=tmp_path / mode, log_format="quiet")
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)  # the same eager run with its sums in another order
    try:
        reordered = ganforge.train(recipe_for_gpu(emoji_128_dir, "train.compile=off"), runs_dir=tmp_path / "reordered",
                                   log_format="quiet")
    finally:
        torch.set_num_threads(threads)
    gap = reordering_gap(runs["off"], reordered)
    assert gap < 1e-2, f"eager parts from itself by {gap} when only its threads change"
    assert_same_losses(runs["off"], runs["on"], tol=max(COMPILE_TOL, 10 * gap))
    assert all("loss_fm" in r for r in logged(runs["on"]))  # feature matching ran, and agreed


@pytest.mark.slow
def test_dcgan_compiled_through_the_cli_trains_as_eager_on_fashion_mnist(tmp_path, image_folder, eager_random):
    runs = {}
    for mode in ("off", "on"):
        args = ["train", "--quiet", "--preset", "quickstart", "--runs-dir", str(tmp_path / mode),
                f"data.source={image_folder}", "data.channels=3", "data.batch_size=16", "data.num_workers=0",
                "model.ngf=8", "model.ndf=8", "model.nz=16", "train.n_fixed_noise=16", "train.log_every=1",
                "train.tensorboard=false", "train.report=false", "train.device=cpu", "data.limit=0",
                "train.epochs=0", f"train.max_steps={STEPS}", "train.seed=2", f"train.compile={mode}"]
        assert main(args) == 0
        (runs[mode],) = [p for p in (tmp_path / mode).iterdir() if (p / "summary.json").is_file()]
    assert json.loads((runs["on"] / "summary.json").read_text())["speed"]["channels_last"] is True
    assert_same_losses(runs["off"], runs["on"])


@pytest.mark.slow
def test_resnet_at_128px_compiled_trains_as_eager(tmp_path, fashion_images, tiny, eager_random):
    from conftest import write_images
    folder = tmp_path / "images128"
    write_images(folder, fashion_images, 16, size=128)
    runs = {}
    for mode in ("off", "on"):
        cfg = tiny(folder, "model.name=resnet", "data.image_size=128", "data.batch_size=4", "model.ngf=4",
                   "model.ndf=4", "loss.name=hinge", "train.epochs=0", f"train.max_steps={STEPS}", "train.log_every=1",
                   "train.seed=4", f"train.compile={mode}")
        runs[mode] = ganforge.train(cfg, runs_dir=tmp_path / mode, log_format="quiet")
    assert_same_losses(runs["off"], runs["on"])


# --------------------------------------------------------------------------------------------------
# Mixed precision through Trainer.fit: bf16, and fp16 with torch.amp.GradScaler("cpu")
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow  # half precision is emulated on this CPU: 30 s (bf16) and 70 s (fp16) on 2 busy cores
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_the_gpu_recipe_trains_in_mixed_precision(tmp_path, emoji_128_dir, amp):
    cfg = recipe_for_gpu(emoji_128_dir, "train.compile=off", f"train.amp={amp}", "train.max_steps=2")
    assert cfg.model.latent_groups > 1 and cfg.loss.feature_match_gram > 0  # the grouped term in half precision too
    run = ganforge.train(cfg, runs_dir=tmp_path, log_format="quiet")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["speed"]["amp"] == amp and summary["step"] == 2
    lines = logged(run)
    assert lines and all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"]])).all() for r in lines)
    scaling = safe_load(run / "checkpoints" / "step_00000002.pt")["loss_scaling"]
    if amp == "fp16":  # a GradScaler per network, on the CPU, its state saved with the run
        assert scaling["d"]["scale"] > 0 and scaling["g"]["scale"] > 0 and "_growth_tracker" in scaling["d"]
    else:
        assert scaling == {"d": {}, "g": {}}


# --------------------------------------------------------------------------------------------------
# channels_last for reals and fakes
# --------------------------------------------------------------------------------------------------
def d_input_layouts(trainer: Trainer) -> list[str]:
    """Install a hook on the trainer's D that records the memory layout of each batch it is given."""
    seen: list[str] = []

    def hook(module, args):
        x = args[0]
        seen.append("channels_last" if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
                    else "contiguous" if x.is_contiguous() else "other")
    trainer.D.register_forward_pre_hook(hook)
    return seen


@pytest.mark.parametrize("channels_last", ["on", "off"])
def test_reals_and_fakes_reach_d_in_the_networks_layout(tmp_path, image_folder, tiny, channels_last):
    trainer = Trainer(tiny(image_folder, "train.max_steps=2", f"train.channels_last={channels_last}"), tmp_path,
                      log_format="quiet")
    seen = d_input_layouts(trainer)
    trainer.fit()
    assert trainer.loader.memory_format == (torch.channels_last if channels_last == "on" else torch.contiguous_format)
    batch, _ = next(trainer.loader.epoch(0))
    assert batch.is_contiguous(memory_format=trainer.loader.memory_format)
    # Per step: D on the reals, on the fakes, and the G step's D on the fakes: one layout for all of them.
    assert len(seen) >= 6 and set(seen) == {"channels_last" if channels_last == "on" else "contiguous"}, seen


# --------------------------------------------------------------------------------------------------
# CUDA graphs: what the wrapper may capture, what it must refuse
# --------------------------------------------------------------------------------------------------
def test_penalties_and_decoders_run_on_the_plain_d_inside_every_wrapper(tmp_path, emoji_dir):
    trainer = Trainer(recipe_for_gpu(emoji_dir, "train.compile=off"), tmp_path, log_format="quiet")
    D = trainer.D
    graphs = speed.SpeedSettings("cuda", "bf16", True, True, True, True)
    wrapped = speed.compile_module(D, graphs)  # CUDA graphs: CloneOutputs around torch.compile
    assert isinstance(wrapped, speed.CloneOutputs) and speed.eager_module(wrapped) is D
    assert speed.eager_module(speed.compile_module(D, dataclass_replace(graphs, cuda_graphs=False))) is D
    assert speed.eager_module(D) is D
    # The wrappers are never called by R1 or FastGAN's reconstruction (a compiled or captured D cannot be
    # differentiated twice): their value is the plain D's.
    calls = []
    wrapped.register_forward_pre_hook(lambda *a: calls.append(1))
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    r1 = R1Penalty(gamma=0.2)
    assert torch.equal(r1.penalty(wrapped, x), r1.penalty(D, x)) and r1.penalty(D, x) > 0
    recon = ReconstructionLoss("l1", 1.0)
    torch.manual_seed(1)
    a = recon(wrapped, x, None, None, 0)
    torch.manual_seed(1)
    assert torch.equal(a, recon(D, x, None, None, 0)) and not calls


def dataclass_replace(obj, **changes):
    import dataclasses
    return dataclasses.replace(obj, **changes)


@pytest.mark.parametrize("overrides, refused", [
    (["loss.r1_gamma=1", "loss.r1_every=4"], "lazy R1/R2"),
    (["loss.r1_gamma=0", "loss.r2_gamma=1", "loss.r1_every=2"], "lazy R1/R2"),
    (["loss.r1_gamma=1", "loss.r1_every=1"], None),  # the penalty every D step: captured D, eager penalty
    (["loss.r1_gamma=0", "loss.r1_every=4"], None),  # no penalty: r1_every means nothing
])
def test_cuda_graphs_refuse_lazy_second_order_penalties_in_the_config(tmp_path, image_folder, overrides, refused):
    args = [f"data.source={image_folder}", "train.device=cuda", "train.cuda_graphs=true", *overrides]
    if refused is None:
        assert C.load(preset="quickstart", overrides=args).train.cuda_graphs
        return
    with pytest.raises(C.ConfigError, match=refused) as e:
        C.load(preset="quickstart", overrides=args)
    assert "loss.r1_every=1" in str(e.value) and "train.cuda_graphs=false" in str(e.value)
    # Through the CLI: a clear error before anything is written.
    runs = tmp_path / "runs"
    assert main(["train", "--quiet", "--preset", "quickstart", "--runs-dir", str(runs), *args]) == 2
    assert not runs.exists() or not any(runs.iterdir())


def test_the_gpu_recipe_with_cuda_graphs_is_refused_until_its_penalties_are_every_step(emoji_dir):
    with pytest.raises(C.ConfigError, match="lazy R1/R2"):
        recipe_for_gpu(emoji_dir, "train.cuda_graphs=true")
    assert recipe_for_gpu(emoji_dir, "train.cuda_graphs=true", "loss.r1_every=1").train.cuda_graphs


@pytest.mark.parametrize("overrides, device, message", [
    (["train.cuda_graphs=true"], "cpu", "needs a CUDA device"),
    (["train.cuda_graphs=true", "train.compile=off", "train.amp=off"], "cuda", "works through torch.compile"),
    (["train.cuda_graphs=true", "train.amp=fp16"], "cuda", "GradScaler's host-side checks"),
])
def test_cuda_graphs_refuse_what_they_cannot_capture(tiny, image_folder, overrides, device, message):
    train = tiny(image_folder, "train.device=cuda" if device == "cuda" else "train.device=auto", *overrides).train
    with pytest.raises(C.ConfigError, match=message):
        speed.resolve(train, torch.device(device), steps_left=10)


# --------------------------------------------------------------------------------------------------
# AMP on CUDA: bf16 from compute capability 8.0, fp16 with the GradScaler from 7.0, off before
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("capability, amp", [
    ((6, 1), "off"),  # Pascal: no tensor cores, half precision saves memory but not time
    ((7, 0), "fp16"), ((7, 5), "fp16"),  # V100, T4 (Colab): bf16 only emulated
    ((8, 0), "bf16"), ((8, 6), "bf16"), ((8, 9), "bf16"), ((9, 0), "bf16"), ((10, 0), "bf16"), ((12, 0), "bf16"),
])
def test_auto_amp_follows_the_compute_capability(capability, amp):
    assert speed.auto_amp(capability) == amp


# --------------------------------------------------------------------------------------------------
# data.on_gpu: the device-resident batches, held on the CPU
# --------------------------------------------------------------------------------------------------
def test_a_dataset_held_on_a_device_gives_the_streamed_batch_order(tmp_path, image_folder, tiny):
    prepared = tmp_path / "prepared"
    prepare(tiny(image_folder), prepared, workers=0, progress=False)  # 64 images at 32x32x3
    cfg = tiny(prepared, "data.hflip=0.5")
    cpu = torch.device("cpu")
    streamed, held = build_loader(cfg, cpu), build_loader(cfg, cpu)
    held.dataset.hold(cpu)  # what data.on_gpu does on a GPU, without its free-memory check
    assert streamed.dataset.on_device is None and held.dataset.on_device is not None
    assert held.dataset.to(cpu).on_device is held.dataset.on_device  # to() holds on CUDA only
    for epoch, start in ((0, 0), (1, 0), (2, 2)):  # a resume mid-epoch starts at a later batch
        pairs = list(zip(streamed.epoch(epoch, start), held.epoch(epoch, start)))
        assert len(pairs) == 4 - start
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first, _ = next(streamed.epoch(0))
    other, _ = next(streamed.epoch(1))
    assert not torch.equal(first, other)  # epochs are shuffled: the order comparison means something
    with pytest.raises(C.ConfigError, match="data.on_gpu=true .* needs a CUDA device"):
        tiny(prepared, "data.on_gpu=true")


# --------------------------------------------------------------------------------------------------
# GPU memory in the logs: CUDA only
# --------------------------------------------------------------------------------------------------
def test_peak_gpu_memory_is_recorded_on_cuda_only(tmp_path, image_folder, tiny):
    assert memory_reading(3 * 2**30 + 2**29) == {"gpu_mem_peak_gib": 3.5}
    assert memory_reading(123_456_789) == {"gpu_mem_peak_gib": 0.115}
    assert memory_reading(0) == {"gpu_mem_peak_gib": 0.0}
    cpu = PeakMemory(torch.device("cpu"))
    assert cpu.since_last() == {} and cpu.over_run() == {}
    run = ganforge.train(tiny(image_folder, "train.max_steps=2", "train.log_every=1"), runs_dir=tmp_path,
                         log_format="quiet")
    assert logged(run) and not any("gpu_mem_peak_gib" in r for r in logged(run))
    assert "gpu_mem_peak_gib" not in json.loads((run / "summary.json").read_text())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_gpu_memory_is_in_each_log_line_and_the_summary_on_cuda(tmp_path, image_folder, tiny):
    run = ganforge.train(tiny(image_folder, "train.device=cuda", "train.compile=off", "train.max_steps=2",
                              "train.log_every=1"), runs_dir=tmp_path, log_format="quiet")
    peaks = [r["gpu_mem_peak_gib"] for r in logged(run)]
    summary = json.loads((run / "summary.json").read_text())
    assert peaks and all(p > 0 for p in peaks) and summary["gpu_mem_peak_gib"] >= max(peaks)
