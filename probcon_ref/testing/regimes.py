"""The regimes of the inputs where implementations go wrong, named once.

the contract, section :ref:`6 <contract-accuracy>` lists the regimes in which the loss and its gradient must hold; sections 3-5
add a few where a known mistake shows. Each is one :class:`Regime` of :data:`REGIMES`, with
a key that the rest of the project uses to say which regimes a batch exercises: the cases of
``validate``'s battery (their ``tags``), the golden vectors (their ``regimes``, written into
the manifest), the batch of ``probcon-ref check``, the reference data of the tests, and the
regime diagnoses of ``validate``. :func:`keys` checks a list of keys against this one list;
:func:`required` is what a battery must cover.

>>> keys("identical", "tiny-loss")
('identical', 'tiny-loss')
>>> sorted(required("pcl") - required("ntxent"))
['huge-kappa', 'kappa-zero', 'tiny-kappa']
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Regime", "REGIMES", "keys", "required", "describe"]

_BOTH = ("pcl", "ntxent")


@dataclass(frozen=True)
class Regime:
    """A region of the inputs: its key, what holds there, and where the contract names it."""

    key: str
    description: str
    section: int  # of the contract
    required: bool = False  # the contract, section 6 names it: a battery of each loss in ``losses`` covers it
    losses: tuple[str, ...] = _BOTH


REGIMES: tuple[Regime, ...] = (
    Regime("random", "a typical batch: random views that agree in part, moderate kappa or temperature",
           6, True),
    Regime("d2", "d = 2, the circle: Bessel order nu = 0", 6, True),
    Regime("d3", "d = 3, the smallest odd dimension: order 1/2", 6, True),
    Regime("odd-d", "odd d: a half-integer Bessel order", 6, True),
    Regime("large-d", "d in the thousands, up to 4096 (order 2047)", 6, True),
    Regime("large-order", "Bessel order in the tens to hundreds (d = 128, 256), where SciPy's ive "
           "underflows at small kappa", 5, losses=("pcl",)),
    Regime("tiny-kappa", "kappa from 1e-9 to 1e-3: log kappa and log I_nu(kappa) cancel in log C_d",
           6, True, ("pcl",)),
    Regime("kappa-zero", "some kappa = 0: log C_d at its finite limit", 6, True, ("pcl",)),
    Regime("huge-kappa", "kappa from about 1e4 to 1e6", 6, True, ("pcl",)),
    Regime("high-kappa", "kappa from 50 to 200 in a typical batch: the confidences 1/tau of the "
           "temperatures people train with (0.02 down to 0.005)", 6, losses=("pcl",)),
    Regime("equal-kappa", "the same kappa for every view: NT-Xent at temperature 1/kappa", 3,
           losses=("pcl",)),
    Regime("small-tau", "NT-Xent temperature 0.05 or below: large logits", 3, losses=("ntxent",)),
    Regime("tiny-tau", "NT-Xent temperature 0.01 or 0.005, the smallest people train with (a learned "
           "logit scale clamped at 100 is tau = 0.01): logits of 100 and 200, beyond the range of exp in "
           "float32 (88.7) unless each row's maximum is subtracted first", 3, losses=("ntxent",)),
    Regime("large-tau", "NT-Xent temperature 10: a nearly flat softmax", 3, losses=("ntxent",)),
    Regime("identical", "identical views, z2 = z1: every positive has cosine 1", 6, True),
    Regime("antipodal", "antipodal views, z2 = -z1: every positive has cosine -1", 6, True),
    Regime("tiny-norm", "raw norms near 1e-6", 6, True),
    Regime("huge-norm", "raw norms near 1e6", 6, True),
    Regime("n1", "N = 1: the positive is the only candidate, the loss and its gradients are 0",
           6, True),
    Regime("tiny-loss", "confidently matched positives: per-anchor losses below 1e-8, down to "
           "float64 underflow", 6, True),
    Regime("extra-candidates", "extra candidates (a memory bank or a queue) in every anchor's denominator: "
           "not anchors themselves, no gradient to them, and with N = 1 the loss is not 0", 3),
)

_BY_KEY = {r.key: r for r in REGIMES}


def keys(*names: str) -> tuple[str, ...]:
    """``names``, each checked to be the key of a regime of :data:`REGIMES`."""
    unknown = [n for n in names if n not in _BY_KEY]
    if unknown:
        raise ValueError(f"unknown regime(s) {unknown}; known: {', '.join(_BY_KEY)}")
    return tuple(names)


def required(loss: str) -> frozenset[str]:
    """The regimes the contract, section :ref:`6 <contract-accuracy>` names for ``loss`` ("pcl" or "ntxent"): a battery covers them."""
    if loss not in _BOTH:
        raise ValueError(f"loss must be one of {_BOTH}, got {loss!r}")
    return frozenset(r.key for r in REGIMES if r.required and loss in r.losses)


def describe(key: str) -> str:
    """The description of regime ``key``."""
    return _BY_KEY[keys(key)[0]].description
