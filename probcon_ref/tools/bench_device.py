"""The GPU part of ``probcon-ref bench``: the PCL on a device against PyTorch-CUDA autograd
NT-Xent (what users run today), and against the floor of the work it has to do.

For one batch (by default 2N = 16384, d = 256, float32) it times, interleaved in one run,
each case ending with a device synchronisation:

* PyTorch-CUDA: autograd NT-Xent forward+backward (the baseline,
  :func:`probcon_ref.tools.baselines.autograd_ntxent`), the PyTorch integration's PCL
  forward+backward, and ``pcl_loss_and_grad`` / ``ntxent_loss_and_grad`` on tensors;
* CuPy: ``pcl_loss_and_grad`` with the fused kernels (the default) and with the array-API
  reference (:func:`probcon_ref.use_fused_kernels` ``(False)``), and ``ntxent_loss_and_grad``;
* the floor, per library: the three (2N x 2N x d) matrix products that the loss and its
  gradient cannot avoid (the logits, ``e mu`` and ``e^T mu``; autograd NT-Xent does the same
  three), plus two reads and one write of the (2N x 2N) matrix (a row maximum, then the
  exponential in place), timed as one and a half device copies of that matrix.

It reports each time, each PCL case over the baseline (the target is at most 1.5) and over
its library's floor, and PyTorch's peak device memory per case. With ``device="cpu"`` the
same code runs on PyTorch's CPU, to try it without a GPU.

:func:`size_sweep` times ``pcl_loss_and_grad`` against ``ntxent_loss_and_grad`` (and, on
PyTorch, the integration's forward+backward) on given targets at a few batch sizes: the
timings of ``backends/gpu-check``.
"""

from __future__ import annotations

from . import backends as _backends, baselines
from .measure import inputs, interleaved_medians

BASELINE = "torch autograd NT-Xent fwd+bwd"
TARGET_RATIO = 1.5


def _synced(fn, sync):
    def run():
        out = fn()
        sync()
        return out
    return run


def _fwd_bwd(leaves, loss_fn):
    """A callable: clear the leaves' gradients, then run the loss forward and backward."""
    def run():
        for leaf in leaves:
            leaf.grad = None
        loss_fn().backward()
    return run


def torch_cases(torch, device: str, data, dtype: str) -> dict:
    """The PyTorch cases and the floor, as synchronised zero-argument callables."""
    import probcon_ref as pr
    from .. import torch as pr_torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    dt = getattr(torch, dtype)
    t = [torch.as_tensor(a, dtype=dt, device=device) for a in data]
    leaves = [a.clone().requires_grad_(True) for a in t]
    cases = {
        BASELINE: _fwd_bwd(leaves, lambda: baselines.autograd_ntxent(leaves[0], leaves[1], 0.5)),
        "torch integration PCL fwd+bwd": _fwd_bwd(leaves, lambda: pr_torch.pcl_loss(*leaves)),
        "torch pcl_loss_and_grad": lambda: pr.pcl_loss_and_grad(*t),
        "torch ntxent_loss_and_grad": lambda: pr.ntxent_loss_and_grad(t[0], t[1]),
    }
    n2, d = 2 * t[0].shape[0], t[0].shape[1]
    a = torch.randn(n2, d + 1, dtype=dt, device=device)
    c = torch.randn(n2, d, dtype=dt, device=device)
    m = torch.empty(n2, n2, dtype=dt, device=device)
    m2 = torch.empty_like(m)
    cases["torch floor: 3 products"] = lambda: (torch.matmul(a, a.T, out=m), m @ c, m.T @ c)
    cases["torch floor: copy (2N x 2N)"] = lambda: m2.copy_(m)
    return {k: _synced(f, sync) for k, f in cases.items()}


