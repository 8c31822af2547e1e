"""Config and argument fuzzing (hypothesis): every bad override or argument gives exit status 2 and a
one-line error that names the key (or flag), never a traceback, and leaves no run directory behind.

The CLI's ``main()`` is called in this process (catching SystemExit, as argparse exits) for speed: a few
hundred generated cases run in seconds; a few real subprocesses check the same from the outside.
Every generated case is invalid by construction (a key that does not exist, a value of the wrong type,
a number out of its range, ...), so a case that starts training is a bug the test reports.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import subprocess
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install '.[test]' (hypothesis)")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ganforge import config as C  # noqa: E402
from ganforge.cli import main  # noqa: E402

from .conftest import cli_env, ganforge_cmd, one_thread  # noqa: E402

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _types() -> dict[str, object]:
    """Every config key with its annotation, as the config's own strict builder sees them."""
    out = {}

    def walk(cls, prefix):
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, prefix + f.name + ".")
            else:
                out[prefix + f.name] = tp
    walk(C.Config, "")
    return out


TYPES = _types()
_serial = itertools.count()  # a fresh output folder per generated case
KEYS = sorted(TYPES)


def _base(tp):
    if get_origin(tp) in (Union, types.UnionType):
        return [a for a in get_args(tp) if a is not type(None)][0]
    return tp


def _optional(tp) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def keys_of(kind) -> list[str]:
    return [k for k in KEYS if _base(TYPES[k]) is kind and not _optional(TYPES[k])]


INT_KEYS, FLOAT_KEYS, BOOL_KEYS = keys_of(int), keys_of(float), keys_of(bool)
LITERAL_KEYS = [k for k in KEYS if get_origin(_base(TYPES[k])) is Literal and not _optional(TYPES[k])]
#: Keys that validate() holds to >= 0 or > 0, and those held to [0, 1] (config.py's lists).
NON_NEGATIVE = ["train.seed", "noise.anneal_steps", "ema.start_step", "guard.d_wins_steps", "guard.max_recoveries",
                "train.epochs", "train.max_steps", "train.sample_every", "train.midsave_steps", "train.midsave_minutes",
                "train.max_minutes", "data.limit", "optim.g.weight_decay", "optim.d.weight_decay", "noise.std",
                "loss.r1_gamma", "loss.gp_weight", "loss.r2_gamma", "loss.lecam", "ema.half_life_images",
                "ema.rampup", "model.num_classes", "eval.every", "train.keep_checkpoints",
                "model.nz", "model.ngf", "model.ndf", "data.batch_size", "optim.g.lr", "optim.d.lr", "train.d_steps",
                "train.n_fixed_noise", "train.log_every", "loss.r1_every", "augment.ada_interval", "data.prefetch_factor",
                "augment.ada_kimg", "eval.n", "data.timeout_seconds"]
UNIT_INTERVAL = ["data.hflip", "loss.label_flip", "augment.p", "ema.decay", "augment.ada_target",
                 "data.max_bad_fraction", "guard.lr_factor"]
#: Keys whose values become tensor sizes or counts: a huge one must be refused, not allocated.
SIZES = ["model.nz", "model.ngf", "model.ndf", "data.batch_size", "train.n_fixed_noise", "data.image_size"]

#: Values YAML reads in surprising ways (anchors, tags, flow syntax, booleans, nulls, dates, bases).
YAML_ODDITIES = ["~", "null", "yes", "off", "[", "{a: 1", "&a [*a]", "!!python/object/apply:os.system [true]",
                 "!!binary aGVsbG8=", "2001-12-14", "0x1F", "0o17", "1_000", "- x", "? x", ": :", "'unclosed",
                 '"a\\u0000b"', "{}", "[]", "[[1]]", "!!float nope", "*nothing", "%YAML 1.2", "|", ">"]


def near_key(key: str) -> st.SearchStrategy[str]:
    """Keys one typo away from a real one (a letter dropped, doubled, swapped or changed; the wrong section)."""
    def mutate(args):
        op, i, ch, section = args
        i = i % len(key)
        if op == 0:
            out = key[:i] + key[i + 1:]
        elif op == 1:
            out = key[:i] + key[i] + key[i:]
        elif op == 2 and i + 1 < len(key):
            out = key[:i] + key[i + 1] + key[i] + key[i + 2:]
        elif op == 3:
            out = key[:i] + ch + key[i + 1:]
        else:
            out = section + "." + key.split(".")[-1]
        return out
    sections = sorted({k.split(".")[0] for k in KEYS}) + ["trian", "modle", "optim.x", ""]
    return st.tuples(st.integers(0, 4), st.integers(0, 200), st.characters(), st.sampled_from(sections)).map(mutate)


def _not_a_number(text: str) -> bool:
    try:
        float(text)
        return False
    except ValueError:
        return True


