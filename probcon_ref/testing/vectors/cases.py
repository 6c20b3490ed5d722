"""The golden cases: how each is built from its seed, the regimes it covers, its outputs.

Each :class:`CaseSpec` names a loss, the regimes of
:data:`probcon_ref.testing.regimes.REGIMES` it exercises, a builder of its inputs from a
:class:`~probcon_ref.testing.vectors.inputs.Stream` and the seed of that stream. Its
outputs come from the 50-digit oracle (:func:`compute`). A new case takes a new seed and
goes at the end; no existing case's builder or seed changes, or the shipped files would no
longer be rebuilt. A case may hold extra candidates (``extra_z`` and, for the PCL,
``extra_kappa``: the contract, section :ref:`3 <contract-loss>`), which the oracle puts in
every anchor's denominator.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from ..regimes import keys
from .inputs import (Stream, directions, moderate_kappas, noisy_pair, pair_counts, rows_times_ten_to,
                     to_float)

__all__ = ["CaseSpec", "CASES", "case_spec", "case_inputs", "compute"]


@dataclass(frozen=True)
class CaseSpec:
    """How one golden case is made: its name, loss, regimes and input builder."""

    name: str
    loss: str  # "pcl" or "ntxent"
    description: str
    regimes: tuple[str, ...]
    build: Callable[[Stream], dict]
    seed: int

    def __post_init__(self):
        """Check that every regime is one of the project's list."""
        keys(*self.regimes)


def _pcl(z1, z2, k1, k2, extra_z=None, extra_kappa=None):
    """A PCL case's inputs as float64 arrays (with its extra candidates, if it has any)."""
    out = {"z1": z1, "z2": z2, "kappa1": k1, "kappa2": k2}
    if extra_z is not None:
        out.update(extra_z=extra_z, extra_kappa=extra_kappa)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _nt(z1, z2, tau, extra_z=None):
    """An NT-Xent case's inputs as float64 arrays (with its extra candidates, if it has any)."""
    out = {"z1": z1, "z2": z2, "temperature": tau, **({} if extra_z is None else {"extra_z": extra_z})}
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _random_pcl(n, d):
    """Random views, moderate kappa."""
    def build(s):
        z1, z2 = noisy_pair(s, n, d)
        return _pcl(z1, z2, moderate_kappas(s, n), moderate_kappas(s, n))
    return build


def _large_d(s):
    """d = 4096, views that share a tenth, kappa 30 to 300."""
    # Entries are multiples of 1/16 so the inputs stay short in JSON; the outputs are not.
    # z2 takes a tenth of z1 (rounded to a sixteenth in integer arithmetic), so with kappa
    # 30 to 300 no candidate dominates.
    n, d = 2, 4096
    k1 = s.bell(16, (n, d))
    k2 = s.bell(16, (n, d)) + (k1 + 5) // 10
    return _pcl(to_float(k1, Fraction(1, 16)), to_float(k2, Fraction(1, 16)), [30.0, 150.0], [80.0, 300.0])


def _order63_tiny_kappa(s):
    """d = 128 (order 63), kappa 1e-6 to 3e-4."""
    z1, z2 = noisy_pair(s, 3, 128)
    return _pcl(z1, z2, [1e-6, 1e-5, 1e-4], [1e-5, 5.6e-5, 3e-4])


def _kappa_zero(s):
    """d = 16, kappa = 0 and 1e-300."""
    z1, z2 = noisy_pair(s, 3, 16)
    return _pcl(z1, z2, [0.0, 0.0, 3.0], [0.0, 1e-300, 5.0])


def _kappa_zero_d2(s):
    """d = 2, kappa = 0."""
    z1, z2 = noisy_pair(s, 3, 2)
    return _pcl(z1, z2, [0.0, 0.5, 0.0], [2.0, 0.0, 1e-8])


def _huge_kappa(s):
    """Close views, kappa 1e4 to 1e6."""
    z1, z2 = noisy_pair(s, 3, 64, noise_den=16)
    return _pcl(z1, z2, [1e4, 2e5, 1e6], [5e4, 1e6, 3e5])


