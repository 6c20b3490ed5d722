"""The backend declaration and what reads it: the adapters, CI, the skip rule, gpu-check."""

from __future__ import annotations

import json
import os
import py_compile
import re
import subprocess
import sys

import pytest

from probcon_ref.tools import backends as _backends
from probcon_ref.tools import check, declarations

from conftest import DECLARED, ROOT, declared_cases, require, required_names, skip_or_fail

GPU_CHECK = ROOT / "backends" / "gpu-check"


# ---------------------------------------------------------------------------------------
# The declaration against the adapters, check.py and CI
# ---------------------------------------------------------------------------------------


def test_the_declaration_ships_with_the_package():
    """One file, inside the package, so that an installed ``probcon-ref check`` reads it too."""
    assert declarations.DECLARATION_FILE.parent == ROOT / "probcon_ref" / "tools"
    assert DECLARED == declarations.load_declarations()


def test_every_declared_backend_has_an_adapter():
    assert set(_backends.ADAPTERS) == set(DECLARED)
    for backend, spec in DECLARED.items():
        for dev, d in spec["devices"].items():
            assert d["gpu"] == (dev != "cpu"), f"{backend}.{dev}: only CUDA devices are GPUs here"


def test_declared_tolerances_follow_spec_where_spec_bounds_them():
    """The float64/float32 rows come from the one table of the contract's bounds, not a copy of it;
    a backend may only loosen what the contract does not bound (the half precisions, the inverse)."""
    from probcon_ref.testing.tolerances import bound

    for backend, spec in DECLARED.items():
        for dt in spec["dtypes"]:
            tol = spec["tolerances"][dt]
            assert (tol["loss"], tol["grad"]) == (bound("loss", dt), bound("grad", dt)), f"{backend} {dt}"
            factor = 2.0 if dt == "float64" else 1.0
            for key in ("log_iv", "ratio", "log_vmf"):
                assert tol[key] == factor * bound(key, dt), f"{backend} {dt} {key}"


def test_available_targets_are_declared_and_complete():
    declared = {(c.backend, c.device, c.dtype) for c in declared_cases()}
    available = [(t.backend, t.device, t.dtype) for t in _backends.available_targets()]
    assert len(available) == len(set(available))
    assert set(available) <= declared
    unavailable = dict(_backends.unavailable_targets())
    for c in declared_cases():
        present = (c.backend, c.device, c.dtype) in available
        assert present != (c.name in unavailable), c.id
    for t in _backends.available_targets():
        assert t.name == DECLARED[t.backend]["devices"][t.device]["name"]
        assert t.tolerances == DECLARED[t.backend]["tolerances"][t.dtype]


def test_cases_have_unique_ids_and_gpu_marks():
    for half in (False, True):
        cases = declared_cases(half=half)
        ids = [c.id for c in cases]
        assert len(ids) == len(set(ids))
        assert all(c.gpu == (c.device == "cuda") for c in cases)
    assert {c.dtype for c in declared_cases(half=True)} == {"float16", "bfloat16"}


def _ci_required() -> set[str]:
    text = (ROOT / ".ci" / "run").read_text()
    m = re.search(r'PROBCON_REQUIRE_BACKENDS="\$\{PROBCON_REQUIRE_BACKENDS:-([^}]*)\}"', text)
    assert m, ".ci/run must export PROBCON_REQUIRE_BACKENDS"
    return set(m.group(1).split(","))


def test_ci_requires_the_cpu_backends():
    names = {d["name"] for spec in DECLARED.values() for d in spec["devices"].values()}
    required = _ci_required()
    assert required <= names
    assert {"numpy", "array_api_strict", "torch-cpu"} <= required


def test_each_backend_is_installed_by_ci():
    """The package of every backend's install line is what .ci/install or the extras install."""
    install = (ROOT / ".ci" / "install").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for backend, spec in DECLARED.items():
        requirement = spec["install"].split("pip install", 1)[1].split()[0]
        name = re.split(r"[=<>!~\[]", requirement)[0]
        if "==" in requirement:  # a pinned line must be the one CI uses
            assert f'"{requirement}"' in install, f"{backend}: .ci/install lacks {requirement}"
        else:
            assert f'"{name}' in pyproject, f"{backend}: {name} is in no dependency list"