def cupy_cases(cupy, data, dtype: str) -> dict:
    """The CuPy cases (fused and reference) and the floor."""
    import probcon_ref as pr

    sync = cupy.cuda.Device().synchronize
    t = [cupy.asarray(a, dtype=dtype) for a in data]

    def reference():
        with pr.use_fused_kernels(False):
            return pr.pcl_loss_and_grad(*t)

    n2, d = 2 * t[0].shape[0], t[0].shape[1]
    a = cupy.random.standard_normal((n2, d + 1), dtype=dtype)
    c = cupy.random.standard_normal((n2, d), dtype=dtype)
    m = cupy.empty((n2, n2), dtype=dtype)
    m2 = cupy.empty_like(m)
    cases = {
        "cupy pcl_loss_and_grad (fused)": lambda: pr.pcl_loss_and_grad(*t),
        "cupy pcl_loss_and_grad (reference)": reference,
        "cupy ntxent_loss_and_grad (fused)": lambda: pr.ntxent_loss_and_grad(t[0], t[1]),
        "cupy floor: 3 products": lambda: (cupy.matmul(a, a.T, out=m), m @ c, m.T @ c),
        "cupy floor: copy (2N x 2N)": lambda: cupy.copyto(m2, m),
    }
    return {k: _synced(f, sync) for k, f in cases.items()}


def torch_peak_memory(torch, cases: dict) -> dict:
    """Peak CUDA memory (bytes) each PyTorch case allocates beyond what was live before it."""
    out = {}
    for name, fn in cases.items():
        if name.startswith("torch") and "floor" not in name:
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            out[name] = torch.cuda.max_memory_allocated() - before
    return out


def device_section(n2: int = 16384, d: int = 256, dtype: str = "float32", repeats: int = 10,
                   device: str = "cuda", budget_s: float = 60.0) -> dict | None:
    """Time the cases above; ``None`` when neither PyTorch-CUDA nor CuPy has a device."""
    data = inputs(n2, d, "float64")  # the batch of the CPU sections, cast per case
    cases: dict = {}
    torch = None
    if device == "cpu" or _backends.availability("torch", "cuda") is None:
        import torch

        cases.update(torch_cases(torch, device, data, dtype))
    if device == "cuda" and _backends.cupy_device_available():
        import cupy

        cases.update(cupy_cases(cupy, data, dtype))
    if not cases:
        return None
    times = {k: v * 1e3 for k, v in interleaved_medians(cases, repeats, budget_s).items()}
    floors = {}
    for lib in ("torch", "cupy"):
        if f"{lib} floor: 3 products" in times:
            floors[lib] = times[f"{lib} floor: 3 products"] + 1.5 * times[f"{lib} floor: copy (2N x 2N)"]
    rows = []
    for name, ms in times.items():
        if "floor" in name or name == BASELINE:
            continue
        lib = name.split()[0]
        rows.append({"case": name, "ms": ms,
                     "over_baseline": ms / times[BASELINE] if BASELINE in times else None,
                     "over_floor": ms / floors[lib] if lib in floors else None})
    report = {"device": _device_name(device), "n2": n2, "d": d, "dtype": dtype, "times_ms": times,
              "floor_ms": floors, "rows": rows, "target_over_baseline": TARGET_RATIO}
    if torch is not None and device == "cuda":
        report["torch_peak_bytes"] = torch_peak_memory(torch, cases)
    return report


def _device_name(device: str) -> str:
    if device == "cpu":
        return "cpu (PyTorch, rehearsal)"
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0).get("name", b"?")
    return name.decode() if isinstance(name, bytes) else str(name)


def print_section(report: dict) -> None:
    print(f"  {report['device']}: 2N = {report['n2']}, d = {report['d']}, {report['dtype']}")
    if BASELINE in report["times_ms"]:
        print(f"  {BASELINE:<38} {report['times_ms'][BASELINE]:9.2f} ms (baseline)")
    for lib, ms in report["floor_ms"].items():
        print(f"  {lib + ' floor (3 products + 1.5 copies)':<38} {ms:9.2f} ms")
    for r in report["rows"]:
        ob = "-" if r["over_baseline"] is None else f"{r['over_baseline']:.2f}"
        of = "-" if r["over_floor"] is None else f"{r['over_floor']:.2f}"
        print(f"  {r['case']:<38} {r['ms']:9.2f} ms | / baseline {ob} | / floor {of}", flush=True)