def _identical(s):
    """Identical views, kappa 5 to 50."""
    z1 = directions(s, 4, 16)
    return _pcl(z1, z1.copy(), to_float(s.integers(20, 200, (4,)), Fraction(1, 4)),
                to_float(s.integers(20, 200, (4,)), Fraction(1, 4)))


def _confident(s):
    """Identical views, kappa 100 to 900: tiny losses."""
    # identical views, large kappa: per-anchor losses from 1e-97 to 1e-46
    z1 = directions(s, 3, 32)
    return _pcl(z1, z1.copy(), [100.0, 250.0, 400.0], [150.0, 700.0, 900.0])


def _underflow(s):
    """Identical views, d = 256, kappa 500 to 3000: losses at float64 underflow."""
    # identical views, d = 256, kappa 500 to 3000: per-anchor losses near and below the
    # smallest normal float64 (2.2e-308)
    z1 = directions(s, 3, 256)
    return _pcl(z1, z1.copy(), [500.0, 1000.0, 2000.0], [750.0, 1500.0, 3000.0])


def _antipodal(s):
    """Antipodal views, kappa 0.5 to 20."""
    z1 = directions(s, 4, 8)
    return _pcl(z1, -z1, to_float(s.integers(4, 160, (4,)), Fraction(1, 8)),
                to_float(s.integers(4, 160, (4,)), Fraction(1, 8)))


def _scaled(powers_of_rows):
    """Random pairs whose rows are scaled by 10**p (norms about 3 * 10**p)."""
    def build(s):
        n, d = 4, 8
        k1, k2, scale = pair_counts(s, n, d)
        p1, p2 = powers_of_rows(s, n)
        return _pcl(rows_times_ten_to(k1, scale, p1), rows_times_ten_to(k2, scale, p2),
                    moderate_kappas(s, n), moderate_kappas(s, n))
    return build


def _n1(s):
    """One pair."""
    z1, z2 = noisy_pair(s, 1, 5)
    return _pcl(z1, z2, [3.0], [0.5])


def _ntxent_limit(s):
    """kappa = 2 everywhere: NT-Xent at temperature 0.5."""
    z1, z2 = noisy_pair(s, 4, 8)
    return _pcl(z1, z2, np.full(4, 2.0), np.full(4, 2.0))


def _nt_random(n, d, tau, noise_den=2):
    """NT-Xent: random views at temperature ``tau``."""
    def build(s):
        z1, z2 = noisy_pair(s, n, d, noise_den)
        return _nt(z1, z2, tau)
    return build


def _nt_identical(s):
    """NT-Xent: identical views, temperature 0.02."""
    z1 = directions(s, 3, 8)
    return _nt(z1, z1.copy(), 0.02)


def _nt_antipodal(s):
    """NT-Xent: antipodal views, temperature 1."""
    z1 = directions(s, 3, 4)
    return _nt(z1, -z1, 1.0)


def _nt_norms(s):
    """NT-Xent: raw norms 1e-6, 1 and 1e6 in each view, temperature 0.3."""
    k1, k2, scale = pair_counts(s, 3, 6)
    return _nt(rows_times_ten_to(k1, scale, [-6, 0, 6]), rows_times_ten_to(k2, scale, [6, -6, 0]), 0.3)


def _pcl_bank(n, d, m):
    """Random views and a bank of ``m`` random directions, moderate kappa; the bank's last
    concentration is 0."""
    def build(s):
        z1, z2 = noisy_pair(s, n, d)
        k1, k2 = moderate_kappas(s, n), moderate_kappas(s, n)
        bank, bank_kappa = directions(s, m, d), moderate_kappas(s, m)
        bank_kappa[-1] = 0.0
        return _pcl(z1, z2, k1, k2, bank, bank_kappa)
    return build


