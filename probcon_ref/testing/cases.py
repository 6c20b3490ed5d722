"""The battery of ``validate``: one :class:`Case` per regime of the contract, section :ref:`6 <contract-accuracy>`, and more.

Each case is a batch drawn from a NumPy generator seeded with ``[seed, index]``, so a seed
gives the same battery on one machine (another CPU may round the draws differently in the
last bit; the comparison is always on the inputs the callable received). Its ``tags`` are
keys of :data:`probcon_ref.testing.regimes.REGIMES`. New cases go at the end of their list,
so that the cases before them keep their draws.

With ``extra_candidates=True`` every case also holds a bank of extra candidates (the contract,
section :ref:`3 <contract-loss>`): ``M = EXTRA_PER_ANCHOR x 2N`` of them, drawn by
``extra_candidates`` from a generator of their own (seeded with ``[seed, index, 1]``), so
the batch itself is the same as without them. Their directions are Gaussian; their raw norms
and, for the PCL, their concentrations are the batch's own, each used ``EXTRA_PER_ANCHOR``
times in a random order, so that a case's regime (tiny, huge or mixed norms; kappa = 0, tiny
or huge) holds for its extra candidates too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .convention import DTYPES, LOSSES, check_flag, check_temperature, choice
from .regimes import keys

__all__ = ["Case", "battery", "pair", "extra_candidates", "EXTRA_PER_ANCHOR"]

#: Extra candidates per anchor: a case of N pairs gets M = EXTRA_PER_ANCHOR x 2N of them.
EXTRA_PER_ANCHOR = 2


@dataclass(frozen=True)
class Case:
    """One batch of the battery: float64 inputs and the regimes it exercises."""

    name: str
    description: str
    tags: frozenset
    inputs: dict  # z1, z2, kappa1, kappa2 (PCL) and any extra_z, extra_kappa (PCL), float64 arrays
    temperature: float | None = None  # NT-Xent
    dtypes: tuple = DTYPES  # the dtypes the case runs in

    def runs_in(self, dtype: str) -> bool:
        """Whether the case is run in ``dtype``."""
        return dtype in self.dtypes

    @property
    def n(self) -> int:
        return int(self.inputs["z1"].shape[0])

    @property
    def d(self) -> int:
        return int(self.inputs["z1"].shape[1])

    @property
    def m(self) -> int:
        """The number of extra candidates (0 without them)."""
        extra = self.inputs.get("extra_z")
        return 0 if extra is None else int(extra.shape[0])


# ---------------------------------------------------------------------------------------
# Builders: each draws from the generator it is given, in a fixed order
# ---------------------------------------------------------------------------------------


def pair(rng, n, d, noise=0.5, share=1.0):
    """Two views: ``z1`` Gaussian, ``z2 = share * z1 + noise * (Gaussian)``."""
    z1 = rng.standard_normal((n, d))
    return z1, share * z1 + noise * rng.standard_normal((n, d))


def _rows(lo, hi):
    """Row scales ``10**u``, ``u`` uniform in ``[lo, hi]``."""
    return lambda rng, n: 10.0 ** rng.uniform(lo, hi, (n, 1))


def _spread(rng, n):
    """Row norms from 1e-6 to 1e6, in random order."""
    return 10.0 ** rng.permutation(np.linspace(-6, 6, n))[:, None]


def _lognormal(mean, sigma):
    """Concentrations of both views, log-normal."""
    return lambda rng, n: (rng.lognormal(mean, sigma, n), rng.lognormal(mean, sigma, n))


def _logspace(lo, hi):
    """Concentrations of both views, ``10**u`` with ``u`` uniform in ``[lo, hi]``."""
    return lambda rng, n: (10.0 ** rng.uniform(lo, hi, n), 10.0 ** rng.uniform(lo, hi, n))


def _equal(value):
    """The same concentration ``value`` for every view."""
    return lambda rng, n: (np.full(n, value), np.full(n, value))


def _with_zeros(kap):
    """The concentrations of ``kap``, some set to 0 in each view."""
    def f(rng, n):
        k1, k2 = kap(rng, n)
        k1[::2] = 0.0
        k2[1::3] = 0.0
        return k1, k2
    return f


def _views(n, d, noise=0.5, share=1.0, scale=None):
    """A builder of the two views, their rows scaled by ``scale(rng, n)`` if given."""
    def build(rng):
        z1, z2 = pair(rng, n, d, noise, share)
        if scale is not None:
            z1, z2 = z1 * scale(rng, n), z2 * scale(rng, n)
        return z1, z2
    return build


def _pcl(views, kap):
    """A PCL builder: the views, then the concentrations ``kap(rng, n)``."""
    def build(rng):
        z1, z2 = views(rng)
        return (z1, z2, *kap(rng, z1.shape[0]))
    return build


def _batch(n, d, kap, noise=0.5, share=1.0, scale=None):
    """A PCL builder of two views and their concentrations ``kap``."""
    return _pcl(_views(n, d, noise, share, scale), kap)


def _same(n, d, sign=1.0):
    """Identical views (``sign = 1``) or antipodal ones (``sign = -1``)."""
    def build(rng):
        z1 = rng.standard_normal((n, d))
        return z1, (z1.copy() if sign > 0 else -z1)
    return build


# ---------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------

_TINY, _HUGE = _rows(-6.3, -5.7), _rows(5.7, 6.3)

#: (name, description, tags, builder(rng) -> (z1, z2, kappa1, kappa2))
_PCL = (
    ("random", "random batch, N = 16, d = 32", {"random"}, _batch(16, 32, _lognormal(2, 1), scale=_rows(-1, 1))),
    ("random-large-batch", "N = 128, d = 64", {"random"}, _batch(128, 64, _lognormal(2.5, 1))),
    ("d2", "circle, d = 2 (order 0)", {"d2"}, _batch(8, 2, _lognormal(1, 1))),
    ("d3", "sphere, d = 3 (order 1/2)", {"d3", "odd-d"}, _batch(8, 3, _lognormal(1, 1))),
    ("odd-d", "d = 33 (half-integer order)", {"odd-d"}, _batch(8, 33, _lognormal(2, 1))),
    ("odd-large-d", "d = 1025 (order 511.5), kappa 30 to 3000", {"odd-d", "large-d"},
     _batch(4, 1025, _logspace(1.5, 3.5), noise=1.0, share=0.1)),
    ("large-d", "d = 4096 (order 2047), kappa 30 to 300", {"large-d"},
     _batch(4, 4096, _logspace(1.5, 2.5), noise=1.0, share=0.1)),
    ("large-d-huge-kappa", "d = 4096, kappa 5e3 to 1e5", {"large-d", "huge-kappa"},
     _batch(4, 4096, _logspace(3.7, 5))),
    ("large-order-tiny-kappa", "d = 128 (order 63), kappa 1e-6 to 1e-3", {"large-order", "tiny-kappa"},
     _batch(6, 128, _logspace(-6, -3))),
    ("tiny-kappa", "d = 16, kappa 1e-9 to 1e-4", {"tiny-kappa"}, _batch(8, 16, _logspace(-9, -4))),
    ("kappa-zero", "d = 16, some kappa = 0", {"kappa-zero"}, _batch(8, 16, _with_zeros(_lognormal(1.5, 1)))),
    ("kappa-zero-d2", "d = 2, some kappa = 0", {"kappa-zero", "d2"}, _batch(6, 2, _with_zeros(_lognormal(1, 1)))),
    ("huge-kappa", "d = 64, kappa 1e4 to 1e6, close views", {"huge-kappa"},
     _batch(8, 64, _logspace(4, 6), noise=0.05)),
    ("identical", "identical views, d = 32", {"identical"}, _pcl(_same(8, 32), _lognormal(2, 1))),
    ("confident", "identical views, kappa 100 to 1000: tiny losses", {"identical", "tiny-loss"},
     _pcl(_same(8, 32), _logspace(2, 3))),
    ("antipodal", "antipodal views, d = 16", {"antipodal"}, _pcl(_same(8, 16, -1.0), _lognormal(1.5, 1))),
    ("tiny-norms", "raw norms about 1e-6", {"tiny-norm"}, _batch(8, 16, _lognormal(1.5, 1), scale=_TINY)),
    ("huge-norms", "raw norms about 1e6", {"huge-norm"}, _batch(8, 16, _lognormal(1.5, 1), scale=_HUGE)),
    ("mixed-norms", "raw norms from 1e-6 to 1e6", {"tiny-norm", "huge-norm"},
     _batch(8, 16, _lognormal(1.5, 1), scale=_spread)),
    ("n1", "N = 1: loss and gradients are 0", {"n1"}, _batch(1, 8, _lognormal(1.5, 1))),
    ("equal-kappa", "kappa = 2 everywhere (NT-Xent at temperature 0.5)", {"equal-kappa"},
     _batch(8, 16, _equal(2.0))),
    # last, so that the cases before it keep their draws; distinct views, unlike `confident`,
    # so the positive's term of dL/dz survives the projection
    ("confident-close", "close views (not identical), kappa 30 to 300: tiny losses", {"tiny-loss"},
     _batch(8, 32, _logspace(1.5, 2.5), noise=0.1)),
    ("high-kappa", "N = 32, d = 64, kappa 50 to 200 (1/tau for tau from 0.02 to 0.005)", {"high-kappa"},
     _batch(32, 64, _logspace(math.log10(50), math.log10(200)), noise=2.0)),
)

#: (name, description, tags, temperature, builder(rng) -> (z1, z2)[, dtypes])
_NTXENT = (
    ("random", "random batch, N = 16, d = 32", {"random"}, 0.5, _views(16, 32, scale=_rows(-1, 1))),
    ("random-large-batch", "N = 128, d = 64", {"random"}, 0.1, _views(128, 64)),
    ("small-tau", "temperature 0.02, close views", {"small-tau"}, 0.02, _views(16, 32, noise=0.2)),
    ("large-tau", "temperature 10", {"large-tau"}, 10.0, _views(8, 16)),
    ("d2", "d = 2", {"d2"}, 0.2, _views(8, 2)),
    ("d3", "d = 3", {"d3", "odd-d"}, 0.5, _views(8, 3)),
    ("odd-d", "d = 33", {"odd-d"}, 0.5, _views(8, 33)),
    ("large-d", "d = 4096", {"large-d"}, 0.1, _views(4, 4096)),
    ("identical", "identical views, temperature 0.05: tiny losses", {"identical", "tiny-loss"}, 0.05,
     _same(8, 32)),
    ("antipodal", "antipodal views", {"antipodal"}, 0.5, _same(8, 16, -1.0)),
    ("tiny-norms", "raw norms about 1e-6", {"tiny-norm"}, 0.5, _views(8, 16, scale=_TINY)),
    ("huge-norms", "raw norms about 1e6", {"huge-norm"}, 0.5, _views(8, 16, scale=_HUGE)),
    ("mixed-norms", "raw norms from 1e-6 to 1e6", {"tiny-norm", "huge-norm"}, 0.5, _views(8, 16, scale=_spread)),
    ("n1", "N = 1: loss and gradients are 0", {"n1"}, 0.5, _views(1, 8)),
    # the temperatures of the end of training (a learned logit scale clamped at 100 is 0.01)
    ("tiny-tau", "temperature 0.01, N = 32, d = 16", {"small-tau", "tiny-tau"}, 0.01,
     _views(32, 16, noise=1.5)),
    ("tiniest-tau", "temperature 0.005, N = 32, d = 16, float64 only", {"small-tau", "tiny-tau"}, 0.005,
     _views(32, 16, noise=1.5), ("float64",)),
)


_ONE_PAIR = "N = 1: the extra candidates are the only negatives (the loss is not 0)"
#: What extra candidates change in a case: (loss, name) -> (its description then, regimes it
#: no longer exercises, regimes it exercises then). At temperature 0.05 the extra candidates'
#: random directions raise the identical views' losses to 1e-6 and above (8e-7 at the least
#: over the seeds 0 to 5); the close views at temperature 0.02 keep losses from 1e-15 to 1e-9.
#: The NT-Xent entries hold at the case's own temperature only (a fixed one leaves the case as
#: it is without them).
_WITH_EXTRA = {
    ("pcl", "n1"): (_ONE_PAIR, (), ()),
    ("ntxent", "n1"): (_ONE_PAIR, (), ()),
    ("ntxent", "identical"): ("identical views, temperature 0.05: losses near 1e-6 and above", ("tiny-loss",), ()),
    ("ntxent", "small-tau"): ("temperature 0.02, close views: tiny losses", (), ("tiny-loss",)),
}


def extra_candidates(inputs: dict, rng, per_anchor: int = EXTRA_PER_ANCHOR) -> dict:
    """``extra_z`` (M, d) and, when ``inputs`` has concentrations, ``extra_kappa`` (M,) for a
    batch, ``M = per_anchor x 2N`` (the contract, section :ref:`3 <contract-loss>`): Gaussian
    directions whose raw norms are the batch's rows' norms, and concentrations that are the
    batch's, each value used ``per_anchor`` times in an order drawn from ``rng``."""
    z = np.concatenate([inputs["z1"], inputs["z2"]])
    m, d = per_anchor * z.shape[0], z.shape[1]
    g = rng.standard_normal((m, d))
    scale = np.max(np.abs(z), axis=1, keepdims=True)  # a row's norm without over- or underflow
    norms = scale[:, 0] * np.sqrt(np.sum((z / scale) ** 2, axis=1))
    out = {"extra_z": g / np.sqrt(np.sum(g * g, axis=1, keepdims=True))
           * rng.permutation(np.tile(norms, per_anchor))[:, None]}
    if "kappa1" in inputs:
        k = np.concatenate([inputs["kappa1"], inputs["kappa2"]])
        out["extra_kappa"] = rng.permutation(np.tile(k, per_anchor))
    return out


