"""The PyTorch floor in pyproject.toml, held against what the code calls.

Installing the floor's torch here to run the suite on it is not practical: PyPI's Linux wheel of torch
2.6.0 is 767 MB on its own (32 s to download here) and pulls in the CUDA libraries besides (see
docs/speed.md for the figures), and the CPU-only index is not reachable from CI.  Instead every torch
and torchvision name the package uses (found in its source by the AST, through ``import ... as`` and
``from ... import`` aliases) must be listed below with the version that introduced it: ``NEWER`` for
those after 2.0, ``IN_2_0`` for those torch 2.0 already had.  A new call fails this test until someone
says which version it needs, and pyproject's floor must cover the newest.  Methods called on tensors and
modules (``x.contiguous(memory_format=...)``) are out of the scan's reach: ``BEHAVIOURS`` lists the ones
that need a recent torch.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "ganforge"

#: Names that came after torch 2.0 / torchvision 0.15, with the release that introduced them.
NEWER = {
    "torch.nn.utils.get_total_norm": "2.6",  # the gradient norm without clipping (training/step.py)
    "torch.amp.GradScaler": "2.3",
    "torch.compiler": "2.1",
    "torch.compiler.is_compiling": "2.3",  # device-generic (GradScaler("cpu") for fp16 on a CPU)
    "torch._foreach_copy_": "2.1",
    "torch.utils.flop_counter.FlopCounterMode": "2.1",
}

#: Behaviours of older names that need a newer release than the name itself.
BEHAVIOURS = {
    "torch.autocast('cpu', dtype=torch.float16): fp16 autocast on a CPU (train.amp=fp16 there)": "2.3",
    "torch.load(weights_only=True) refusing unknown globals with a 'Weights only load failed' message": "2.4",
    "torch.compile on Python 3.12 (the minimum for 3.12: 2.4; for 3.13: 2.6)": "2.4",
}

#: Names torch 2.0 (torchvision 0.15) already had.
IN_2_0 = """
torch torch.Generator torch.Tensor torch.__version__ torch._dynamo torch._dynamo.eval_frame
torch._dynamo.eval_frame.OptimizedModule torch._foreach_lerp_ torch.acos torch.amp torch.arange torch.as_tensor
torch.atan2 torch.autocast torch.autograd torch.autograd.grad torch.autograd.graph
torch.autograd.graph.saved_tensors_hooks torch.backends torch.backends.cuda torch.backends.cuda.matmul
torch.backends.cuda.matmul.allow_tf32 torch.backends.cudnn torch.backends.cudnn.allow_tf32
torch.backends.cudnn.benchmark torch.backends.mps torch.backends.mps.is_available torch.bfloat16 torch.cat torch.cdist
torch.channels_last torch.compile torch.contiguous_format torch.cos torch.cuda torch.cuda.current_device
torch.cuda.device_count torch.cuda.get_device_capability torch.cuda.get_device_name torch.cuda.get_device_properties torch.cuda.get_rng_state
torch.cuda.is_available torch.cuda.is_bf16_supported torch.cuda.max_memory_allocated torch.cuda.mem_get_info
torch.cuda.reset_peak_memory_stats torch.cuda.set_device torch.cuda.set_rng_state torch.device torch.distributed
torch.distributed.ReduceOp torch.distributed.ReduceOp.MAX torch.distributed.all_reduce torch.distributed.barrier
torch.distributed.broadcast_object_list torch.distributed.destroy_process_group torch.distributed.gather_object
torch.distributed.get_backend torch.distributed.get_rank torch.distributed.get_world_size
torch.distributed.init_process_group torch.distributed.is_available torch.distributed.is_initialized torch.dtype
torch.einsum torch.empty torch.enable_grad torch.equal torch.float16 torch.float32 torch.float64 torch.floor
torch.from_numpy torch.full torch.full_like torch.func torch.func.functional_call torch.get_num_threads
torch.get_rng_state torch.hub torch.hub.download_url_to_file torch.hub.get_dir torch.inference_mode
torch.initial_seed torch.is_grad_enabled torch.isfinite torch.lerp torch.linspace torch.load torch.long
torch.manual_seed torch.multinomial torch.nn torch.nn.AdaptiveAvgPool2d torch.nn.AvgPool2d torch.nn.BatchNorm1d
torch.nn.BatchNorm2d torch.nn.Conv2d torch.nn.ConvTranspose2d torch.nn.Embedding torch.nn.Flatten torch.nn.Identity
torch.nn.LeakyReLU torch.nn.Linear torch.nn.Module torch.nn.ModuleDict torch.nn.ModuleList torch.nn.Parameter
torch.nn.ReLU torch.nn.Sequential torch.nn.SiLU torch.nn.Sigmoid torch.nn.SyncBatchNorm torch.nn.Tanh
torch.nn.Upsample torch.nn.ZeroPad2d torch.nn.functional torch.nn.functional.adaptive_avg_pool2d
torch.nn.functional.avg_pool2d torch.nn.functional.binary_cross_entropy_with_logits torch.nn.functional.glu
torch.nn.functional.interpolate torch.nn.functional.l1_loss torch.nn.functional.max_pool2d
torch.nn.functional.mse_loss torch.nn.functional.normalize torch.nn.functional.one_hot torch.nn.functional.pad
torch.nn.functional.relu torch.nn.functional.scaled_dot_product_attention torch.nn.functional.softplus
torch.nn.init torch.nn.init.normal_ torch.nn.init.orthogonal_ torch.nn.init.xavier_uniform_ torch.nn.init.zeros_
torch.nn.modules.batchnorm._BatchNorm torch.nn.parallel.DistributedDataParallel torch.nn.utils
torch.nn.utils.parametrizations.spectral_norm torch.nn.utils.parametrize torch.nn.utils.parametrize.is_parametrized
torch.no_grad torch.ones torch.ones_like torch.optim torch.optim.Adam torch.optim.AdamW torch.optim.Optimizer
torch.optim.RMSprop torch.optim.SGD torch.optim.lr_scheduler.LambdaLR torch.promote_types torch.rand torch.randint
torch.randn torch.randn_like torch.random torch.random.fork_rng torch.randperm torch.save torch.set_grad_enabled
torch.set_rng_state torch.sigmoid torch.sign torch.sin torch.split torch.sqrt torch.stack torch.tensor torch.uint8
torch.use_deterministic_algorithms torch.utils torch.utils.data torch.utils.data.DataLoader torch.utils.data.Dataset
torch.utils.data.Sampler torch.utils.tensorboard.SummaryWriter torch.where torch.zeros torch.zeros_like
torchvision torchvision.datasets torchvision.transforms.v2.functional torchvision.transforms.v2.functional.resize
torchvision.transforms.v2.functional.center_crop torchvision.transforms.v2.functional.pil_to_tensor
torchvision.utils.make_grid
torchvision.utils.save_image
torch.nn.functional.conv2d torch.utils.data._utils.signal_handling
torch.utils.data._utils.signal_handling._remove_worker_pids torchvision.transforms.v2.functional.InterpolationMode torchvision.transforms.v2.functional.InterpolationMode.BICUBIC
torchvision.transforms.v2.functional.InterpolationMode.BILINEAR
""".split()

#: torchvision's release that goes with each torch minor release (0.15 with 2.0, ..., 0.21 with 2.6).
TORCHVISION_MINOR_OFFSET = 15


def version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.match(r"(\d+(?:\.\d+)*)", text).group(1).split("."))


def torch_names_used(root: Path = SRC) -> dict[str, set[str]]:
    """Every dotted torch/torchvision name the package's source refers to, with the files that do."""
    used: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        alias: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in ("torch", "torchvision"):
                        alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] in ("torch", "torchvision"):
                for a in node.names:
                    alias[a.asname or a.name] = f"{node.module}.{a.name}"
        where = str(path.relative_to(REPO))
        for name in alias.values():
            used.setdefault(name, set()).add(where)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                parts, n = [], node
                while isinstance(n, ast.Attribute):
                    parts.append(n.attr)
                    n = n.value
                if isinstance(n, ast.Name) and n.id in alias:
                    used.setdefault(".".join([alias[n.id], *reversed(parts)]), set()).add(where)
    return used


