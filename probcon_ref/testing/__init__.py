"""Validate another implementation of the PCL or NT-Xent against the reference.

``probcon-ref validate MODULE:CALLABLE`` and :func:`validate` call a user's loss function on a
battery of cases covering every regime of SPEC section 6 (random batches; d = 2, 3, odd and
large; tiny, huge and zero kappa; identical and antipodal views; tiny, huge and mixed raw
norms; N = 1), in float64 and float32, and compare its loss, and its gradients when it
returns them or PyTorch autograd can take them, with the reference evaluated in NumPy
float64 on the same (rounded) inputs. It prints a per-case report with the worst errors and
a verdict, and where the failures have a recognisable signature it says which
(:mod:`probcon_ref.testing.diagnose`).

The callable is called as

* PCL: ``fn(z1, z2, kappa1, kappa2)`` (``kappa`` or, with ``kappa="log"``, log-kappa),
* NT-Xent: ``fn(z1, z2, temperature)``, or ``fn(z1, z2)`` when a fixed ``temperature`` is given,

with arrays of the chosen framework, and returns the loss, or ``(loss, grads)`` where
``grads`` is a sequence ``(z1, z2[, kappa1, kappa2])`` or a mapping with those keys.

Error measure: for each quantity, ``max |got - ref| / max(max |ref|, scale)``, where the scale
is the rounding level of that quantity: for the loss, the size of the logits' ingredients
(``|log C_d(kappa_b)| + kappa_b``, or ``1/tau``); for a gradient block, the size its terms can
reach (``w_a kappa_b / ||z_a||``...). A correct implementation in a given precision stays
below the SPEC section 6 tolerances even where the loss is tiny and its relative error
large; a genuine mistake does not.

The parts, each a module of this package: the options (``convention``), the battery
(``cases``, its regimes named in ``regimes``), the tolerances of SPEC sections 5 and 6
(``tolerances``), the measure (``measure``, from the host-side pieces of ``host``), running
the callable (``frameworks``, ``runner``), the diagnosis (``diagnose``), the report
(``report``) and the command line (``command``); the golden vectors (``vectors``) and the
50-digit oracle they come from (``oracle``).
"""

from __future__ import annotations

from typing import Callable

from .cases import Case, battery
from .command import add_arguments, load_callable, run
# the options' allowed values and validate's constants are importable from here too
from .convention import DTYPES, FRAMEWORKS, GRADIENTS, KAPPA_MODES, LOSSES, REDUCTIONS, Convention, choice  # noqa: F401
from .diagnose import explain
from .frameworks import Framework
from .report import Report
from .runner import RunResult, run_case
from .tolerances import ROUNDING, SUBNORMALS, TOLERANCES  # noqa: F401

__all__ = ["Convention", "Case", "RunResult", "Report", "battery", "validate", "load_callable",
           "TOLERANCES"]


def _chosen(loss, temperature, dtypes, cases, seed) -> tuple[tuple, list[Case]]:
    """The dtypes and the cases of the battery that ``validate`` runs, checked."""
    dtypes = tuple((dtypes,) if isinstance(dtypes, str) else dtypes)
    if not dtypes:
        raise ValueError("dtypes must name at least one of ('float64', 'float32')")
    for dt in dtypes:
        choice(dt, DTYPES, "dtypes")
    battery_cases = battery(loss, temperature=temperature, seed=seed)
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
             target: str | None = None) -> Report:
    """Run ``fn`` on the validation battery and compare it with the reference (SPEC section 6).

    Parameters
    ----------
    fn : callable
        The implementation: ``fn(z1, z2, kappa1, kappa2)`` for the PCL; ``fn(z1, z2, temperature)``
        for NT-Xent, or ``fn(z1, z2)`` when ``temperature`` is given. Returns the loss or
        ``(loss, grads)``.
    loss : {"pcl", "ntxent"}
    framework : {"numpy", "torch", "cupy"}
        The array type ``fn`` receives. ``device`` selects the PyTorch device (default CPU).
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
        Where gradients come from: returned by ``fn``, PyTorch autograd, or not checked. "auto"
        takes returned gradients, else autograd when ``fn`` returns a torch tensor.
    dtypes : sequence of {"float64", "float32"}
    cases : sequence of str, optional
        Run only the cases with these names. ``seed`` draws another battery.
    target : str, optional
        A name for ``fn`` in the report.

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
                      temperature=None if temperature is None else float(temperature), gradients=gradients)
    dtypes, chosen = _chosen(loss, conv.temperature, dtypes, cases, seed)
    fw = Framework(framework, device)
    results = [run_case(fn, fw, conv, case, dt) for case in chosen for dt in dtypes]
    failing = [r for r in results if r.status in ("fail", "error")]
    findings = explain(fn, fw, conv, results, {c.name: c for c in chosen}) if failing else []
    name = target or getattr(fn, "__qualname__", None) or repr(fn)
    return Report(name, conv, results, findings, dtypes)