# ---------------------------------------------------------------------------------------
# The loader and the skip rule
# ---------------------------------------------------------------------------------------


BAD_FILES = {
    "unknown tolerance": ('[tolerances.float64]\nspeed = 1e-3\n', "tolerances.float64.speed"),
    "tolerance out of range": ('[backends.numpy.tolerances.float64]\nloss = 2.0\n', "backends.numpy.tolerances.float64.loss"),
    "unknown dtype": ('[backends.numpy]\ndtypes = ["float128"]\n', "backends.numpy.dtypes"),
    "dtypes not a list": ('[backends.numpy]\ndtypes = "float64"\n', "backends.numpy.dtypes must be a list"),
    "duplicate name": ('[backends.array_api_strict.devices.cpu]\nname = "numpy"\n', "'numpy' is used twice"),
    "missing field": (None, "backends.numpy.install is missing"),
    "missing tolerance": (None, "no tolerance inverse_ratio for float64"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_loader_rejects_malformed_files(case, tmp_path):
    data = declarations.read_toml()
    patch, words = BAD_FILES[case]
    if case == "missing field":
        del data["backends"]["numpy"]["install"]
    elif case == "missing tolerance":
        del data["tolerances"]["float64"]["inverse_ratio"]
    else:
        _merge(data, declarations.parse_toml(patch))
    path = tmp_path / "backends.toml"
    path.write_text(_dump(data))
    with pytest.raises(ValueError, match=re.escape(words)):
        declarations.load_declarations(path)


def test_loader_reads_what_it_writes(tmp_path):
    path = tmp_path / "backends.toml"
    path.write_text(_dump(declarations.read_toml()))
    assert declarations.load_declarations(path) == DECLARED


def _merge(into: dict, patch: dict) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _dump(data: dict, prefix: str = "") -> str:
    """A small TOML writer for the tables and scalars backends.toml uses."""
    scalars, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            scalars.append(f"{k} = {json.dumps(v)}")
    out = ""
    if scalars:
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(scalars) + "\n\n"
    for k, v in tables:
        out += _dump(v, f"{prefix}.{k}" if prefix else k)
    return out


def test_required_backends_fail_instead_of_skipping(monkeypatch):
    monkeypatch.setenv("PROBCON_REQUIRE_BACKENDS", "numpy, cupy")
    assert required_names() == {"numpy", "cupy"}
    with pytest.raises(pytest.fail.Exception, match="cupy is required .* but cannot run here: no device"):
        skip_or_fail("cupy", "no device")
    with pytest.raises(pytest.skip.Exception, match="torch-cuda: no device"):
        skip_or_fail("torch-cuda", "no device")
    monkeypatch.setenv("PROBCON_REQUIRE_BACKENDS", "numpy,jax")
    with pytest.raises(pytest.UsageError, match="unknown backend.*jax"):
        required_names()
    monkeypatch.setenv("PROBCON_REQUIRE_BACKENDS", "")
    assert required_names() == frozenset()


def test_required_backend_that_is_missing_fails(monkeypatch):
    """require() on an unavailable target: a skip, or with the variable set a failure."""
    monkeypatch.setattr(_backends, "availability", lambda backend, device: "pretend it is absent")
    monkeypatch.setenv("PROBCON_REQUIRE_BACKENDS", "")
    with pytest.raises(pytest.skip.Exception, match="array_api_strict: pretend it is absent"):
        require("array_api_strict")
    monkeypatch.setenv("PROBCON_REQUIRE_BACKENDS", "array_api_strict")
    with pytest.raises(pytest.fail.Exception, match="array_api_strict is required"):
        require("array_api_strict")


class _SkipReport:
    skipped = True

    def __init__(self, reason):
        self.longrepr = ("tests/test_x.py", 3, reason)


def test_importorskip_of_a_required_backend_is_caught(monkeypatch):
    """Other test files use pytest.importorskip; the variable covers those skips as well."""
    from conftest import required_import_skip

    monkeypatch.setenv("PROBCON_REQUIRE_BACKENDS", "torch-cpu,array_api_strict")
    assert required_import_skip(_SkipReport("Skipped: could not import 'torch': No module named 'torch'")) == "torch-cpu"
    assert required_import_skip(_SkipReport("Skipped: could not import 'array_api_strict': x")) == "array_api_strict"
    assert required_import_skip(_SkipReport("Skipped: could not import 'cupy': x")) is None  # not required
    assert required_import_skip(_SkipReport("Skipped: slow test")) is None
    monkeypatch.setenv("PROBCON_REQUIRE_BACKENDS", "")
    assert required_import_skip(_SkipReport("Skipped: could not import 'torch': x")) is None


NET_TEST = """
import sys
import pytest

def test_function_level(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    pytest.importorskip("torch")

def test_other_reason():
    pytest.skip("not about backends")
"""


@pytest.mark.parametrize("required, outcome", [("torch-cpu", "1 failed, 1 skipped"), ("", "2 skipped")])
def test_importorskip_net_in_a_real_run(tmp_path, required, outcome):
    (tmp_path / "test_net.py").write_text(NET_TEST)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), PROBCON_REQUIRE_BACKENDS=required)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                           "test_net.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert outcome in done.stdout, done.stdout
    if required:
        assert "torch-cpu is required (PROBCON_REQUIRE_BACKENDS) but was skipped" in done.stdout


