"""What a newcomer gets: the wheel, built from this tree and installed in a fresh venv.

The venv has no access to this repository or to the environment running the tests (no
``--system-site-packages``, no ``PYTHONPATH``, no user site, commands run from a temporary
folder), and pip installs the wheel with its dependencies only: NumPy and array-api-compat,
from the package index. In it, every command the README documents for the base install
runs: ``--version``, ``--help`` (plain text), ``check``, ``vectors DIR``, ``validate`` on
the small NumPy implementation below (and its broken twin), and ``bench --quick`` without
SciPy. Then the PyTorch of the environment running the tests is made visible to the venv,
after the venv's own packages, and ``import probcon_ref.torch.distributed`` and ``check``
run against it.

Needs ``python -m venv`` with pip and a reachable package index; without them it skips with
the reason, unless ``PROBCON_REQUIRE_TOOLS`` names ``venv`` (CI does).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, skip_or_fail_tool

pytestmark = pytest.mark.slow

VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "probcon_ref" / "__init__.py").read_text(), re.M).group(1)
GOLDEN = ROOT / "probcon_ref" / "testing" / "golden"

# A PCL written from the paper in plain NumPy, with its gradient by hand; only the special
# functions come from the package. It takes the care the contract, section 4 asks for where the loss
# is tiny (the positive's cosine from the distance, log(1 + sum) rather than a difference
# of log-sum-exps, P_ap - 1 summed from the other weights), so that validate's whole battery
# passes. ``mask_self=False`` is a classic mistake: the anchor left among its own candidates.
IMPLEMENTATION = '''
import numpy as np

from probcon_ref.special import bessel_ratio, log_vmf_normalizer


def pcl_loss(z1, z2, kappa1, kappa2, mask_self=True):
    dtype = z1.dtype
    z = np.concatenate([z1, z2]).astype(np.float64)
    kappa = np.concatenate([kappa1, kappa2]).astype(np.float64)
    n2, d = z.shape
    n = n2 // 2
    rows = np.arange(n2)
    pos = (rows + n) % n2
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    mu = z / norm
    cos = np.clip(mu @ mu.T, -1.0, 1.0)
    # the positive's cosine from the distance, exact to its own size when the views nearly agree
    cos[rows, pos] = 1.0 - 0.5 * np.sum((mu - mu[pos]) ** 2, axis=1)
    logits = log_vmf_normalizer(d, kappa)[None, :] + kappa[None, :] * cos
    gaps = logits - logits[rows, pos][:, None]  # every candidate against the positive
    others = np.ones((n2, n2), dtype=bool)
    others[rows, pos] = False
    if mask_self:
        others[rows, rows] = False
    gaps = np.where(others, gaps, -np.inf)
    top = np.max(gaps, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    rest = top[:, 0] + np.log(np.sum(np.exp(gaps - top), axis=1))  # log sum_{b != a, p} e^gap
    per_anchor = np.logaddexp(0.0, rest)  # log(1 + sum e^gap): no cancellation when it is tiny
    loss = np.mean(per_anchor)
    p = np.exp(gaps - per_anchor[:, None])  # softmax weights of the candidates that are not the positive
    w = p / n2
    w[rows, pos] = -np.sum(p, axis=1) / n2  # P_ap - 1, summed from the others rather than subtracted
    grad_kappa = np.sum(w * (cos - bessel_ratio(d / 2 - 1, kappa)[None, :]), axis=0)
    m = w * kappa[None, :]
    grad_mu = (m + m.T) @ mu
    grad_z = (grad_mu - np.sum(grad_mu * mu, axis=1, keepdims=True) * mu) / norm
    grads = [grad_z[:n], grad_z[n:], grad_kappa[:n], grad_kappa[n:]]
    return np.asarray(loss, dtype=dtype), [a.astype(dtype) for a in grads]


def unmasked(z1, z2, kappa1, kappa2):
    return pcl_loss(z1, z2, kappa1, kappa2, mask_self=False)
'''

PROBE = '''
import importlib.util, json, os, sys, sysconfig
import probcon_ref
print(json.dumps({"file": probcon_ref.__file__, "purelib": sysconfig.get_paths()["purelib"],
                  "prefix": sys.prefix, "path": [os.path.realpath(p) for p in sys.path],
                  "scipy": importlib.util.find_spec("scipy") is not None,
                  "torch": importlib.util.find_spec("torch") is not None}))
'''

# pip's words when it cannot reach an index (as opposed to a resolution that fails)
OFFLINE = re.compile(r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
                     r"Network is unreachable|No route to host|ConnectTimeout|ProxyError|Could not fetch URL")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _run(cmd, cwd, timeout=600, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(**env), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this tree, built as ``pip wheel .`` builds it."""
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT]
    try:
        import hatchling  # noqa: F401  (the build backend is here: no index needed to build)

        cmd.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    done = _run(cmd, cwd=out)
    if done.returncode != 0 and OFFLINE.search(done.stdout + done.stderr):
        skip_or_fail_tool("venv", f"the build backend cannot be fetched: {done.stderr[-500:]}")
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("probcon_ref-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed, plain (its dependencies only)."""
    root = tmp_path_factory.mktemp("venv") / "env"
    done = _run([sys.executable, "-m", "venv", root], cwd=root.parent, timeout=300)
    if done.returncode != 0:
        skip_or_fail_tool("venv", f"python -m venv cannot make an environment here: {done.stderr[-500:]}")
    done = _run([root / "bin" / "python", "-m", "pip", "install", "-q", wheel], cwd=root.parent)
    if done.returncode != 0 and OFFLINE.search(done.stdout + done.stderr):
        skip_or_fail_tool("venv", f"the wheel's dependencies cannot be fetched: {done.stderr[-500:]}")
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture
def work(tmp_path) -> Path:
    """A folder outside the repository to run the commands from."""
    return tmp_path


def _probe(venv: Path, cwd: Path) -> dict:
    done = _run([venv / "bin" / "python", "-c", PROBE], cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _cli(venv: Path, cwd: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    return _run([venv / "bin" / "probcon-ref", *args], cwd=cwd, timeout=timeout)


def test_wheel_ships_every_subpackage_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "probcon_ref").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert package <= names, f"missing from the wheel: {sorted(package - names)}"
    for must in ("probcon_ref/torch/distributed.py", "probcon_ref/cupy/fused.cu",
                 "probcon_ref/testing/golden/manifest.json", "probcon_ref/testing/golden/README.md"):
        assert must in names
    dist_info = f"probcon_ref-{VERSION}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: BSD-3-Clause" in metadata
    assert not [n for n in names if n.startswith(("tests/", "docs/", "backends/"))]


def test_the_venv_runs_the_wheel_not_this_tree(venv, work):
    info = _probe(venv, work)
    installed = Path(info["file"]).resolve()
    assert installed.is_relative_to(Path(info["purelib"]).resolve()), info
    assert installed.is_relative_to(venv.resolve()) and not installed.is_relative_to(ROOT.resolve()), info
    assert not [p for p in info["path"] if Path(p).is_relative_to(ROOT.resolve())], info["path"]
    assert not info["scipy"] and not info["torch"], "the plain install must bring neither SciPy nor PyTorch"


def test_version_and_plain_help(venv, work):
    done = _cli(venv, work, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"probcon-ref {VERSION}", done.stdout + done.stderr
    for command in ("", "check", "validate", "vectors", "bench", "experiment"):
        done = _cli(venv, work, *([command] if command else []), "--help")
        assert done.returncode == 0, done.stderr
        assert "usage: probcon-ref" in done.stdout
        markup = re.findall(r"``|:(?:func|mod|class|meth|eq):`", done.stdout)
        assert not markup, f"probcon-ref {command} --help shows reStructuredText: {markup}"


def test_check(venv, work):
    done = _cli(venv, work, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^pcl\s+numpy\s+cpu\s+float64\s.*pass$", done.stdout, re.M), done.stdout
    assert done.stdout.rstrip().endswith("OK"), done.stdout


def test_vectors(venv, work):
    out = work / "golden"
    done = _cli(venv, work, "vectors", out)
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = sorted(p.name for p in GOLDEN.iterdir() if p.is_file())
    assert sorted(p.name for p in out.iterdir()) == shipped
    assert (out / "manifest.json").read_bytes() == (GOLDEN / "manifest.json").read_bytes()


def test_validate_passes_a_correct_implementation_and_fails_a_wrong_one(venv, work):
    (work / "numpy_pcl.py").write_text(IMPLEMENTATION)
    done = _cli(venv, work, "validate", "numpy_pcl:pcl_loss")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(0 fail, 0 raise): PASS" in done.stdout, done.stdout[-3000:]
    done = _cli(venv, work, "validate", "numpy_pcl.py:unmasked", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert json.loads(done.stdout)["passed"] is False


def test_bench_quick_without_scipy(venv, work):
    assert not _probe(venv, work)["scipy"]
    report = work / "bench.json"
    done = _cli(venv, work, "bench", "--quick", "--json", report, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped: section 3, SciPy is not installed" in done.stdout
    data = json.loads(report.read_text())
    assert {r["section"] for r in data["ratios"]} == {"loss"}
    assert data["memory"] and all(m["peak_bytes"] is not None for m in data["memory"])


def test_torch_integration_imports_from_the_wheel(venv, work):
    """The wheel's probcon_ref.torch (and .distributed) with the PyTorch running these tests.

    That PyTorch's folder is appended to the venv's path by a ``.pth`` file, after the
    venv's own packages, so the wheel's probcon_ref still comes first (checked); no second
    PyTorch of hundreds of MB is installed for this.
    """
    try:
        import torch
    except ImportError:
        pytest.skip("PyTorch is not installed where the tests run, so the venv cannot borrow it")
    info = _probe(venv, work)
    outer = Path(torch.__file__).resolve().parents[1]
    (Path(info["purelib"]) / "zz_outer_torch.pth").write_text(f"{outer}\n")
    try:
        code = ("import json, torch, probcon_ref, probcon_ref.torch.distributed as d; "
                "print(json.dumps([probcon_ref.__file__, d.__file__, torch.__file__]))")
        done = _run([venv / "bin" / "python", "-c", code], cwd=work)
        assert done.returncode == 0, done.stderr
        package, distributed, torch_file = map(Path, json.loads(done.stdout))
        assert package.resolve().is_relative_to(venv.resolve()), done.stdout
        assert distributed.resolve().is_relative_to(venv.resolve()), done.stdout
        assert distributed.parts[-3:] == ("probcon_ref", "torch", "distributed.py")
        assert Path(torch_file).resolve().is_relative_to(outer)
        done = _cli(venv, work, "check")
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"^pcl\s+torch\s+cpu\s", done.stdout, re.M), done.stdout
        assert done.stdout.rstrip().endswith("OK"), done.stdout
    finally:
        (Path(info["purelib"]) / "zz_outer_torch.pth").unlink()
