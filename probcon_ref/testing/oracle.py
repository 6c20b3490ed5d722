"""A 50-digit evaluation of the loss and its gradient (the contract, sections :ref:`1 <contract-notation>`, :ref:`3 <contract-loss>`, :ref:`4 <contract-gradient>`), in mpmath.

This is the slow, trusted route used to compute the golden vectors
(:mod:`probcon_ref.testing.vectors`). It shares no code with the array implementation: every
quantity is evaluated with mpmath at :data:`DIGITS` significant digits (plus guard digits),
float64 inputs are read as the exact binary numbers they are, and results are rounded to
float64 once, at the very end (subnormal results too). No NumPy or libm arithmetic takes
part, so the results are the same on every machine.

It has a twin on purpose: ``tests/reference/mp_reference.py`` is a second 50-digit
evaluation of the same sections, written separately, sharing no code with this one, with
its own self-checks (Debye and Hankel expansions in place of ``besseli``, a continued
fraction for the ratio, finite differences); it makes the reference data of the test suite.
Two independent implementations catch each other's mistakes: a slip in carrying the contract into
mpmath shows as a disagreement between them (the tests compare them on golden cases, to
one unit in the last place) instead of being copied into the golden vectors and the test
data alike. This one ships with the package, so that ``probcon-ref vectors --recompute``
works where the tests are not installed.

mpmath is an optional dependency (``pip install "probcon-ref[oracle]"``); it is imported
when a function here is first called.

Examples
--------
>>> import numpy as np
>>> from probcon_ref.testing import oracle
>>> r = oracle.ntxent(np.eye(2, 3), np.eye(2, 3), temperature=0.5)
>>> r.losses.shape, r.grads["z1"].shape
((4,), (2, 3))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DIGITS",
    "OracleResult",
    "log_iv",
    "bessel_ratio",
    "log_vmf_normalizer",
    "mean_resultant_length",
    "pcl",
    "ntxent",
]

#: Significant decimal digits of every evaluation.
DIGITS = 50
_GUARD = 15
# mpmath's besseli may need many series terms for large order and argument (order ~2000,
# argument ~1e4); the default limit would raise NoConvergence.
_MAXTERMS = 10**6


def _mpmath():
    """mpmath, imported on first use (an ``ImportError`` that says how to install it)."""
    try:
        import mpmath
    except ImportError as exc:  # pragma: no cover - exercised only without mpmath
        raise ImportError(
            "the 50-digit oracle needs mpmath; install it with "
            "pip install 'probcon-ref[oracle]' (or pip install mpmath)"
        ) from exc
    return mpmath


def _exact(mp, value, name: str):
    """The float64 ``value`` as an exact mpf; ``ValueError`` naming ``name`` if not finite."""
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return mp.mpf(v)


def _round(x) -> float:
    """The mpf ``x`` rounded once to the nearest float64 (ties to even), subnormals included.

    ``float(x)`` rounds to 53 bits and then, where the result is subnormal, lets ``ldexp``
    round a second time onto the coarser subnormal grid; below the normal range the value is
    therefore rounded here directly at the binary place 2**-1074, in integer arithmetic.
    """
    sign, man, exp, bc = x._mpf_
    if not man or exp + bc - 1 >= -1022:  # zero, inf, nan, or normal: one rounding to 53 bits
        return float(x)
    shift = -1074 - exp
    if shift <= 0:  # already a multiple of 2**-1074: exact
        q = man << -shift
    else:
        q, rem = man >> shift, man & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
    value = math.ldexp(q, -1074)  # q <= 2**52: exact
    return -value if sign else value


# ---------------------------------------------------------------------------------------
# Special functions, as mpf (call inside a workdps context for full precision)
# ---------------------------------------------------------------------------------------


def _log_iv(mp, nu, x):
    """``log I_nu(x)`` from mpmath's ``besseli`` (``-inf`` at ``x = 0`` for ``nu > 0``)."""
    if x == 0:
        return mp.mpf(0) if nu == 0 else mp.ninf
    return mp.log(mp.besseli(nu, x, maxterms=_MAXTERMS))


def _ratio(mp, nu, x):
    """``I_{nu+1}(x) / I_nu(x)`` (0 at ``x = 0``)."""
    if x == 0:
        return mp.mpf(0)
    return mp.besseli(nu + 1, x, maxterms=_MAXTERMS) / mp.besseli(nu, x, maxterms=_MAXTERMS)


