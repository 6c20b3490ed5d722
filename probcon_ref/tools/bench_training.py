"""The benchmark's training section: PyTorch training steps, eager and compiled, and the memory bank.

Two parts, everything float32 on PyTorch's CPU:

* **Training steps.** A small encoder (an MLP, ``256 -> 512 -> d + 1``, the last output
  through ``softplus`` as the concentration) and a loss, forward and backward, on a batch of
  2N rows; the optimizer's update is left out of every variant alike. The loss is
  :class:`probcon_ref.torch.PCLLoss` or autograd NT-Xent
  (:func:`probcon_ref.tools.baselines.autograd_ntxent`, which uses the directions only), each
  run eagerly and as ``torch.compile(forward_and_loss, fullgraph=True)`` with
  ``loss.backward()`` called on its output (a backward pass cannot be inside Dynamo's
  graph). Reported: the steady-state time of a step, the time of the first call of each
  compiled variant (compilation included, every compiler cache off and
  ``torch._dynamo.reset()`` before it: a cold compilation), the graphs and graph breaks
  ``torch._dynamo.explain`` finds in the step function, and the peak extra memory of one
  step, measured in a child process after its warm-up (and so after its compilation).
* **The memory bank.** The loss alone, forward and backward with respect to the batch, with
  a full queue of M past directions: :class:`~probcon_ref.torch.NTXentLoss` and
  :class:`~probcon_ref.torch.PCLLoss` with ``memory_bank_size=M`` (in training mode, so each
  call also pushes its batch into the queue, as in training) against autograd NT-Xent with
  the same queue (:func:`probcon_ref.tools.baselines.autograd_ntxent_with_queue`). The
  NT-Xent values of the module and of the baseline are the same loss and are compared.

Rows come back as dictionaries with the fields of :class:`probcon_ref.tools.bench.Ratio`;
:func:`targets` compares the ratios with the targets, and nothing is hidden when one is missed.
"""

from __future__ import annotations

import time
import warnings

from .measure import child_measurement, extra_peak_of_call, inputs, interleaved_medians

__all__ = ["unavailable", "training_section", "step_case", "bank_case", "targets", "print_section", "to_markdown"]

TEMPERATURE = 0.5
ENCODER_IN, ENCODER_HIDDEN = 256, 512
STEP_LOSSES = ("PCLLoss", "autograd NT-Xent")
BANK_CASES = ("PCLLoss", "NTXentLoss", "autograd NT-Xent + queue")
#: The targets: compiled PCL step over compiled autograd NT-Xent step; memory-bank PCL over
#: autograd NT-Xent with the same queue (time; its peak memory must not exceed the baseline's).
STEP_TARGET, BANK_TARGET = 1.1, 1.2


def unavailable() -> str | None:
    """Why the section cannot run here (PyTorch or probcon_ref.torch missing), or None."""
    try:
        from .. import torch as _  # noqa: F401
    except ImportError as exc:
        return f"PyTorch is not installed ({exc}; pip install torch)"
    return None


# ---------------------------------------------------------------------------------------
# Training steps
# ---------------------------------------------------------------------------------------


