"""``probcon-ref bench``: time and memory of the reference against what users would pick instead.

Everything is measured in one process and one run (memory in short child processes, one per
case, since a process's peak resident size only grows), as medians over repeats after a
warm-up, and printed as ratios side by side:

1. PCL loss+gradient against NT-Xent loss+gradient in the same backend (the price of the
   confidence), for every backend, device and dtype present;
2. the PyTorch integration (forward+backward) against autograd NT-Xent as the common
   libraries write it, and against a naive autograd PCL whose normaliser comes from SciPy's
   ``ive`` on the host: time, peak memory, and whether float32 stays finite (needs PyTorch);
3. ``special.log_iv`` plus ``special.bessel_ratio`` against two ``scipy.special.ive`` calls
   (needs SciPy);
4. peak extra memory of the blocked loss+gradient against 2N;
5. where PyTorch-CUDA or CuPy has a GPU, the PCL on the device against PyTorch-CUDA
   autograd NT-Xent and against the floor set by the matrix products and the bytes moved
   (:mod:`probcon_ref.tools.bench_device`);
6. the JAX integration, jit-compiled value and gradient, against optax's NT-Xent and an
   autodiff NT-Xent in ``jax.numpy``; the special functions jit-compiled against the same
   code eager; and the time each jit compilation takes (needs JAX; the optax rows need
   optax; ``probcon_ref.tools.bench_jax``);
7. PyTorch training steps (an encoder and the loss, forward and backward), eager and under
   ``torch.compile(fullgraph=True)``, with ``PCLLoss`` against autograd NT-Xent, with their
   compile times and graph breaks; and the loss modules with a full memory bank against
   autograd NT-Xent with the same queue (needs PyTorch; ``probcon_ref.tools.bench_training``).

NumPy alone runs sections 1 and 4. The rows that compare with PyTorch, SciPy, JAX or optax
are left out, each with its reason printed and kept in the report's ``skipped`` list, when
that library is not installed.

How one case is timed and how its memory is measured is ``probcon_ref.tools.measure``;
this module arranges the cases into the sections above and reports them.

Timings on shared machines are noisy: compare ratios within one run, not across runs.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np

from .measure import inputs, interleaved_medians, make_case, peak_extra_memory

# ---------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------


@dataclass
class Ratio:
    section: str
    backend: str
    dtype: str
    n2: int
    d: int
    ours: str
    ours_ms: float
    other: str
    other_ms: float

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.other_ms


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _scipy_available() -> bool:
    """SciPy is optional: it only provides the baselines of the SciPy rows."""
    try:
        import scipy.special  # noqa: F401
    except ImportError:
        return False
    return True


NO_SCIPY = "SciPy is not installed (pip install scipy)"


def loss_section(sizes, dims, dtypes, repeats) -> list[Ratio]:
    """PCL against NT-Xent, loss+gradient, same backend."""
    backends = ["numpy"] + (["torch"] if _torch_available() else [])
    rows = []
    for backend in backends:
        for dtype in dtypes:
            for n2 in sizes:
                for d in dims:
                    t = interleaved_medians({c: make_case(f"{backend}-{c}", n2, d, dtype)
                                             for c in ("pcl", "ntxent")}, repeats)
                    pcl, ntx = t["pcl"], t["ntxent"]
                    rows.append(Ratio("loss", f"{backend}-cpu", dtype, n2, d, "pcl", pcl * 1e3, "ntxent", ntx * 1e3))
                    _progress(rows[-1])
    return rows


def integration_section(n2, d, repeats, memory: bool) -> tuple[list[Ratio], list[dict]]:
    """The PyTorch integration against autograd NT-Xent and the naive SciPy PCL."""
    if not _torch_available():
        return [], []
    try:
        from .. import torch as _  # noqa: F401
    except ImportError:
        return [], []
    rows, mem = [], []
    cases = ("integration-pcl", "integration-ntxent", "autograd-ntxent") + (("naive-pcl",) if _scipy_available() else ())
    for dtype in ("float32", "float64"):
        times = interleaved_medians({c: make_case(c, n2, d, dtype) for c in cases}, repeats)
        for other in ("autograd-ntxent", "naive-pcl")[:len(cases) - 2]:
            rows.append(Ratio("integration", "torch-cpu", dtype, n2, d, "integration-pcl",
                              times["integration-pcl"] * 1e3, other, times[other] * 1e3))
            _progress(rows[-1])
        rows.append(Ratio("integration", "torch-cpu", dtype, n2, d, "integration-ntxent",
                          times["integration-ntxent"] * 1e3, "autograd-ntxent", times["autograd-ntxent"] * 1e3))
        _progress(rows[-1])
        if memory:
            entry = {"dtype": dtype, "n2": n2, "d": d}
            for c in times:
                entry[c] = peak_extra_memory(c, n2, d, dtype)
            mem.append(entry)
            print(f"  peak extra memory {dtype}: " + ", ".join(
                f"{c} {v / 2**20:.1f} MiB" for c, v in entry.items() if c.startswith(("integ", "auto", "naive"))))
    return rows, mem


def float32_finiteness(n2: int = 512, d: int = 512) -> dict:
    """Do the integration and the naive SciPy PCL stay finite in float32 at large order?

    With d = 512 the order is 255; ``ive(255, kappa)`` underflows to 0 for small kappa
    (the contract, section :ref:`5 <contract-special>`), so the naive normaliser becomes ``-log 0 = inf``. Without SciPy the
    naive entries are ``None``.
    """
    import torch

    from . import baselines
    from .. import torch as pr_torch

    z1, z2, k1, k2 = (torch.as_tensor(a) for a in inputs(n2, d, "float32"))
    k1 = torch.full_like(k1, 5.0)
    k2 = torch.full_like(k2, 5.0)
    ours = float(pr_torch.pcl_loss(z1, z2, k1, k2))
    naive = float(baselines.naive_pcl(z1, z2, k1, k2)) if _scipy_available() else None
    return {"d": d, "kappa": 5.0, "integration_loss": ours, "naive_loss": naive,
            "integration_finite": bool(np.isfinite(ours)),
            "naive_finite": None if naive is None else bool(np.isfinite(naive))}


def special_section(order: float = 63.0, size: int = 4_000_000, repeats: int = 5) -> Ratio | None:
    """``log_iv`` + ``bessel_ratio`` against ``log(ive(nu, x)) + x`` and ``ive(nu+1, x)/ive(nu, x)``.

    ``None`` when SciPy is not installed.
    """
    if not _scipy_available():
        return None
    from scipy.special import ive

    from ..special import bessel_ratio, log_iv

    x = np.random.default_rng(0).uniform(0.0, 500.0, size=size)

    def scipy_pair():
        with np.errstate(divide="ignore", invalid="ignore"):
            i_nu = ive(order, x)
            return np.log(i_nu) + x, ive(order + 1, x) / i_nu

    t = interleaved_medians({"ours": lambda: (log_iv(order, x), bessel_ratio(order, x)), "scipy": scipy_pair},
                            repeats)
    ours, theirs = t["ours"], t["scipy"]
    row = Ratio("special", "numpy-cpu", "float64", size, int(order), "log_iv+bessel_ratio", ours * 1e3,
                "scipy ive x2", theirs * 1e3)
    _progress(row)
    return row


def memory_section(sizes, d: int = 128, dtype: str = "float32", block_size: int = 1024) -> list[dict]:
    """Peak extra memory of the blocked loss+gradient (NumPy) against 2N."""
    out = []
    for n2 in sizes:
        t0 = time.perf_counter()
        peak = peak_extra_memory("numpy-pcl", n2, d, dtype, block_size)
        entry = {"n2": n2, "d": d, "dtype": dtype, "block_size": block_size, "peak_bytes": peak,
                 "full_matrix_bytes": n2 * n2 * np.dtype(dtype).itemsize,
                 "seconds": time.perf_counter() - t0}
        out.append(entry)
        print(f"  2N = {n2:6d}: peak extra {peak / 2**20:9.1f} MiB "
              f"(one full (2N x 2N) matrix would be {entry['full_matrix_bytes'] / 2**20:9.1f} MiB)", flush=True)
    return out


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def _progress(r: Ratio) -> None:
    print(f"  {r.section:<11} {r.backend:<10} {r.dtype:<8} 2N={r.n2:<6} d={r.d:<4} "
          f"{r.ours} {r.ours_ms:9.2f} ms | {r.other} {r.other_ms:9.2f} ms | ratio {r.ratio:5.2f}", flush=True)


def machine_description() -> dict:
    info = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "processor": platform.processor() or "unknown", "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    if _torch_available():
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    try:
        import jax
    except ImportError:
        return info
    info["jax"] = jax.__version__
    return info


def to_markdown(report: dict) -> str:
    m = report.get("machine", {})
    lines = [f"Measured by `probcon-ref bench` on {m.get('cpus', '?')} CPU cores ({m.get('cpu_model', m.get('machine', '?'))}), "
             f"Python {m.get('python', '?')}, NumPy {m.get('numpy', '?')}, PyTorch {m.get('torch', 'absent')} "
             f"with {m.get('torch_threads', '?')} threads. Times are medians; ratio = ours / baseline.", "",
             "| section | backend | dtype | 2N | d | ours | ms | baseline | ms | ratio |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | --- | ---: | ---: |"]
    for r in report["ratios"]:
        lines.append(f"| {r['section']} | {r['backend']} | {r['dtype']} | {r['n2']} | {r['d']} | {r['ours']} | "
                     f"{r['ours_ms']:.2f} | {r['other']} | {r['other_ms']:.2f} | {r['ours_ms'] / r['other_ms']:.2f} |")
    if report.get("integration_memory"):
        lines += ["", "| dtype | 2N | d | case | peak extra memory (MiB) |", "| --- | ---: | ---: | --- | ---: |"]
        for e in report["integration_memory"]:
            for c in ("integration-pcl", "integration-ntxent", "autograd-ntxent", "naive-pcl"):
                if c not in e:
                    continue
                lines.append(f"| {e['dtype']} | {e['n2']} | {e['d']} | {c} | {e[c] / 2**20:.1f} |")
    if report.get("float32_finiteness"):
        f = report["float32_finiteness"]
        naive = "not run (no SciPy)" if f["naive_loss"] is None else f"{f['naive_loss']:.6g}"
        lines += ["", f"float32, d = {f['d']}, kappa = {f['kappa']}: integration loss {f['integration_loss']:.6g}, "
                      f"naive SciPy-ive loss {naive}"]
    if report.get("memory"):
        lines += ["", "| 2N | d | dtype | block | peak extra (MiB) | one (2N x 2N) matrix (MiB) |",
                  "| ---: | ---: | --- | ---: | ---: | ---: |"]
        for e in report["memory"]:
            lines.append(f"| {e['n2']} | {e['d']} | {e['dtype']} | {e['block_size']} | {e['peak_bytes'] / 2**20:.1f} | "
                         f"{e['full_matrix_bytes'] / 2**20:.1f} |")
    for s in report.get("skipped", []):
        lines += ["", f"Not measured: {s}."]
    if report.get("device"):
        from . import bench_device

        lines += ["", bench_device.to_markdown(report["device"]).rstrip("\n")]
    if report.get("jax"):
        from . import bench_jax

        lines += ["", f"JAX {m.get('jax', '?')}: time to trace and compile each jit-compiled function.", "",
                  bench_jax.to_markdown(report["jax"]).rstrip("\n")]
    if report.get("training"):
        from . import bench_training

        lines += ["", bench_training.to_markdown(report["training"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    parser.add_argument("--sizes", default="512,2048,8192", help="comma-separated 2N values")
    parser.add_argument("--dims", default="128,512", help="comma-separated d values")
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated dtypes")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case (median)")
    parser.add_argument("--memory-sizes", default="4096,16384,65536",
                        help="2N values for the memory-against-2N section (empty to skip)")
    parser.add_argument("--no-memory", action="store_true", help="skip every memory measurement")
    parser.add_argument("--device-batch", default="16384,256",
                        help="2N,d of the GPU section (run when a CUDA device answers)")
    parser.add_argument("--jax-batch", default="2048,128", help="2N,d of the JAX section (run when JAX is installed)")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX section")
    parser.add_argument("--training-batch", default="1024,128", help="2N,d of the training steps (section 7)")
    parser.add_argument("--bank-batch", default="512,128", help="2N,d of the memory-bank rows (section 7)")
    parser.add_argument("--bank-sizes", default="4096,16384,65536",
                        help="comma-separated memory-bank sizes M (section 7; empty to skip those rows)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of section 7")
    parser.add_argument("--no-training", action="store_true", help="skip the training section (7)")
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")


def _jax_section(args, report: dict, skip, special_size: int) -> list[Ratio]:
    """Section 6, when JAX is installed and not turned off: its rows; the rest goes into ``report``."""
    from . import bench_jax

    print("6. JAX: jit-compiled value and gradient against optax and autodiff; special functions jit against eager")
    reason = "turned off (--no-jax)" if args.no_jax else bench_jax.unavailable()
    if reason:
        skip(f"section 6, {reason}")
        return []
    n2, d = (256, 32) if args.quick else _ints(args.jax_batch)
    result = bench_jax.jax_section(n2, d, args.repeats, special_size)
    for what in result["skipped"]:
        skip(what)
    rows = [Ratio(**r) for r in result["rows"]]
    for r in rows:
        _progress(r)
    bench_jax.print_section(result)
    report["jax"] = {"compile_s": result["compile_s"]}
    return rows


def _training_section(args, report: dict, skip) -> list[Ratio]:
    """Section 7, when PyTorch is installed and it is not turned off: its rows; the rest goes into ``report``."""
    from . import bench_training

    print("7. PyTorch training steps, eager and compiled; the loss with a memory bank against autograd with a queue")
    reason = "turned off (--no-training)" if args.no_training else bench_training.unavailable()
    if reason:
        skip(f"section 7, {reason}")
        return []
    if args.quick:
        steps, bank, sizes = (64, 16), (64, 16), [256]
    else:
        steps, bank, sizes = _ints(args.training_batch), _ints(args.bank_batch), _ints(args.bank_sizes)
    result = bench_training.training_section(steps, bank, sizes, args.repeats, memory=not args.no_memory,
                                             backend=args.compile_backend)
    rows = [Ratio(**r) for r in result.pop("rows")]
    for r in rows:
        _progress(r)
    bench_training.print_section(result)
    report["training"] = result
    return rows


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run(args) -> int:
    if args.quick:
        sizes, dims, mem_sizes, special_size = [256], [32], [2048], 200_000
    else:
        sizes, dims, mem_sizes, special_size = _ints(args.sizes), _ints(args.dims), _ints(args.memory_sizes), 4_000_000
    dtypes = [v for v in args.dtypes.split(",") if v]
    report = {"machine": machine_description()}
    skipped = report["skipped"] = []

    def skip(what: str) -> None:
        skipped.append(what)
        print(f"  skipped: {what}", flush=True)

    print("machine:", json.dumps(report["machine"]))
    print("1. PCL against NT-Xent, loss + analytic gradient, same backend")
    ratios = loss_section(sizes, dims, dtypes, args.repeats)
    if not _torch_available():
        skip("the PyTorch rows of section 1, PyTorch is not installed")
    print("2. PyTorch integration (forward + backward) against autograd baselines")
    n2_int, d_int = (256, 32) if args.quick else (2048, 128)
    integ, integ_mem = integration_section(n2_int, d_int, args.repeats, memory=not args.no_memory)
    ratios += integ
    report["integration_memory"] = integ_mem
    if integ:
        if not _scipy_available():
            skip(f"the naive SciPy PCL of section 2, {NO_SCIPY}")
        report["float32_finiteness"] = float32_finiteness()
        print("  float32 at large order:", json.dumps(report["float32_finiteness"]))
    else:
        skip("section 2, PyTorch (and probcon_ref.torch) cannot be imported")
    print("3. special functions against scipy.special.ive (order 63, float64)")
    special = special_section(size=special_size, repeats=args.repeats)
    if special is None:
        skip(f"section 3, {NO_SCIPY}")
    else:
        ratios.append(special)
    if not args.no_memory and mem_sizes:
        print("4. peak extra memory of the blocked loss + gradient against 2N (NumPy, float32)")
        report["memory"] = memory_section(mem_sizes)
    from . import bench_device

    n2_dev, d_dev = _ints(args.device_batch)
    device = bench_device.device_section(n2_dev, d_dev, "float32", max(args.repeats, 10))
    if device is None:
        print("5. GPU: skipped, no CUDA device answers (PyTorch-CUDA or CuPy)")
    else:
        print("5. GPU: PCL against PyTorch-CUDA autograd NT-Xent and against the floor")
        bench_device.print_section(device)
        report["device"] = device
    ratios += _jax_section(args, report, skip, special_size)
    ratios += _training_section(args, report, skip)
    report["ratios"] = [dict(asdict(r), ratio=r.ratio) for r in ratios]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(to_markdown(report))
    return 0
