"""The benchmark's measurements: how one case is timed and how much memory it adds.

A case is a zero-argument callable made by :func:`make_case` from a name in :data:`CASES`
(the reference on NumPy or PyTorch, the PyTorch integration, and the autograd baselines of
:mod:`probcon_ref.tools.baselines`), with its inputs built once, outside it.
:func:`interleaved_medians` times several cases in turn; :func:`peak_extra_memory` runs one
in a child process and reads the resident-size peak (:func:`child_measurement` runs any
probe function so, and :func:`extra_peak_of_call` is the reading itself). ``probcon-ref bench``
(:mod:`probcon_ref.tools.bench`) and its GPU and training sections
(:mod:`probcon_ref.tools.bench_device`, :mod:`probcon_ref.tools.bench_training`) arrange these
into their tables.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from .. import ntxent_loss_and_grad, pcl_loss_and_grad

# ---------------------------------------------------------------------------------------
# Timing and memory primitives
# ---------------------------------------------------------------------------------------


def interleaved_medians(fns: dict, repeats: int = 5, budget_s: float = 40.0) -> dict:
    """Median wall time of each callable, the callables run in turn within every repeat.

    Interleaving exposes every case to the same machine state (frequency, other load), so
    the ratios between them are steadier than from timing each case in its own stretch.
    """
    t0 = time.perf_counter()
    for fn in fns.values():
        fn()  # warm-up
    first = time.perf_counter() - t0
    repeats = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t1 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t1)
    return {name: statistics.median(v) for name, v in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset this process's resident-size high-water mark (Linux ``clear_refs`` code 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then VmHWM is the lifetime peak, which the warm-up in _memory_probe bounds


def peak_extra_memory(case: str, n2: int, d: int, dtype: str, block_size: int | None = None) -> float | None:
    """Peak resident memory (bytes) a case adds beyond its inputs, measured in a child process."""
    return child_measurement("probcon_ref.tools.measure", "_memory_probe", case, n2, d, dtype, block_size,
                             what=f"memory probe {case}")


def child_measurement(module: str, function: str, *args, what: str = "memory probe") -> float | None:
    """``module.function(*args)`` run in a fresh child process: the number it returns.

    ``None`` where the system has no ``/proc/self/status`` (the probes read it). The
    arguments must be literals (their ``repr`` is the child's source).
    """
    if not os.path.exists("/proc/self/status"):
        return None
    call = f"{function}({', '.join(repr(a) for a in args)})"
    code = f"import json; from {module} import {function}; print(json.dumps({call}))"
    # A fixed mmap threshold makes glibc return every large block to the system when it is
    # freed, so the resident-size peak counts live arrays rather than allocator fragmentation.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def extra_peak_of_call(fn) -> float:
    """Bytes of resident memory one call of ``fn`` adds at its peak, beyond what is resident
    before it (run in a child process, after any warm-up: the peak only grows)."""
    _reset_peak_rss()
    base = _status_kib("VmRSS")
    fn()
    # VmHWM belongs to this process image (unlike ru_maxrss, which keeps the peak of the
    # parent that forked it across exec).
    return max(0.0, float(_status_kib("VmHWM") - base) * 1024)


def _memory_probe(case: str, n2: int, d: int, dtype: str, block_size) -> float:
    # Warm up on a tiny batch (imports, thread pools), so that the lifetime peak of this
    # process is set by the one measured call below and not by the first-call overheads.
    make_case(case, 8, d, dtype, block_size)()
    return extra_peak_of_call(make_case(case, n2, d, dtype, block_size))


# ---------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------


def inputs(n2: int, d: int, dtype: str, seed: int = 0):
    """``z1, z2, kappa1, kappa2`` for a batch of 2N rows in dimension d: agreeing views, kappa in [1, 30]."""
    rng = np.random.default_rng(seed)
    n = n2 // 2
    z1 = rng.normal(size=(n, d))
    z2 = z1 + 0.7 * rng.normal(size=(n, d))
    k1, k2 = rng.uniform(1.0, 30.0, size=(2, n))
    return [a.astype(dtype) for a in (z1, z2, k1, k2)]


CASES = ("numpy-pcl", "numpy-ntxent", "torch-pcl", "torch-ntxent",
         "integration-pcl", "integration-ntxent", "autograd-ntxent", "naive-pcl")


def make_case(case: str, n2: int, d: int, dtype: str, block_size=None):
    """A zero-argument callable running one case; inputs are created once, outside it."""
    if case not in CASES:  # before any import: an unknown name is a usage error, not a missing PyTorch
        raise ValueError(f"unknown benchmark case {case!r} (known: {', '.join(CASES)})")
    z1, z2, k1, k2 = inputs(n2, d, dtype)
    if case == "numpy-pcl":
        return lambda: pcl_loss_and_grad(z1, z2, k1, k2, block_size=block_size)
    if case == "numpy-ntxent":
        return lambda: ntxent_loss_and_grad(z1, z2, temperature=0.5, block_size=block_size)
    import torch

    t = [torch.as_tensor(a) for a in (z1, z2, k1, k2)]
    if case == "torch-pcl":
        return lambda: pcl_loss_and_grad(*t, block_size=block_size)
    if case == "torch-ntxent":
        return lambda: ntxent_loss_and_grad(t[0], t[1], temperature=0.5, block_size=block_size)
    return _make_autograd_case(case, t)


def _make_autograd_case(case: str, t):
    import torch

    from . import baselines

    leaves = [a.clone().requires_grad_(True) for a in t]

    def backward(loss):
        for leaf in leaves:
            leaf.grad = None
        loss.backward()
        return loss

    if case == "integration-pcl":
        from .. import torch as pr_torch

        return lambda: backward(pr_torch.pcl_loss(*leaves))
    if case == "integration-ntxent":
        from .. import torch as pr_torch

        return lambda: backward(pr_torch.ntxent_loss(leaves[0], leaves[1], temperature=0.5))
    if case == "autograd-ntxent":
        return lambda: backward(baselines.autograd_ntxent(leaves[0], leaves[1], 0.5))
    if case == "naive-pcl":
        return lambda: backward(baselines.naive_pcl(*leaves))
    raise ValueError(f"unknown benchmark case {case!r}")