def to_markdown(report: dict) -> str:
    lines = [f"{report['device']}, 2N = {report['n2']}, d = {report['d']}, {report['dtype']}. "
             f"Medians in ms; baseline = {BASELINE} (target: at most {report['target_over_baseline']}x); "
             "floor = the three matrix products plus 1.5 copies of the (2N x 2N) matrix, same library.", "",
             "| case | ms | / baseline | / floor |", "| --- | ---: | ---: | ---: |"]
    if BASELINE in report["times_ms"]:
        lines.append(f"| {BASELINE} | {report['times_ms'][BASELINE]:.2f} | 1.00 | - |")
    for lib, ms in report["floor_ms"].items():
        lines.append(f"| {lib} floor | {ms:.2f} | - | 1.00 |")
    for r in report["rows"]:
        ob = "-" if r["over_baseline"] is None else f"{r['over_baseline']:.2f}"
        of = "-" if r["over_floor"] is None else f"{r['over_floor']:.2f}"
        lines.append(f"| {r['case']} | {r['ms']:.2f} | {ob} | {of} |")
    peaks = report.get("torch_peak_bytes") or {}
    if peaks:
        lines += ["", "| PyTorch case | peak device memory (MiB) |", "| --- | ---: |"]
        lines += [f"| {k} | {v / 2**20:.1f} |" for k, v in peaks.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# PCL against NT-Xent as the batch grows, per target
# ---------------------------------------------------------------------------------------


def size_sweep(targets, sizes, d: int = 128, time_left=lambda: float("inf"), reserve: float = 10.0,
               repeats: int = 15, budget_s: float = 3.0) -> list[dict]:
    """One :func:`sweep_row` per target (a ``probcon_ref.tools.backends.Target``) and 2N in
    ``sizes``, printed as it comes; stops early once ``time_left()`` is under ``reserve`` seconds."""
    rows = []
    for target in targets:
        for n2 in sizes:
            if time_left() < reserve:
                return rows
            rows.append(sweep_row(target, n2, d, repeats, budget_s))
            r = rows[-1]
            print(f"  {r['backend']:<10} {r['dtype']:<8} 2N={n2:<6} pcl {r['pcl_loss_and_grad_ms']:8.2f} ms  "
                  f"ntxent {r['ntxent_loss_and_grad_ms']:8.2f} ms", flush=True)
    return rows


def sweep_row(target, n2: int, d: int, repeats: int = 15, budget_s: float = 3.0) -> dict:
    """Median ms of both losses with their gradients on ``target`` (about ``budget_s`` s each),
    and on PyTorch of the integration's forward+backward, for the CPU sections' batch."""
    import probcon_ref as pr

    z1, z2, k1, k2 = (target.from_numpy(a) for a in inputs(n2, d, "float64"))
    cases = {"pcl_loss_and_grad": lambda: pr.pcl_loss_and_grad(z1, z2, k1, k2),
             "ntxent_loss_and_grad": lambda: pr.ntxent_loss_and_grad(z1, z2)}
    if target.backend == "torch":
        from .. import torch as pr_torch

        leaves = [a.clone().requires_grad_(True) for a in (z1, z2, k1, k2)]
        cases["torch_pcl_fwd_bwd"] = _fwd_bwd(leaves, lambda: pr_torch.pcl_loss(*leaves))
        cases["torch_ntxent_fwd_bwd"] = _fwd_bwd(leaves, lambda: pr_torch.ntxent_loss(leaves[0], leaves[1]))
    synced = {k: _synced(f, target.synchronize) for k, f in cases.items()}
    times = interleaved_medians(synced, repeats, budget_s * len(synced))
    row = {"backend": target.name, "dtype": target.dtype, "2N": n2, "d": d}
    row.update({f"{k}_ms": v * 1e3 for k, v in times.items()})
    row["pcl_over_ntxent"] = row["pcl_loss_and_grad_ms"] / row["ntxent_loss_and_grad_ms"]
    return row


def sweep_markdown(rows: list[dict]) -> str:
    """The rows of :func:`size_sweep` as a Markdown table (``-``: no PyTorch integration there)."""
    def ms(v):
        return "-" if v is None else f"{v:.3f}"

    lines = ["| backend | dtype | 2N | d | pcl loss+grad | ntxent loss+grad | ratio | torch pcl fwd+bwd | "
             "torch ntxent fwd+bwd |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['dtype']} | {r['2N']} | {r['d']} | {ms(r['pcl_loss_and_grad_ms'])} | "
                     f"{ms(r['ntxent_loss_and_grad_ms'])} | {r['pcl_over_ntxent']:.2f} | "
                     f"{ms(r.get('torch_pcl_fwd_bwd_ms'))} | {ms(r.get('torch_ntxent_fwd_bwd_ms'))} |")
    return "\n".join(lines) + "\n"