def _log_c(mp, d: int, k):
    """``log C_d(k)`` (the contract, section :ref:`1 <contract-notation>`), with its finite limit at ``k = 0``."""
    half = mp.mpf(d) / 2
    if k == 0:  # finite limit: lgamma(d/2) - log 2 - (d/2) log pi
        return mp.loggamma(half) - mp.log(2) - half * mp.log(mp.pi)
    return (half - 1) * mp.log(k) - half * mp.log(2 * mp.pi) - _log_iv(mp, half - 1, k)


def _check_order(nu) -> float:
    """``nu`` as a float, or a ``ValueError`` unless finite and >= 0."""
    nu = float(nu)
    if not (np.isfinite(nu) and nu >= 0):
        raise ValueError(f"nu must be a finite number >= 0, got {nu}")
    return nu


def _check_dim(d) -> int:
    """``d`` as an int, or a ``ValueError`` unless an integer >= 2."""
    if isinstance(d, bool) or int(d) != d or int(d) < 2:
        raise ValueError(f"d must be an integer >= 2, got {d!r}")
    return int(d)


def _check_arg(x, name: str) -> float:
    """``x`` as a float, or a ``ValueError`` naming ``name`` unless finite and >= 0."""
    x = float(x)
    if not (np.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {x}")
    return x


def log_iv(nu, x) -> float:
    """``log I_nu(x)`` at 50 digits, rounded to float64 (``-inf`` at x = 0 for nu > 0)."""
    mp = _mpmath()
    nu, x = _check_order(nu), _check_arg(x, "x")
    with mp.workdps(DIGITS + _GUARD):
        return _round(_log_iv(mp, mp.mpf(nu), mp.mpf(x)))


def bessel_ratio(nu, x) -> float:
    """``I_{nu+1}(x) / I_nu(x)`` at 50 digits, rounded to float64."""
    mp = _mpmath()
    nu, x = _check_order(nu), _check_arg(x, "x")
    with mp.workdps(DIGITS + _GUARD):
        return _round(_ratio(mp, mp.mpf(nu), mp.mpf(x)))


def log_vmf_normalizer(d, kappa) -> float:
    """``log C_d(kappa)`` at 50 digits (its finite limit at kappa = 0), rounded to float64."""
    mp = _mpmath()
    d, kappa = _check_dim(d), _check_arg(kappa, "kappa")
    with mp.workdps(DIGITS + _GUARD):
        return _round(_log_c(mp, d, mp.mpf(kappa)))


def mean_resultant_length(d, kappa) -> float:
    """``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` at 50 digits, rounded to float64."""
    d = _check_dim(d)
    return bessel_ratio(d / 2 - 1, kappa)


# ---------------------------------------------------------------------------------------
# Loss and gradient
# ---------------------------------------------------------------------------------------


@dataclass
class OracleResult:
    """Everything the oracle computes for one batch, rounded to float64.

    ``losses`` has shape (2N,) (view-1 anchors first); ``loss`` is ``sum_a w_a loss_a`` and
    ``loss_sum`` is ``sum_a loss_a``; ``grads`` maps ``"z1"``, ``"z2"`` (and for the PCL
    ``"kappa1"``, ``"kappa2"``; for NT-Xent ``"temperature"``, 0-d) to the gradient of
    ``loss``. For the PCL, ``log_c`` and ``mean_length`` hold ``log C_d(kappa_b)`` and
    ``A_d(kappa_b)`` of the 2N views.
    """

    losses: np.ndarray
    loss: float
    loss_sum: float
    grads: dict = field(default_factory=dict)
    log_c: np.ndarray | None = None
    mean_length: np.ndarray | None = None


def _rows(z, name: str) -> np.ndarray:
    """``z`` as float64, finite and without a zero row; ``ValueError`` naming ``name``."""
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} must be finite")
    if np.any(np.all(z == 0, axis=1)):
        raise ValueError(f"{name} has a zero-norm embedding")
    return z


def _views(z1, z2):
    """The two views as float64 arrays, checked (the rules of the contract, section :ref:`7 <contract-inputs>`, named)."""
    z1 = np.asarray(z1, dtype=np.float64)
    z2 = np.asarray(z2, dtype=np.float64)
    for name, z in (("z1", z1), ("z2", z2)):
        if z.ndim != 2:
            raise ValueError(f"{name} must be 2-D with shape (N, d), got shape {z.shape}")
        _rows(z, name)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have equal shapes, got {z1.shape} and {z2.shape}")
    n, d = z1.shape
    if n < 1 or d < 2:
        raise ValueError(f"z1 and z2 need N >= 1 and d >= 2, got shape {z1.shape}")
    return np.concatenate([z1, z2], axis=0), n, d


