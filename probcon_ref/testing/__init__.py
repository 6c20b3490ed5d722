"""Validate another implementation of the PCL or NT-Xent against the reference.

``probcon-ref validate MODULE:CALLABLE`` and :func:`validate` call a user's loss function on a
battery of cases covering every regime of the contract, section :ref:`6 <contract-accuracy>` (random batches; d = 2, 3, odd and
large; tiny, huge and zero kappa; identical and antipodal views; tiny, huge and mixed raw
norms; N = 1), in float64 and float32, and compare its loss, and its gradients when it
returns them or autograd can take them (PyTorch's through the returned tensor, ``jax.grad``
for ``framework="jax"``), with the reference evaluated in NumPy
float64 on the same (rounded) inputs. It prints a per-case report with the worst errors and
a verdict, and where the failures have a recognisable signature it says which
(:mod:`probcon_ref.testing.diagnose`).

The callable is called as

* PCL: ``fn(z1, z2, kappa1, kappa2)`` (``kappa`` or, with ``kappa="log"``, log-kappa),
* NT-Xent: ``fn(z1, z2, temperature)``, or ``fn(z1, z2)`` when a fixed ``temperature`` is given,

with arrays of the chosen framework, and returns the loss, or ``(loss, grads)`` where
``grads`` is a sequence ``(z1, z2[, kappa1, kappa2])`` or a mapping with those keys. With
``extra_candidates=True`` every case also has a bank of extra candidates (the contract,
section :ref:`3 <contract-loss>`), passed after those arguments as ``extra_z`` and, for the
PCL, ``extra_kappa``; the gradients are still the batch's only.

Error measure: for each quantity, ``max |got - ref| / max(max |ref|, scale)``, where the scale
is the rounding level of that quantity: for the loss, the size of the logits' ingredients
(``|log C_d(kappa_b)| + kappa_b``, or ``1/tau``); for a gradient block, the size its terms can
reach (``w_a kappa_b / ||z_a||``...). A correct implementation in a given precision stays
below the contract, section :ref:`6 <contract-accuracy>` tolerances even where the loss is tiny and its relative error
large; a genuine mistake does not.

The parts, each a module of this package: the options (``convention``), the battery
(``cases``, its regimes named in ``regimes``), the tolerances of the contract, sections :ref:`5 <contract-special>` and :ref:`6 <contract-accuracy>`
(``tolerances``), the measure (``measure``, from the host-side pieces of ``host``), running
the callable (``frameworks``, ``runner``), the diagnosis (``diagnose``), the report
(``report``), :func:`validate` itself (``validation``) and the command line (``command``);
the golden vectors (``vectors``) and the 50-digit oracle they come from (``oracle``).
"""

from __future__ import annotations

from .cases import Case, battery
from .command import add_arguments, load_callable, run
# the options' allowed values and validate's constants are importable from here too
from .convention import DTYPES, FRAMEWORKS, GRADIENTS, KAPPA_MODES, LOSSES, REDUCTIONS, Convention  # noqa: F401
from .report import Report
from .runner import RunResult
from .tolerances import ROUNDING, SUBNORMALS, TOLERANCES  # noqa: F401
from .validation import validate

__all__ = ["Convention", "Case", "RunResult", "Report", "battery", "validate", "load_callable",
           "TOLERANCES"]