def pyproject_floor(package: str) -> tuple[int, ...]:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(rf'"{package}>=([\d.]+)', text)
    assert m, f"pyproject.toml states no floor for {package}"
    return version(m.group(1))


def test_every_torch_name_the_code_uses_is_placed_by_version():
    used = torch_names_used()
    assert "torch.nn.utils.get_total_norm" in used and len(used) > 100  # the scan sees through the aliases
    unplaced = {name: sorted(files) for name, files in used.items() if name not in NEWER and name not in IN_2_0}
    assert not unplaced, ("torch names with no version in tests/test_torch_floor.py; add each to NEWER with the "
                          f"release that introduced it (or IN_2_0): {unplaced}")
    unused = [name for name in NEWER if name not in used]
    assert not unused, f"NEWER lists names the code no longer uses: {unused}"


def test_the_installed_torch_has_every_listed_name():
    import importlib
    for name in [*NEWER, *IN_2_0]:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            break


def test_pyproject_floor_covers_the_newest_api_and_the_machines_we_run_on():
    floor = pyproject_floor("torch")
    newest = max(version(v) for v in [*NEWER.values(), *BEHAVIOURS.values()])
    assert floor == newest, f"pyproject says torch>={'.'.join(map(str, floor))}, the code needs {newest}"
    vision = pyproject_floor("torchvision")
    assert vision == (0, floor[1] + TORCHVISION_MINOR_OFFSET), f"torchvision>={vision} does not go with torch {floor}"
    assert re.search(r'"torch>=[\d.]+,<3"', (REPO / "pyproject.toml").read_text())
    for where, v in (("the GPU machine", "2.11.0"), ("this machine", torch.__version__)):
        assert floor <= version(v)[:2] and version(v)[0] < 3, f"torch {v} on {where} is outside the range"
    readme = (REPO / "README.md").read_text()
    assert f"PyTorch ({floor[0]}.{floor[1]} or newer)" in readme