def _with_extra(case: Case, loss: str, rng, fixed_temperature: bool) -> Case:
    """``case`` with extra candidates, tagged so, its description and regimes corrected where
    they change them."""
    change = _WITH_EXTRA.get((loss, case.name))
    if change is None or fixed_temperature and case.name != "n1":
        change = (case.description, (), ())
    desc, lost, gained = change
    tags = (case.tags - set(keys(*lost))) | set(keys("extra-candidates", *gained))
    return Case(case.name, desc, tags, {**case.inputs, **extra_candidates(case.inputs, rng)}, case.temperature,
                case.dtypes)


def _without_temperature(desc: str) -> str:
    """A description's clauses but those that name its own temperature (a fixed one replaces it)."""
    kept = [part for part in desc.split(", ") if not part.startswith("temperature")]
    return ", ".join(kept) or "its own temperature replaced by the fixed one"


def _frozen(case: Case) -> Case:
    """``case`` with its input arrays made read-only (the battery is cached)."""
    for a in case.inputs.values():
        a.setflags(write=False)
    return case


@lru_cache(maxsize=8)
def _battery(loss: str, temperature: float | None, seed: int, extra: bool) -> tuple[Case, ...]:
    """The cases of ``loss`` for a seed (and a fixed NT-Xent temperature), built once."""
    cases = []
    if loss == "pcl":
        for i, (name, desc, tags, build) in enumerate(_PCL):
            z1, z2, k1, k2 = build(np.random.default_rng([seed, i]))
            inputs = {"z1": z1, "z2": z2, "kappa1": np.asarray(k1, np.float64), "kappa2": np.asarray(k2, np.float64)}
            cases.append(Case(name, desc, frozenset(keys(*tags)), inputs))
    else:
        for i, (name, desc, tags, tau, build, *dtypes) in enumerate(_NTXENT):
            z1, z2 = build(np.random.default_rng([seed, 100 + i]))
            if temperature is not None:
                tau = float(temperature)
                desc = _without_temperature(desc)
            cases.append(Case(name, desc, frozenset(keys(*tags)), {"z1": z1, "z2": z2}, tau,
                              *(tuple(d) for d in dtypes)))
    if extra:  # a generator of their own: the batches are those drawn above
        offset = 0 if loss == "pcl" else 100
        cases = [_with_extra(c, loss, np.random.default_rng([seed, offset + i, 1]), temperature is not None)
                 for i, c in enumerate(cases)]
    return tuple(_frozen(c) for c in cases)


def battery(loss: str = "pcl", *, temperature: float | None = None, seed: int = 0,
            extra_candidates: bool = False) -> list[Case]:
    """The validation cases for ``loss`` ("pcl" or "ntxent"), covering the regimes the contract, section :ref:`6 <contract-accuracy>`
    names; deterministic for a seed. With ``extra_candidates`` each case also holds extra
    candidates (drawn by ``extra_candidates`` of this module), its batch unchanged."""
    choice(loss, LOSSES, "loss")
    check_flag(extra_candidates, "extra_candidates")
    if temperature is not None:
        check_temperature(temperature)
        if loss != "ntxent":
            raise ValueError("temperature applies to loss='ntxent' only")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return list(_battery(loss, None if temperature is None else float(temperature), seed, extra_candidates))