def _confident_bank(s):
    """Identical views, kappa 100 to 900, and a bank of 6 random directions, kappa 150 to 300."""
    # as pcl-confident, with a bank: of its anchors' tiny losses (1e-100 to 1e-40), the bank
    # makes almost all of two, a share of 1e-3 of two, and a share of 3e-13 of two (the last
    # digits: an implementation that drops the bank is still within 1e-12 there)
    z1 = directions(s, 3, 32)
    bank, bank_kappa = directions(s, 6, 32), to_float(s.integers(6, 12, (6,)), Fraction(25))
    return _pcl(z1, z1.copy(), [100.0, 250.0, 400.0], [150.0, 700.0, 900.0], bank, bank_kappa)


def _n1_bank(s):
    """One pair and a bank of three: the bank holds its only negatives."""
    z1, z2 = noisy_pair(s, 1, 5)
    return _pcl(z1, z2, [3.0], [0.5], directions(s, 3, 5), [1.0, 4.0, 0.25])


def _nt_bank(n, d, m, tau):
    """NT-Xent: random views and a bank of ``m`` random directions at temperature ``tau``."""
    def build(s):
        z1, z2 = noisy_pair(s, n, d)
        return _nt(z1, z2, tau, directions(s, m, d))
    return build


_TINY = (lambda s, n: ([-6] * n, [-6] * n))
_HUGE = (lambda s, n: ([6] * n, [6] * n))
# each end in both views, and pairs whose views differ in norm by 1e12
_MIXED = (lambda s, n: ([-6, 6, 0, -3][:n], [6, -6, 3, 0][:n]))

CASES: tuple[CaseSpec, ...] = (
    CaseSpec("pcl-basic", "pcl", "random batch, moderate kappa", ("random",), _random_pcl(4, 8), 1),
    CaseSpec("pcl-d2", "pcl", "circle, d = 2 (order 0)", ("d2",), _random_pcl(4, 2), 2),
    CaseSpec("pcl-d3", "pcl", "sphere, d = 3 (order 1/2)", ("d3", "odd-d"), _random_pcl(4, 3), 3),
    CaseSpec("pcl-odd-d", "pcl", "odd dimension d = 33 (half-integer order)", ("odd-d",), _random_pcl(3, 33), 4),
    CaseSpec("pcl-large-d", "pcl", "d = 4096 (order 2047), kappa 30 to 300", ("large-d",), _large_d, 5),
    CaseSpec("pcl-order63-tiny-kappa", "pcl", "d = 128 (order 63), kappa 1e-6 to 3e-4",
             ("large-order", "tiny-kappa"), _order63_tiny_kappa, 6),
    CaseSpec("pcl-kappa-zero", "pcl", "kappa = 0 and kappa = 1e-300, d = 16", ("kappa-zero",), _kappa_zero, 7),
    CaseSpec("pcl-kappa-zero-d2", "pcl", "kappa = 0 with d = 2 (order 0)", ("kappa-zero", "d2"), _kappa_zero_d2, 8),
    CaseSpec("pcl-huge-kappa", "pcl", "kappa 1e4 to 1e6, close views", ("huge-kappa",), _huge_kappa, 9),
    CaseSpec("pcl-identical", "pcl", "identical views (cosine of every positive is 1)", ("identical",), _identical, 10),
    CaseSpec("pcl-confident", "pcl", "identical views and large kappa: losses from 1e-97 to 1e-46",
             ("identical", "tiny-loss"), _confident, 11),
    CaseSpec("pcl-underflow", "pcl", "identical views, d = 256, kappa 500 to 3000: losses at float64 underflow",
             ("identical", "tiny-loss", "large-order"), _underflow, 18),
    CaseSpec("pcl-antipodal", "pcl", "antipodal views (cosine of every positive is -1)", ("antipodal",), _antipodal, 12),
    CaseSpec("pcl-tiny-norms", "pcl", "raw norms 1e-6", ("tiny-norm",), _scaled(_TINY), 13),
    CaseSpec("pcl-huge-norms", "pcl", "raw norms 1e6", ("huge-norm",), _scaled(_HUGE), 14),
    CaseSpec("pcl-mixed-norms", "pcl", "raw norms from 1e-6 to 1e6", ("tiny-norm", "huge-norm"), _scaled(_MIXED), 15),
    CaseSpec("pcl-n1", "pcl", "N = 1: the positive is the only candidate, loss and gradients 0", ("n1",), _n1, 16),
    CaseSpec("pcl-ntxent-limit", "pcl", "kappa = 2 everywhere: equals ntxent with temperature 0.5",
             ("equal-kappa",), _ntxent_limit, 17),
    CaseSpec("ntxent-basic", "ntxent", "random batch, temperature 0.5", ("random",), _nt_random(4, 8, 0.5), 101),
    CaseSpec("ntxent-small-tau", "ntxent", "temperature 0.05", ("small-tau",), _nt_random(4, 16, 0.05, noise_den=4), 102),
    CaseSpec("ntxent-identical", "ntxent", "identical views, temperature 0.02: tiny losses",
             ("identical", "tiny-loss"), _nt_identical, 103),
    CaseSpec("ntxent-d2", "ntxent", "d = 2, temperature 0.2", ("d2",), _nt_random(4, 2, 0.2), 104),
    CaseSpec("ntxent-antipodal", "ntxent", "antipodal views, temperature 1", ("antipodal",), _nt_antipodal, 105),
    CaseSpec("ntxent-mixed-norms", "ntxent", "raw norms 1e-6, 1 and 1e6, temperature 0.3",
             ("tiny-norm", "huge-norm"), _nt_norms, 106),
    CaseSpec("ntxent-n1", "ntxent", "N = 1: loss and gradients 0", ("n1",), _nt_random(1, 3, 0.5), 107),
    # extra candidates (a memory bank): last, so that the files above stay as they are
    CaseSpec("pcl-extra-candidates", "pcl", "random batch and a bank of 8 extra candidates, one with kappa = 0",
             ("random", "extra-candidates", "kappa-zero"), _pcl_bank(4, 8, 8), 19),
    CaseSpec("pcl-extra-confident", "pcl", "identical views, large kappa and a bank: the bank's share of the "
             "tiny losses from nearly all of them to their last digits",
             ("identical", "tiny-loss", "extra-candidates"), _confident_bank, 31),
    CaseSpec("pcl-extra-n1", "pcl", "N = 1 and a bank of 3: the bank holds the only negatives, the loss is not 0",
             ("n1", "extra-candidates"), _n1_bank, 20),
    CaseSpec("ntxent-extra-candidates", "ntxent", "random batch and a bank of 8 extra candidates, temperature 0.2",
             ("random", "extra-candidates"), _nt_bank(4, 8, 8, 0.2), 108),
)