def _extra_rows(extra_z, d: int):
    """The extra candidates' rows (the contract, section :ref:`3 <contract-loss>`), checked; an
    empty list for none."""
    if extra_z is None:
        return np.zeros((0, d))
    rows = np.asarray(extra_z, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != d:
        raise ValueError(f"extra_z must have shape (M, d) = (M, {d}), got {rows.shape}")
    return _rows(rows, "extra_z")


def _concentrations(named: dict, shapes: dict) -> np.ndarray:
    """The named concentrations, concatenated as float64; checked against ``shapes``."""
    for name, part in named.items():
        if np.shape(part) != shapes[name]:
            raise ValueError(f"{name} must have shape {shapes[name]}, got {np.shape(part)}")
    k = np.concatenate([np.asarray(part, np.float64).reshape(-1) for part in named.values()])
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise ValueError(f"{' and '.join(named)} must be finite and >= 0")
    return k


def _weights(mp, weights, n2: int):
    """The 2N anchor weights as exact mpf: 1/(2N), 1, or the float64 values given."""
    if isinstance(weights, str):
        if weights == "mean":
            return [mp.mpf(1) / n2] * n2
        if weights == "sum":
            return [mp.mpf(1)] * n2
        raise ValueError(f"weights must be 'mean', 'sum' or an array of shape (2N,), got {weights!r}")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n2,):
        raise ValueError(f"weights must have shape (2N,) = ({n2},), got {w.shape}")
    return [_exact(mp, v, "weights") for v in w]


def _directions(mp, rows):
    """Unit directions and norms of float64 rows, as mpf."""
    exact = [[mp.mpf(float(v)) for v in row] for row in rows]
    norms = [mp.sqrt(mp.fdot(r, r)) for r in exact]
    return [[v / s for v in r] for r, s in zip(exact, norms)], norms


def _cosines(mp, mu, extra):
    """``c_ab`` of each view ``a`` with every candidate ``b``: the 2N views, then the extra ones."""
    n2 = len(mu)
    cos = [[mp.mpf(0)] * (n2 + len(extra)) for _ in range(n2)]
    for a in range(n2):
        cos[a][a] = mp.mpf(1)
        for b in range(a + 1, n2):
            cos[a][b] = cos[b][a] = mp.fdot(mu[a], mu[b])
        for j, nu in enumerate(extra):
            cos[a][n2 + j] = mp.fdot(mu[a], nu)
    return cos


def _softmax(mp, n: int, candidates: int, logit, w):
    """Per-anchor losses and the residuals ``W_ab`` (the contract, section :ref:`4 <contract-gradient>`)."""
    n2 = 2 * n
    losses = []
    resid = [[mp.mpf(0)] * candidates for _ in range(n2)]  # W_ab
    for a in range(n2):
        p = (a + n) % n2
        others = [b for b in range(candidates) if b not in (a, p)]
        f_ap = logit(a, p)
        delta = {b: logit(a, b) - f_ap for b in others}
        # loss_a = log(1 + sum_{b != a, p} exp(delta_ab)), all digits kept for a tiny loss
        loss = mp.log1p(mp.fsum(mp.exp(delta[b]) for b in others))
        losses.append(loss)
        probs = {b: mp.exp(delta[b] - loss) for b in others}
        for b in others:
            resid[a][b] = w[a] * probs[b]
        resid[a][p] = -w[a] * mp.fsum(probs.values())
    return losses, resid


def _grad_z(mp, resid, scale, mu, norms, candidates):
    """``dL/dz_a``: ``G_ab + G_ba`` over the views, ``G_ab`` alone over the extra candidates."""
    n2, d = len(mu), len(mu[0])
    g = [[resid[a][b] * scale[b] for b in range(len(candidates))] for a in range(n2)]
    grad_z = []
    for a in range(n2):
        coef = [g[a][b] + g[b][a] if b < n2 else g[a][b] for b in range(len(candidates))]
        g_mu = [mp.fdot(coef, [c[i] for c in candidates]) for i in range(d)]
        radial = mp.fdot(mu[a], g_mu)
        grad_z.append([(g_mu[i] - radial * mu[a][i]) / norms[a] for i in range(d)])
    return grad_z


