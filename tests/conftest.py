"""Shared fixtures: the declared backends, and the rule that a required backend never skips.

The backends, their devices, dtypes and tolerances come from the package's one declaration,
``probcon_ref/tools/backends.toml``, as :mod:`probcon_ref.tools.backends` reads it.
A test that takes the ``target`` fixture runs once per declared backend x device x dtype
(``half_target``: once per half precision); a backend that is not installed, or a device
that is absent, is a skip with the reason.

``PROBCON_REQUIRE_BACKENDS`` (comma-separated target names from ``backends.toml``:
``numpy``, ``array_api_strict``, ``torch-cpu``, ``torch-cuda``, ``cupy``, ``jax-cpu``) turns the skip of
the named targets into a failure, so that CI can never lose one silently. An unknown name
is a usage error.

The same variable also catches ``pytest.importorskip`` elsewhere in the suite: a test or a
module skipped because ``torch``, ``array_api_strict``, ``cupy``, ``jax`` or ``numpy`` could not
be imported fails when the matching name is required.

``PROBCON_REQUIRE_TOOLS`` (comma-separated) does the same for tools outside Python that a
few tests need and skip without: ``c++`` and ``nvrtc`` (tests/test_fused.py), ``chromium``
(headless Chromium and its driver, for the browser test of the docs, tests/test_docs.py) and
``venv`` (``python -m venv`` with pip and a reachable package index, for the fresh
environment of tests/test_wheel.py).
:func:`skip_or_fail_tool` is the rule.

``PROBCON_CASE_LOG=path`` writes every error measured through the ``within`` fixture, with
its tolerance, to a JSON file at the end of the session (``backends/gpu-check`` reads it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from probcon_ref.tools import backends as _backends

ROOT = Path(__file__).resolve().parents[1]
DECLARED = _backends.DECLARED
REQUIRE_VAR = "PROBCON_REQUIRE_BACKENDS"

_CASE_LOG: list[dict] = []


@dataclass(frozen=True)
class Case:
    """One declared (backend, device, dtype), with its tolerances."""

    backend: str
    device: str
    dtype: str
    name: str
    gpu: bool
    half: bool
    tolerances: dict

    @property
    def id(self) -> str:
        return f"{self.name}-{self.dtype}"


def declared_cases(*, half: bool = False) -> list[Case]:
    """Every declared backend x device x dtype (half precisions when ``half``)."""
    out = []
    for backend, spec in DECLARED.items():
        dtypes = spec["half_dtypes"] if half else spec["dtypes"]
        for device, dspec in spec["devices"].items():
            for dt in dtypes:
                out.append(Case(backend, device, dt, dspec["name"], dspec["gpu"], half,
                                spec["tolerances"][dt]))
    return out


def target_names() -> dict[str, tuple[str, str]]:
    """Declared target name -> (backend, device)."""
    return {d["name"]: (b, dev) for b, spec in DECLARED.items() for dev, d in spec["devices"].items()}


def required_names() -> frozenset[str]:
    """The names in ``PROBCON_REQUIRE_BACKENDS``; ``pytest.UsageError`` for an unknown one."""
    raw = os.environ.get(REQUIRE_VAR, "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(target_names()))
    if unknown:
        raise pytest.UsageError(
            f"{REQUIRE_VAR} names unknown backend(s) {', '.join(unknown)}; "
            f"known: {', '.join(target_names())}"
        )
    return names


def skip_or_fail(name: str, reason: str):
    """Skip with ``reason``, or fail when ``PROBCON_REQUIRE_BACKENDS`` names ``name``."""
    if name in required_names():
        pytest.fail(f"{name} is required ({REQUIRE_VAR}) but cannot run here: {reason}", pytrace=False)
    pytest.skip(f"{name}: {reason}")


TOOLS_VAR = "PROBCON_REQUIRE_TOOLS"


def required_tools() -> frozenset[str]:
    """The names in ``PROBCON_REQUIRE_TOOLS``."""
    return frozenset(t.strip() for t in os.environ.get(TOOLS_VAR, "").split(",") if t.strip())


def skip_or_fail_tool(name: str, reason: str):
    """Skip with ``reason``, or fail when ``PROBCON_REQUIRE_TOOLS`` names the tool ``name``."""
    if name in required_tools():
        pytest.fail(f"{name} is required ({TOOLS_VAR}) but {reason}", pytrace=False)
    pytest.skip(reason)


def require(name: str):
    """The module of target ``name`` once its device answers; else :func:`skip_or_fail`."""
    backend, device = target_names()[name]
    reason = _backends.availability(backend, device)
    if reason is not None:
        skip_or_fail(name, reason)
    return _backends.ADAPTERS[backend].module()


class Live:
    """A declared case that can run here: its module, and explicit conversions to and from NumPy."""

    def __init__(self, case: Case):
        self.case = case
        self.module = require(case.name)
        self._target = _backends.make_target(case.backend, case.device, case.dtype)

    def __getattr__(self, name):  # backend, device, dtype, name, tolerances, ... of the case
        if name == "case":
            raise AttributeError(name)
        return getattr(self.case, name)

    def asarray(self, a):
        """NumPy data converted explicitly to this backend, device and dtype."""
        return self._target.from_numpy(a)

    def to_numpy(self, a):
        """A result copied back to the host, as NumPy (bfloat16 widened to float32)."""
        return self._target.to_numpy(a)

    def synchronize(self) -> None:
        self._target.synchronize()


def case_params(cases):
    """``pytest.param`` per case, marked ``gpu`` where the device is a GPU."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.gpu] if c.gpu else []) for c in cases]