_BY_NAME = {c.name: c for c in CASES}


def case_spec(name: str) -> CaseSpec:
    """The :class:`CaseSpec` named ``name``; a ``ValueError`` listing the names if none is."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown golden case {name!r}; known: {', '.join(_BY_NAME)}") from None


def case_inputs(name: str) -> dict:
    """The inputs of case ``name``, rebuilt from its seed (float64 NumPy arrays)."""
    spec = case_spec(name)
    return spec.build(Stream(spec.seed))


def compute(name: str, inputs: dict | None = None) -> dict:
    """All outputs of case ``name`` at 50 digits (rounded to float64), for ``inputs`` or its own."""
    from .. import oracle

    spec = case_spec(name)
    x = case_inputs(name) if inputs is None else inputs
    bank = {k: x[k] for k in ("extra_z", "extra_kappa") if k in x}  # none, or the case's extra candidates
    if spec.loss == "pcl":
        r = oracle.pcl(x["z1"], x["z2"], x["kappa1"], x["kappa2"], **bank)
        extra = {"grad_kappa1": r.grads["kappa1"], "grad_kappa2": r.grads["kappa2"],
                 "log_vmf_normalizer": r.log_c, "mean_resultant_length": r.mean_length}
    else:
        r = oracle.ntxent(x["z1"], x["z2"], temperature=float(x["temperature"]), **bank)
        extra = {}
    out = {"loss": np.float64(r.loss), "loss_sum": np.float64(r.loss_sum), "losses": r.losses,
           "grad_z1": r.grads["z1"], "grad_z2": r.grads["z2"], **extra}
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