def test_readme_says_how_to_add_a_backend():
    text = (ROOT / "backends" / "README.md").read_text()
    for words in ("probcon_ref/tools/backends.toml", "probcon_ref/tools/backends.py", "PROBCON_REQUIRE_BACKENDS",
                  "gpu-check", ".whl"):
        assert words in text


# ---------------------------------------------------------------------------------------
# backends/gpu-check
# ---------------------------------------------------------------------------------------


def _gpu_check(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("PROBCON_CASE_LOG",)}
    return subprocess.run([sys.executable, str(GPU_CHECK), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_gpu_check_is_an_executable_python_script(tmp_path):
    assert os.access(GPU_CHECK, os.X_OK)
    assert GPU_CHECK.read_text().startswith("#!/usr/bin/env python3\n")
    py_compile.compile(str(GPU_CHECK), cfile=str(tmp_path / "gpu-check.pyc"), doraise=True)
    done = _gpu_check("--help")
    assert done.returncode == 0 and "OUTDIR" in done.stdout
    done = _gpu_check(tmp_path / "out", "--sizes", "3")
    assert done.returncode == 2 and "--sizes must be even numbers" in done.stderr


def test_gpu_check_fails_cleanly_without_a_gpu(tmp_path):
    if _backends.availability("torch", "cuda") is None or _backends.cupy_device_available():
        pytest.skip("this machine has a CUDA device; the no-GPU message cannot show here")
    out = tmp_path / "report"
    done = _gpu_check(out)
    assert done.returncode == 4, done.stderr
    assert "gpu-check: no CUDA device on this machine" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()  # no half-written report


def test_gpu_check_rejects_a_broken_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "broken-1.0-py3-none-any.whl").write_text("not a zip archive")
    done = _gpu_check(tmp_path / "out", "--wheels", wheels)
    assert done.returncode == 3 and "cannot install the wheels" in done.stderr


def test_gpu_check_rehearsal_writes_the_report(tmp_path):
    """The whole pipeline on the CPU: tests, check, timings, report.md and report.json."""
    require("torch-cpu")
    out = tmp_path / "report"
    done = _gpu_check(out, "--rehearse-on-cpu", "--sizes", "64", "--budget", "200", timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["result"] == "pass"
    assert [s["step"] for s in report["steps"]] == ["pytest", "probcon-ref check", "target batch", "benchmark"]
    target = report["device_section"]
    assert target["times_ms"]["torch autograd NT-Xent fwd+bwd"] > 0 and target["floor_ms"]["torch"] > 0
    assert report["pytest_counts"]["passed"] > 0 and report["pytest_counts"]["failures"] == 0
    assert report["cases"] and all(c["error"] <= c["tolerance"] for c in report["cases"])
    assert report["benchmark"] and report["benchmark"][0]["pcl_loss_and_grad_ms"] > 0
    md = (out / "report.md").read_text()
    assert "## Errors against NumPy float64" in md and "## Timings (median ms)" in md
    assert "## Target batch" in md and "| torch integration PCL fwd+bwd |" in md
    assert "torch" in report["environment"] and report["environment"]["array_api_compat"]