def _evaluate(mp, z, n: int, d: int, kappa, inv_tau, weights, extra):
    """Sections 3-4 at the working precision; ``kappa`` is None for NT-Xent, and holds the
    extra candidates' concentrations after the views' for the PCL; ``extra`` holds their rows
    (M x d, M = 0 for none)."""
    n2 = 2 * n
    mu, norms = _directions(mp, z)
    extra_mu = _directions(mp, extra)[0]
    cos = _cosines(mp, mu, extra_mu)
    count = n2 + len(extra_mu)
    if kappa is not None:
        log_c = [_log_c(mp, d, k) for k in kappa]
        length = [_ratio(mp, mp.mpf(d) / 2 - 1, k) for k in kappa[:n2]]
        scale = kappa
    else:
        log_c = length = None
        scale = [inv_tau] * count

    def logit(a, b):
        if kappa is None:
            return cos[a][b] * inv_tau
        return log_c[b] + kappa[b] * cos[a][b]

    losses, resid = _softmax(mp, n, count, logit, weights)
    grad_z = _grad_z(mp, resid, scale, mu, norms, mu + extra_mu)
    if kappa is not None:
        grad_k = [mp.fsum(resid[a][b] * (cos[a][b] - length[b]) for a in range(n2) if a != b)
                  for b in range(n2)]
    else:  # dL/dtau = -(1/tau^2) sum_a sum_{b != a} W_ab c_ab
        grad_k = -mp.fsum(resid[a][b] * cos[a][b] for a in range(n2) for b in range(count) if b != a) * inv_tau**2
    total = mp.fsum(wa * la for wa, la in zip(weights, losses))
    return losses, total, mp.fsum(losses), grad_z, grad_k, None if log_c is None else log_c[:n2], length


def _to_f64(values) -> np.ndarray:
    """Each mpf rounded once to float64."""
    return np.array([_round(v) for v in values], dtype=np.float64)


def pcl(z1, z2, kappa1, kappa2, *, weights="mean", extra_z=None, extra_kappa=None) -> OracleResult:
    """The PCL, its per-anchor losses and its gradient, at 50 digits, rounded to float64.

    ``weights`` is ``"mean"`` (``w_a = 1/(2N)`` exactly), ``"sum"`` or an array of shape (2N,).
    ``extra_z`` (M x d) and ``extra_kappa`` (M) are extra candidates (the contract, section
    :ref:`3 <contract-loss>`), held constant: they join every anchor's denominator.
    """
    mp = _mpmath()
    z, n, d = _views(z1, z2)
    extra = _extra_rows(extra_z, d)
    if (extra_z is None) != (extra_kappa is None):
        raise ValueError("extra_z and extra_kappa are given together or not at all")
    named = {"kappa1": kappa1, "kappa2": kappa2, **({} if extra_kappa is None else {"extra_kappa": extra_kappa})}
    k = _concentrations(named, {"kappa1": (n,), "kappa2": (n,), "extra_kappa": (len(extra),)})
    with mp.workdps(DIGITS + _GUARD):
        kappa = [mp.mpf(float(v)) for v in k]
        losses, total, total_sum, gz, gk, log_c, length = _evaluate(
            mp, z, n, d, kappa, None, _weights(mp, weights, 2 * n), extra)
        gz = np.array([_to_f64(row) for row in gz], dtype=np.float64).reshape(len(gz), d)
        gk = _to_f64(gk)
        return OracleResult(
            _to_f64(losses), _round(total), _round(total_sum),
            {"z1": gz[:n], "z2": gz[n:], "kappa1": gk[:n], "kappa2": gk[n:]},
            _to_f64(log_c), _to_f64(length),
        )


def ntxent(z1, z2, *, temperature: float, weights="mean", extra_z=None) -> OracleResult:
    """NT-Xent with temperature ``temperature`` (a float64), as :func:`pcl`; ``grads`` also holds
    ``"temperature"``, ``dL/dtau``."""
    mp = _mpmath()
    z, n, d = _views(z1, z2)
    extra = _extra_rows(extra_z, d)
    tau = float(temperature)
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {tau}")
    with mp.workdps(DIGITS + _GUARD):
        losses, total, total_sum, gz, g_tau, _, _ = _evaluate(
            mp, z, n, d, None, 1 / mp.mpf(tau), _weights(mp, weights, 2 * n), extra)
        gz = np.array([_to_f64(row) for row in gz], dtype=np.float64).reshape(len(gz), d)
        return OracleResult(_to_f64(losses), _round(total), _round(total_sum),
                            {"z1": gz[:n], "z2": gz[n:], "temperature": np.float64(_round(g_tau))})