def _encoder_and_batch(n2: int, d: int, dtype: str):
    import torch

    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(ENCODER_IN, ENCODER_HIDDEN), torch.nn.ReLU(),
                                  torch.nn.Linear(ENCODER_HIDDEN, d + 1)).to(getattr(torch, dtype))
    x1 = torch.randn(n2 // 2, ENCODER_IN, dtype=encoder[0].weight.dtype)
    return encoder, (x1, x1 + 0.3 * torch.randn_like(x1))


def forward_and_loss(loss: str, encoder, d: int):
    """``f(x1, x2) -> loss``: the encoder on both views, then the loss (no backward)."""
    import torch.nn.functional as F

    from . import baselines
    from .. import torch as pr_torch

    if loss == "PCLLoss":
        criterion = pr_torch.PCLLoss()

        def pcl(x1, x2):
            h1, h2 = encoder(x1), encoder(x2)
            return criterion(h1[:, :d], h2[:, :d], F.softplus(h1[:, d]), F.softplus(h2[:, d]))

        return pcl
    if loss == "autograd NT-Xent":
        return lambda x1, x2: baselines.autograd_ntxent(encoder(x1)[:, :d], encoder(x2)[:, :d], TEMPERATURE)
    raise ValueError(f"unknown training-step loss {loss!r} (known: {', '.join(STEP_LOSSES)})")


def _stepper(fn, leaves, args):
    """One training step without the update: the gradients of ``leaves`` cleared, ``fn(*args)``
    forward, backward; it returns the loss."""
    leaves = list(leaves)

    def step():
        for p in leaves:
            p.grad = None
        loss = fn(*args)
        loss.backward()
        return loss

    return step


def step_case(loss: str, compiled: bool, n2: int, d: int, backend: str = "inductor", dtype: str = "float32"):
    """A zero-argument callable running one training step of a variant, on a batch built once."""
    import torch

    encoder, batch = _encoder_and_batch(n2, d, dtype)
    fn = forward_and_loss(loss, encoder, d)
    if compiled:
        fn = torch.compile(fn, fullgraph=True, backend=backend)
    return _stepper(fn, encoder.parameters(), batch)


def step_name(loss: str, compiled: bool) -> str:
    return f"{loss} step, {'compiled' if compiled else 'eager'}"


def _first_call_seconds(step) -> float:
    """Seconds of the first call of a compiled step (compilation included), caches off."""
    import torch

    with torch.compiler.config.patch(force_disable_caches=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*force_disable_caches")  # "dynamo_pgo force disabled by ..."
        t0 = time.perf_counter()
        step()
        return time.perf_counter() - t0


def _warm_the_compiler(backend: str) -> None:
    """Compile a throwaway function once, so that the compiler's one-time start-up (imports,
    worker pools) is charged to neither of the variants measured after it."""
    import torch

    layer = torch.nn.Linear(4, 4)
    torch.compile(lambda x: layer(x).relu().sum(), fullgraph=True, backend=backend)(torch.ones(2, 4)).backward()


def step_results(n2: int, d: int, repeats: int, backend: str, dtype: str = "float32") -> dict:
    """Every step variant: time (ms; at least 20 interleaved repeats, a step being short), first
    call (s), graphs and graph breaks (the compiled variants)."""
    import torch

    out, cases = {}, {}
    _warm_the_compiler(backend)
    for loss in STEP_LOSSES:
        encoder, batch = _encoder_and_batch(n2, d, dtype)
        fn = forward_and_loss(loss, encoder, d)
        explained = torch._dynamo.explain(fn)(*batch)  # resets Dynamo before and after
        cases[step_name(loss, False)] = _stepper(fn, encoder.parameters(), batch)
        torch._dynamo.reset()
        step = _stepper(torch.compile(fn, fullgraph=True, backend=backend), encoder.parameters(), batch)
        out[step_name(loss, True)] = {"first_call_s": _first_call_seconds(step),
                                      "graph_count": int(explained.graph_count),
                                      "graph_break_count": int(explained.graph_break_count)}
        out[step_name(loss, False)] = {"first_call_s": None, "graph_count": None, "graph_break_count": None}
        cases[step_name(loss, True)] = step
    for step in cases.values():  # a reset above dropped the earlier compiled code: compile it again
        step(), step()
    times = interleaved_medians(cases, max(repeats, 20))
    for name, seconds in times.items():
        out[name]["ms"] = seconds * 1e3
    return out


def _step_probe(loss: str, compiled: bool, n2: int, d: int, backend: str, dtype: str) -> float:
    """In a child process: the peak extra memory of one step, after two warm-up steps."""
    step = step_case(loss, compiled, n2, d, backend, dtype)
    step(), step()
    return extra_peak_of_call(step)


# ---------------------------------------------------------------------------------------
# The memory bank
# ---------------------------------------------------------------------------------------


def bank_case(case: str, n2: int, d: int, m: int, dtype: str = "float32"):
    """A zero-argument callable: the loss with a full queue of ``m`` rows, forward and backward.

    The batch and the queue come from fixed seeds, so every case sees the same ones; the
    callable returns the loss.
    """
    import torch

    from . import baselines
    from .. import torch as pr_torch

    if case not in BANK_CASES:
        raise ValueError(f"unknown memory-bank case {case!r} (known: {', '.join(BANK_CASES)})")
    leaves = [torch.as_tensor(a).requires_grad_(True) for a in inputs(n2, d, dtype)]
    queue_z, _, queue_kappa, _ = (torch.as_tensor(a) for a in inputs(2 * m, d, dtype, seed=1))
    used = leaves if case == "PCLLoss" else leaves[:2]
    if case == "PCLLoss":
        criterion = pr_torch.PCLLoss(memory_bank_size=m)
        criterion.memory_bank.push(queue_z, queue_kappa)
    elif case == "NTXentLoss":
        criterion = pr_torch.NTXentLoss(TEMPERATURE, memory_bank_size=m)
        criterion.memory_bank.push(queue_z)
    else:
        bank = pr_torch.MemoryBank(m, with_kappa=False)
        bank.push(queue_z)  # the unit rows the modules hold, to the last bit

        def criterion(z1, z2):
            return baselines.autograd_ntxent_with_queue(z1, z2, bank.directions, TEMPERATURE)

    return _stepper(criterion, used, used)


def bank_results(n2: int, d: int, m: int, repeats: int, dtype: str = "float32") -> dict:
    """One queue size: time (ms) of each case, and the NT-Xent values compared (first call,
    before the modules' queues take in the batch)."""
    cases = {c: bank_case(c, n2, d, m, dtype) for c in BANK_CASES}
    ours, theirs = (float(cases[c]().detach()) for c in ("NTXentLoss", "autograd NT-Xent + queue"))
    times = interleaved_medians(cases, repeats)
    return {"m": m, "ms": {c: t * 1e3 for c, t in times.items()},
            "ntxent_value": ours, "baseline_value": theirs, "ntxent_rel_diff": abs(ours - theirs) / abs(theirs)}


def _bank_probe(case: str, n2: int, d: int, m: int, dtype: str) -> float:
    """In a child process: the peak extra memory of one call, after a warm-up call."""
    call = bank_case(case, n2, d, m, dtype)
    call()
    return extra_peak_of_call(call)


# ---------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------


def _step_memory(steps: dict, n2: int, d: int, backend: str, dtype: str) -> None:
    for loss in STEP_LOSSES:
        for compiled in (False, True):
            steps[step_name(loss, compiled)]["peak_bytes"] = child_measurement(
                __name__, "_step_probe", loss, compiled, n2, d, backend, dtype, what=f"memory of {loss} step")


def _rows(result: dict) -> list[dict]:
    steps, (n2, d), dtype = result["steps"], result["step_batch"], result["dtype"]
    rows = [dict(section="training", backend="torch-cpu", dtype=dtype, n2=n2, d=d, ours=step_name("PCLLoss", c),
                 ours_ms=steps[step_name("PCLLoss", c)]["ms"], other=step_name("autograd NT-Xent", c),
                 other_ms=steps[step_name("autograd NT-Xent", c)]["ms"]) for c in (True, False)]
    n2, d = result["bank_batch"]
    for entry in result["bank"]:
        for ours in ("PCLLoss", "NTXentLoss"):
            rows.append(dict(section="bank", backend="torch-cpu", dtype=dtype, n2=n2, d=d,
                             ours=f"{ours}, M = {entry['m']}", ours_ms=entry["ms"][ours],
                             other=f"autograd NT-Xent + queue, M = {entry['m']}",
                             other_ms=entry["ms"]["autograd NT-Xent + queue"]))
    return rows


def training_section(step_batch, bank_batch, bank_sizes, repeats: int, memory: bool,
                     backend: str = "inductor", dtype: str = "float32") -> dict:
    """Both parts: the steps at ``step_batch = (2N, d)``, the memory bank at ``bank_batch``
    for each queue size in ``bank_sizes``; the rows, the details and the targets."""
    n2, d = step_batch
    steps = step_results(n2, d, repeats, backend, dtype)
    if memory:
        _step_memory(steps, n2, d, backend, dtype)
    bank = []
    for m in bank_sizes:
        entry = bank_results(*bank_batch, m, repeats, dtype)
        if memory:
            entry["peak_bytes"] = {c: child_measurement(__name__, "_bank_probe", c, *bank_batch, m, dtype,
                                                        what=f"memory of {c}, M = {m}") for c in BANK_CASES}
        bank.append(entry)
    result = {"step_batch": list(step_batch), "bank_batch": list(bank_batch), "dtype": dtype, "backend": backend,
              "steps": steps, "bank": bank}
    result["rows"] = _rows(result)
    result["targets"] = targets(result)
    return result


def targets(result: dict) -> list[dict]:
    """Each target with the figure measured in this run, and whether it is met."""
    steps = result["steps"]
    ratio = steps[step_name("PCLLoss", True)]["ms"] / steps[step_name("autograd NT-Xent", True)]["ms"]
    out = [{"what": "compiled PCLLoss step / compiled autograd NT-Xent step", "measured": ratio,
            "limit": STEP_TARGET, "met": ratio <= STEP_TARGET}]
    for e in result["bank"]:
        ratio = e["ms"]["PCLLoss"] / e["ms"]["autograd NT-Xent + queue"]
        out.append({"what": f"PCLLoss / autograd NT-Xent + queue, time, M = {e['m']}", "measured": ratio,
                    "limit": BANK_TARGET, "met": ratio <= BANK_TARGET})
        peaks = e.get("peak_bytes")
        if peaks and None not in peaks.values():
            ratio = peaks["PCLLoss"] / peaks["autograd NT-Xent + queue"]
            out.append({"what": f"PCLLoss / autograd NT-Xent + queue, peak memory, M = {e['m']}",
                        "measured": ratio, "limit": 1.0, "met": ratio <= 1.0})
    return out


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _or_dash(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def step_table(result: dict) -> list[list[str]]:
    """One row per step variant: name, ms, first call (s), graphs, breaks, peak extra MiB."""
    return [[name, f"{s['ms']:.2f}", _or_dash(s["first_call_s"], ".2f"), _or_dash(s["graph_count"], "d"),
             _or_dash(s["graph_break_count"], "d"), _mib(s.get("peak_bytes"))] for name, s in result["steps"].items()]


def bank_table(result: dict) -> list[list[str]]:
    """One row per queue size and case: M, case, ms, ratio to the baseline, peak extra MiB."""
    rows = []
    for e in result["bank"]:
        base = e["ms"]["autograd NT-Xent + queue"]
        for c in BANK_CASES:
            rows.append([str(e["m"]), c, f"{e['ms'][c]:.2f}", f"{e['ms'][c] / base:.2f}",
                         _mib(e.get("peak_bytes", {}).get(c))])
    return rows


STEP_HEADER = ["step", "ms", "first call (s)", "graphs", "graph breaks", "peak extra (MiB)"]
BANK_HEADER = ["M", "loss", "ms", "over baseline", "peak extra (MiB)"]


def _target_line(t: dict) -> str:
    return f"{t['what']}: {t['measured']:.2f} (target <= {t['limit']:g}): {'met' if t['met'] else 'MISSED'}"


def print_section(result: dict) -> None:
    (n2, d), (bn2, bd) = result["step_batch"], result["bank_batch"]
    print(f"  training steps, 2N = {n2}, d = {d}, {result['dtype']}, torch.compile backend {result['backend']}:")
    for row in [STEP_HEADER] + step_table(result):
        print(f"    {row[0]:<32} {row[1]:>9} {row[2]:>15} {row[3]:>7} {row[4]:>13} {row[5]:>17}")
    print(f"  memory bank, loss forward + backward, 2N = {bn2}, d = {bd}:")
    for row in [BANK_HEADER] + bank_table(result):
        print(f"    {row[0]:>6} {row[1]:<26} {row[2]:>9} {row[3]:>14} {row[4]:>17}")
    for e in result["bank"]:
        print(f"    M = {e['m']}: NTXentLoss {e['ntxent_value']:.7g}, autograd + queue {e['baseline_value']:.7g}, "
              f"relative difference {e['ntxent_rel_diff']:.1e}")
    for t in result["targets"]:
        print(f"  target: {_target_line(t)}", flush=True)


def _markdown_table(header, rows, align) -> list[str]:
    return ["| " + " | ".join(cells) + " |" for cells in [header, align, *rows]]


def to_markdown(result: dict) -> str:
    """The section's tables and targets as Markdown (its ratios also go into the main table)."""
    (n2, d), (bn2, bd) = result["step_batch"], result["bank_batch"]
    lines = [f"Training steps (encoder + loss, forward + backward), 2N = {n2}, d = {d}, {result['dtype']}, "
             f"`torch.compile` backend `{result['backend']}`:", ""]
    lines += _markdown_table(STEP_HEADER, step_table(result), ["---"] + ["---:"] * 5)
    lines += ["", f"Memory bank (the loss alone, forward + backward), 2N = {bn2}, d = {bd}; the baseline is "
                  "autograd NT-Xent with the same queue:", ""]
    lines += _markdown_table(BANK_HEADER, bank_table(result), ["---:", "---"] + ["---:"] * 3)
    lines += [""] + [f"* {_target_line(t)}" for t in result["targets"]]
    return "\n".join(lines) + "\n"