WRONG_FOR = {
    int: st.one_of(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()).map(repr),
                   st.text(min_size=1).filter(lambda t: "\n" not in t and "=" not in t and _not_a_number(t)),
                   st.sampled_from(["[1, 2]", "{a: 1}", "true", "off", "''", "1.5", "one", "⁵", "٣", "1e400"])),
    float: st.one_of(st.text(min_size=1).filter(lambda t: "\n" not in t and _not_a_number(t)),
                     st.sampled_from(["[0.1]", "{lr: 1}", "true", "no", "''", "0,1", "1e-4e3", "½"])),
    bool: st.one_of(st.integers().map(str), st.sampled_from(["maybe", "[true]", "{}", "2", "0.5", "''", "ja", "✓"])),
}


def _is_error_case(override: str) -> bool:
    """Whether the config itself refuses ``override`` on top of the quickstart preset (the test's premise)."""
    try:
        C.load(preset="quickstart", overrides=["train.device=cpu", override])
    except C.ConfigError:
        return True
    return False


def bad_overrides() -> st.SearchStrategy[tuple[str, str]]:
    """(override, the key the error must name)."""
    unknown = st.sampled_from(KEYS).flatmap(near_key).filter(lambda k: k not in TYPES and "=" not in k and
                                                              "\n" not in k and "\r" not in k and k.strip() == k and k)
    unicode_key = st.text(min_size=1, max_size=20).filter(lambda k: k not in TYPES and "=" not in k and
                                                          k.strip() == k and "\n" not in k and "\r" not in k)
    wrong_type = st.one_of(*[st.sampled_from(keys).flatmap(lambda k, s=strategy: s.map(lambda v, k=k: (k, v)))
                             for keys, strategy in ((INT_KEYS, WRONG_FOR[int]), (FLOAT_KEYS, WRONG_FOR[float]),
                                                    (BOOL_KEYS, WRONG_FOR[bool]))])
    literal = st.sampled_from(LITERAL_KEYS).flatmap(
        lambda k: st.text(max_size=12).filter(lambda v: "\n" not in v).map(lambda v, k=k: (k, v)))
    negative = st.sampled_from(NON_NEGATIVE).flatmap(
        lambda k: st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-9, allow_nan=False)).map(
            lambda v, k=k: (k, repr(v) if isinstance(v, float) else str(v))))
    outside_unit = st.sampled_from(UNIT_INTERVAL).flatmap(
        lambda k: st.one_of(st.floats(min_value=1.0000001, allow_nan=False), st.floats(max_value=-1e-9, allow_nan=False),
                            st.just(float("nan"))).map(lambda v, k=k: (k, repr(v).replace("nan", ".nan").replace("inf", ".inf"))))
    nan_or_inf = st.sampled_from([k for k in NON_NEGATIVE if k in FLOAT_KEYS]).flatmap(
        lambda k: st.sampled_from([".nan", ".NaN", "-.inf", "nan"]).map(lambda v, k=k: (k, v)))
    huge = st.sampled_from(SIZES).flatmap(lambda k: st.integers(min_value=10**7, max_value=10**40).map(
        lambda v, k=k: (k, str(v))))
    empty = st.sampled_from(INT_KEYS + FLOAT_KEYS + BOOL_KEYS).map(lambda k: (k, ""))
    odd = st.sampled_from(INT_KEYS + FLOAT_KEYS + BOOL_KEYS).flatmap(
        lambda k: st.sampled_from(YAML_ODDITIES).map(lambda v, k=k: (k, v)))
    cases = st.one_of(unknown.map(lambda k: (f"{k}=1", k)), unicode_key.map(lambda k: (f"{k}=1", k)),
                      *[s.map(lambda kv: (f"{kv[0]}={kv[1]}", kv[0]))
                        for s in (wrong_type, literal, negative, outside_unit, nan_or_inf, huge, empty, odd)])
    return cases.filter(lambda case: _is_error_case(case[0]) or case[1] in SIZES or "nan" in case[0].lower()
                        or "inf" in case[0].lower())


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``ganforge ARGV`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, command: str, names: str) -> None:
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and lines[0].startswith(f"ganforge {command}: error:"), err
    assert names in lines[0] or repr(names)[1:-1] in lines[0], f"the error does not name {names!r}: {err}"


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


@settings(FUZZ, max_examples=300)
@given(case=bad_overrides())
def test_bad_train_overrides_exit_2_with_one_line_naming_the_key(case, images, runs_dir, capsys):
    override, key = case
    code, err = run_cli(["train", "--preset", "quickstart", "--runs-dir", str(runs_dir), f"data.source={images}",
                         "train.device=cpu", "train.epochs=1", "--quiet", override], capsys)
    assert_one_line_error(code, err, "train", key)
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), f"{override} left a run directory"


NUMBER_TEXT = st.one_of(st.integers().map(str), st.floats(allow_nan=True).map(repr), st.text(max_size=8),
                        st.sampled_from(["", "nan", "inf", "-inf", "1e999", "-0", "0x10", "١٢", "1,2", "--"]))


def _bad(value_ok) -> st.SearchStrategy[str]:
    return NUMBER_TEXT.filter(lambda v: "\n" not in v and "\x00" not in v and not value_ok(v))


def _int_ok(low: int, high: float = math.inf):
    def ok(v):
        try:
            return low <= int(v) <= high
        except ValueError:
            return False
    return ok


def _float_ok(low: float, high: float, open_low: bool = False):
    def ok(v):
        try:
            f = float(v)
        except ValueError:
            return False
        return (low < f if open_low else low <= f) and f <= high
    return ok


#: For sample, interpolate, eval: (flag, values it refuses).
SAMPLING_FLAGS = {
    "--n": _bad(_int_ok(1, 100_000)),
    "--truncation": _bad(_float_ok(0.0, 1.0, open_low=True)),
    "--truncation-resample": _bad(_float_ok(0.0, 1e308, open_low=True)),
    "--seed": _bad(_int_ok(0, 2**63 - 1)),
    "--bn": st.text(max_size=10).filter(lambda v: v not in ("batch", "running", "standing") and "\n" not in v
                                        and not v.startswith("-")),
    "--device": st.sampled_from(["gpu", "cuda:x", "tpu", "cpu0", "", "κ", "cuda:-1"]),
}


@FUZZ
@given(data=st.data())
def test_bad_sample_and_interpolate_arguments_exit_2(data, reference_run, tmp_path, capsys):
    command = data.draw(st.sampled_from(["sample", "interpolate"]))
    flags = dict(SAMPLING_FLAGS)
    if command == "interpolate":
        del flags["--n"]
        flags["--steps"] = _bad(_int_ok(2, 10_000))
        flags["--rows"] = _bad(_int_ok(1, 10_000))
        flags["--points"] = _bad(_int_ok(2, 10_000))
        flags["--fps"] = _bad(_float_ok(0.0, 1000.0, open_low=True))
    flag = data.draw(st.sampled_from(sorted(flags)))
    value = data.draw(flags[flag])
    assume(not value.startswith("-") or value[1:2].isdigit() or value in ("-inf", "-0"))
    out = tmp_path / f"{next(_serial)}" / ("grid.png" if command == "sample" else "walk.gif")
    small = ["--n", "4"] if command == "sample" else ["--rows", "1", "--steps", "2"]
    code, err = run_cli([command, str(reference_run), "--device", "cpu", *small, "--out", str(out), f"{flag}={value}"],
                        capsys)
    assert_one_line_error(code, err, command, flag.split("-")[-1])
    assert not out.parent.exists(), f"{command} {flag}={value} wrote {list(out.parent.iterdir())}"


@FUZZ
@given(data=st.data())
def test_bad_eval_and_prepare_arguments_exit_2(data, reference_run, images, tmp_path, capsys):
    command = data.draw(st.sampled_from(["eval", "prepare"]))
    if command == "eval":
        flags = {"--n": _bad(_int_ok(2, 10**6)), "--metrics": st.sampled_from(["fid,zz", "", ",", "fid;kid", "ß", "fid,,kidd"]),
                 "--size": _bad(_int_ok(8, 4096)), "--seed": SAMPLING_FLAGS["--seed"], "--device": SAMPLING_FLAGS["--device"]}
        flag = data.draw(st.sampled_from(sorted(flags)))
        value = data.draw(flags[flag])
        assume(not value.startswith("-") or value[1:2].isdigit() or value in ("-inf", "-0"))
        extra = ["--real", str(images), "--fake", str(images)] if flag == "--size" else [str(reference_run)]
        # --n 8 and one cheap metric first: a case that slipped through would end in seconds (and fail)
        argv = ["eval", *extra, "--n", "8", "--metrics", "copy", "--out", str(tmp_path / "e.json"), f"{flag}={value}"]
    else:
        flags = {"--size": _bad(_int_ok(8, 4096)), "--channels": st.text(max_size=4).filter(lambda v: v not in ("1", "3", "4")),
                 "--limit": _bad(_int_ok(0)), "--workers": _bad(_int_ok(-1, 1024)),
                 "--max-bad-fraction": _bad(_float_ok(0.0, 1.0)),
                 "--background": st.sampled_from(["255,255", "1,2,3,4", "-1,0,0", "256,0,0", "a,b,c", "", "1.5,2,3"])}
        flag = data.draw(st.sampled_from(sorted(flags)))
        value = data.draw(flags[flag])
        assume("\n" not in value and (not value.startswith("-") or value[1:2].isdigit() or value in ("-inf", "-0")))
        argv = ["prepare", str(images), str(tmp_path / "prepared"), "--quiet", f"{flag}={value}"]
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, command, flag.lstrip("-").split("-")[0])
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("override,key", [("train.epochz=3", "train.epochz"), ("model.nz=.nan", "model.nz"),
                                          ("data.batch_size=[1, 2]", "data.batch_size"),
                                          ("optim.g.lr=!!python/object/apply:os.system [true]", "optim.g.lr")])
def test_bad_overrides_in_a_real_process(override, key, images, tmp_path):
    runs = tmp_path / "runs"
    done = subprocess.run(ganforge_cmd("train", "--preset", "quickstart", "--runs-dir", str(runs),
                                       f"data.source={images}", override),
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    assert_one_line_error(done.returncode, done.stderr, "train", key)
    assert not runs.exists()