def _parametrized_by_test(metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if name in names:
            return True
    return False


def pytest_configure(config):
    required_names()  # an unknown name stops the run before any test


def pytest_generate_tests(metafunc):
    # A test may choose its own cases with @pytest.mark.parametrize(..., indirect=True).
    if "target" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "target"):
        metafunc.parametrize("target", case_params(declared_cases()), indirect=True)
    if "half_target" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "half_target"):
        metafunc.parametrize("half_target", case_params(declared_cases(half=True)), indirect=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """PyTorch's intra-op threads only slow tiny batches down on a small shared machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def torch(one_torch_thread):
    """PyTorch, one thread; a skip (a failure where required) without it."""
    return require("torch-cpu")


@pytest.fixture
def T():
    """``probcon_ref.torch``; a skip (a failure where required) without PyTorch."""
    require("torch-cpu")
    import probcon_ref.torch as T

    return T


@pytest.fixture
def target(request) -> Live:
    """One declared backend x device x compute dtype, available here (else skip or fail)."""
    return Live(request.param)


@pytest.fixture
def half_target(request) -> Live:
    """One declared backend x device x half dtype, available here (else skip or fail)."""
    return Live(request.param)


@pytest.fixture
def within(request):
    """``within(quantity, error, tolerance)``: record the measured error and assert it."""

    def check(quantity: str, error: float, tolerance: float) -> None:
        _CASE_LOG.append({"test": request.node.nodeid, "quantity": quantity,
                          "error": float(error), "tolerance": float(tolerance)})
        assert error <= tolerance, f"{quantity}: error {error:.3e} exceeds tolerance {tolerance:.1e}"

    return check


# ---------------------------------------------------------------------------------------
# importorskip in other test files: a required backend must not vanish that way either
# ---------------------------------------------------------------------------------------

_IMPORT_SKIP = re.compile(r"could not import '([^']+)'")
IMPORT_NAMES = {"numpy": "numpy", "array_api_strict": "array_api_strict", "torch": "torch-cpu", "cupy": "cupy",
                "jax": "jax-cpu"}


def required_import_skip(report) -> str | None:
    """The required target a skip report hides (an ``importorskip`` of its module), if any."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    m = _IMPORT_SKIP.search(str(report.longrepr[2]))
    name = IMPORT_NAMES.get(m.group(1).split(".")[0]) if m else None
    return name if name in required_names() else None


def _fail_required_skip(report) -> None:
    name = required_import_skip(report)
    if name is not None:
        reason = report.longrepr[2]
        report.outcome = "failed"
        report.longrepr = f"{name} is required ({REQUIRE_VAR}) but was skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_required_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_required_skip(outcome.get_result())


# ---------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter):
    """The worst errors the accuracy tests measured (tests/accuracy_report.py), when any ran."""
    try:
        import accuracy_report
    except ImportError:
        return
    lines = accuracy_report.summary()
    if lines:
        terminalreporter.section("measured accuracy: worst error and its bound")
        for line in lines:
            terminalreporter.write_line(line)
        accuracy_report.write(str(ROOT / "artifacts" / "accuracy.json"))


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("PROBCON_CASE_LOG")
    if path:
        Path(path).write_text(json.dumps(_CASE_LOG, indent=1), encoding="utf-8")


# ---------------------------------------------------------------------------------------
# The documentation site, built once per session
# ---------------------------------------------------------------------------------------


REPO_ROOT = Path(__file__).resolve().parents[1]


def load_docs_build_module():
    """``docs/build.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("docs_build", REPO_ROOT / "docs" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """Build the site once per session, the way CI and ``docs/build.py`` do.

    Returns (the finished process, the html folder). Every test of the documentation shares
    it, so the site is built once per run.
    """
    for module in ("sphinx", "myst_parser", "numpydoc", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs")
    cmd = load_docs_build_module().sphinx_command(out / "html", out / "doctrees")
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    return proc, out / "html"
