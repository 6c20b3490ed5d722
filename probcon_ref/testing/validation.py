"""The entry point: :func:`validate` runs the battery, judges every run, diagnoses the
failures and returns the :class:`~probcon_ref.testing.report.Report`."""

from __future__ import annotations

from typing import Callable

from .cases import Case, battery
from .convention import DTYPES, Convention, choice
from .diagnose import explain
from .frameworks import Framework
from .report import Report
from .runner import run_case

__all__ = ["validate"]


def _chosen(loss, temperature, dtypes, cases, seed, extra) -> tuple[tuple, list[Case]]:
    """The dtypes and the cases of the battery that ``validate`` runs, checked."""
    dtypes = tuple((dtypes,) if isinstance(dtypes, str) else dtypes)
    if not dtypes:
        raise ValueError("dtypes must name at least one of ('float64', 'float32')")
    for dt in dtypes:
        choice(dt, DTYPES, "dtypes")
    battery_cases = battery(loss, temperature=temperature, seed=seed, extra_candidates=extra)
    if cases is not None:
        cases = [cases] if isinstance(cases, str) else cases
        known = {c.name for c in battery_cases}
        unknown = [c for c in cases if c not in known]
        if unknown:
            raise ValueError(f"cases: unknown case name(s) {unknown}; known: {sorted(known)}")
        battery_cases = [c for c in battery_cases if c.name in set(cases)]
    return dtypes, battery_cases


def validate(fn: Callable, *, loss: str = "pcl", framework: str = "numpy", device: str | None = None,
             reduction: str = "mean", kappa: str = "kappa", temperature: float | None = None,
             gradients: str = "auto", dtypes=DTYPES, cases=None, seed: int = 0,
             target: str | None = None, extra_candidates: bool = False) -> Report:
    """Run ``fn`` on the validation battery and compare it with the reference (the contract, section :ref:`6 <contract-accuracy>`).

    Parameters
    ----------
    fn : callable
        The implementation: ``fn(z1, z2, kappa1, kappa2)`` for the PCL; ``fn(z1, z2, temperature)``
        for NT-Xent, or ``fn(z1, z2)`` when ``temperature`` is given. Returns the loss or
        ``(loss, grads)``.
    loss : {"pcl", "ntxent"}
    framework : {"numpy", "torch", "cupy", "jax"}
        The array type ``fn`` receives. ``device`` selects the PyTorch device (default CPU).
        A JAX ``fn`` is called eagerly on JAX arrays (float64 ones inside ``jax.enable_x64``).
    reduction : {"mean", "sum", "none", "pair-mean"}
        What ``fn`` returns: mean or sum over the 2N anchors, the (2N,) per-anchor losses
        (view 1 first), or the sum divided by N.
    kappa : {"kappa", "log"}
        PCL: whether ``fn`` takes the concentrations or their logarithms (cases with kappa = 0
        are then skipped).
    temperature : float, optional
        NT-Xent: a fixed temperature ``fn`` uses (then ``fn(z1, z2)`` is called); by default each
        case's temperature is passed.
    gradients : {"auto", "autograd", "returned", "none"}
        Where gradients come from: returned by ``fn``, autograd (PyTorch's through the returned
        tensor; for JAX ``jax.grad`` of ``fn``'s summed loss), or not checked. "auto" takes
        returned gradients, else autograd when ``fn`` returns a torch tensor or is a JAX loss.
    dtypes : sequence of {"float64", "float32"}
    cases : sequence of str, optional
        Run only the cases with these names. ``seed`` draws another battery.
    target : str, optional
        A name for ``fn`` in the report.
    extra_candidates : bool
        Also pass each case's extra candidates (a memory bank of ``EXTRA_PER_ANCHOR x 2N``; the
        contract, section :ref:`3 <contract-loss>`) after the batch's arguments:
        ``fn(z1, z2, kappa1, kappa2, extra_z, extra_kappa)``, ``fn(z1, z2, temperature, extra_z)``
        or ``fn(z1, z2, extra_z)``; ``extra_kappa`` is log-kappa with ``kappa="log"``. No
        gradient is taken, or expected back, with respect to them.

    Returns
    -------
    Report
        ``report.passed``, ``report.to_text()``, ``report.to_dict()``, ``report.findings``.

    Examples
    --------
    >>> from probcon_ref import pcl_loss_and_grad
    >>> from probcon_ref.testing import validate
    >>> validate(pcl_loss_and_grad, cases=["random", "kappa-zero"]).passed
    True
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    conv = Convention(loss=loss, framework=framework, device=device, reduction=reduction, kappa=kappa,
                      temperature=None if temperature is None else float(temperature), gradients=gradients,
                      extra_candidates=extra_candidates)
    dtypes, chosen = _chosen(loss, conv.temperature, dtypes, cases, seed, extra_candidates)
    return _run(fn, conv, dtypes, chosen, target)


def _run(fn, conv: Convention, dtypes: tuple, chosen: list, target) -> Report:
    """Every chosen case in every dtype it runs in, judged, the failures diagnosed."""
    fw = Framework(conv.framework, conv.device)
    fn = fw.wrap(fn, conv.loss, conv.gradients)
    results = [run_case(fn, fw, conv, case, dt) for case in chosen for dt in dtypes if case.runs_in(dt)]
    failing = [r for r in results if r.status in ("fail", "error")]
    findings = explain(fn, fw, conv, results, {c.name: c for c in chosen}) if failing else []
    name = target or getattr(fn, "__qualname__", None) or repr(fn)  # the wrapper keeps fn's name
    return Report(name, conv, results, findings, dtypes)
