"""Independent 50-digit mpmath oracle for probcon_ref (the contract's sections 1, 3, 4, 5).

This module deliberately imports nothing from ``probcon_ref``: it is the trusted
reference the float64/float32 array implementation is tested against.  Every
quantity is evaluated in mpmath at ``mp.dps = 50``; float64 inputs are taken as
exact binary values (``mpf(float(v))``) and results are rounded to float64 only at
the very end.

It is independent of the package's own 50-digit oracle, ``probcon_ref.testing.oracle``
(which computes the golden vectors), on purpose: the two were written separately and
share no code, so that each checks the other. A slip in carrying the contract into mpmath shows
as a disagreement between them (``tests/test_vectors.py`` compares them on golden cases,
to one unit in the last place) instead of being copied into both the golden vectors and
the test data. Keep them apart: a fix in one is checked, not copied, by the other.

Public functions
----------------
log_iv(nu, x)                      log I_nu(x)                       (mpf)
bessel_ratio(nu, x)                I_{nu+1}(x) / I_nu(x)             (mpf)
mean_resultant_length(d, kappa)    A_d(kappa) = bessel_ratio(d/2-1, kappa)
log_vmf_normalizer(d, kappa)       log C_d(kappa)                    (mpf)
pcl_loss_and_grad(z1, z2, kappa1, kappa2, weights="mean", diag=None)
    -> loss_none (2N,), total, grad_z1, grad_z2, grad_kappa1, grad_kappa2   (float64)
ntxent_loss_and_grad(z1, z2, tau, weights="mean", diag=None)
    -> loss_none (2N,), total, grad_z1, grad_z2                             (float64)
ntxent_temperature_grad(z1, z2, tau, weights="mean")   dL/dtau             (float64)
    All of these take extra candidates (the contract's section 3.1): ``extra_z``
    (M x d), and for the PCL ``extra_kappa`` (M,).
pcl_loss_and_grad_mp / ntxent_loss_and_grad_mp   the same, unrounded mpf lists
independent_log_iv(nu, x)          Debye / Hankel expansions (no besseli), where they apply
self_check()                       identities, limits, cross-checks and finite differences
                                   (python tests/reference/mp_reference.py runs it)

``weights`` is ``"mean"`` (w_a = 1/(2N), exact), ``"sum"`` (w_a = 1), ``None``
(same as ``"mean"``) or a float64 array of shape (2N,) holding w_a for the anchors
of view 1 first, then view 2.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import mpmath
import numpy as np
from mpmath import mp, mpf

mp.dps = 50

# Guard digits used inside the special functions; results are returned at mp.dps.
_GUARD = 20
# mpmath's besseli sums the 0F1 series unless its large-x asymptotic series converges;
# for order ~2000 and x ~ 2e4..5e4 neither is quick and the default term limit (~6000)
# raises NoConvergence. A larger limit makes it sum the series (<= ~1.5 s a point); the
# result is cross-checked against the Debye expansion in self_check().
_MAXTERMS = 10**6


def _mpf(v) -> mpf:
    """Exact conversion of a float64 (or Python number) to mpf."""
    return mpf(float(v))


# --------------------------------------------------------------------------
# Special functions
# --------------------------------------------------------------------------

def log_iv(nu, x) -> mpf:
    """log I_nu(x) for nu >= 0, x >= 0 (x = 0: 0 for nu = 0, -inf otherwise)."""
    nu = _mpf(nu)
    x = _mpf(x)
    if x < 0 or nu < 0:
        raise ValueError("log_iv needs nu >= 0 and x >= 0")
    if x == 0:
        return mpf(0) if nu == 0 else mpf("-inf")
    with mp.workdps(mp.dps + _GUARD):
        if nu == 0:
            # I_0(x) = 1 + x^2/4 + ...: keep the digits of log(1 + tiny)
            # via log1p of (I_0 - 1) from its own series when x is small.
            if x < mpf("1e-5"):
                s = mpf(0)
                term = mpf(1)
                q = x * x / 4
                k = 0
                while True:
                    k += 1
                    term = term * q / (k * k)
                    s += term
                    if term < s * mpf(10) ** (-(mp.dps + 5)):
                        break
                r = mpmath.log1p(s)
            else:
                r = mpmath.log(mpmath.besseli(0, x, maxterms=_MAXTERMS))
        else:
            r = mpmath.log(mpmath.besseli(nu, x, maxterms=_MAXTERMS))
    return +r


def bessel_ratio(nu, x) -> mpf:
    """I_{nu+1}(x) / I_nu(x) (0 at x = 0)."""
    nu = _mpf(nu)
    x = _mpf(x)
    if x == 0:
        return mpf(0)
    with mp.workdps(mp.dps + _GUARD):
        r = (mpmath.besseli(nu + 1, x, maxterms=_MAXTERMS)
             / mpmath.besseli(nu, x, maxterms=_MAXTERMS))
    return +r


def mean_resultant_length(d, kappa) -> mpf:
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)."""
    return bessel_ratio(mpf(d) / 2 - 1, kappa)


def log_vmf_normalizer(d, kappa) -> mpf:
    """log C_d(kappa) = nu log k - (d/2) log(2 pi) - log I_nu(k), nu = d/2 - 1."""
    d = int(d)
    if d < 2:
        raise ValueError("d >= 2")
    k = _mpf(kappa)
    with mp.workdps(mp.dps + _GUARD):
        half = mpf(d) / 2
        nu = half - 1
        if k == 0:
            r = mpmath.loggamma(half) - mpmath.log(2) - half * mpmath.log(mpmath.pi)
        else:
            r = nu * mpmath.log(k) - half * mpmath.log(2 * mpmath.pi) - log_iv(nu, k)
    return +r


# --------------------------------------------------------------------------
# Independent cross-check routes (used only by self_check)
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _debye_polys(nterms):
    """Exact rational coefficients of the Debye polynomials u_0..u_{nterms-1}(t):
    u_{k+1} = t^2 (1 - t^2)/2 u_k' + 1/8 int_0^t (1 - 5 s^2) u_k(s) ds."""
    u = [Fraction(1)]
    out = [tuple(u)]
    for _ in range(1, nterms):
        du = [i * u[i] for i in range(1, len(u))]
        a = [Fraction(0)] * (len(u) + 4)
        for i, c in enumerate(du):
            a[i + 2] += c / 2
            a[i + 4] -= c / 2
        for i, c in enumerate(u):
            a[i + 1] += c / (8 * (i + 1))
            a[i + 3] -= 5 * c / (8 * (i + 3))
        while len(a) > 1 and a[-1] == 0:
            a.pop()
        u = a
        out.append(tuple(u))
    return tuple(out)


def _debye_log_iv(nu, x, nterms=30) -> mpf:
    """Debye uniform expansion of log I_nu(nu z), z = x/nu; an independent route for
    large nu (truncation error ~ 1e-60 or less for nu >= 500, 30 terms)."""
    nu = mpf(nu)
    x = mpf(x)
    with mp.workdps(mp.dps + _GUARD):
        z = x / nu
        sq = mpmath.sqrt(1 + z * z)
        t = 1 / sq
        eta = sq + mpmath.log(z / (1 + sq))
        total = mpf(0)
        for k, u in enumerate(_debye_polys(nterms)):
            uk = mpmath.polyval([mpf(c.numerator) / c.denominator for c in reversed(u)], t)
            total += uk / nu ** k
        r = nu * eta - mpmath.log(2 * mpmath.pi * nu) / 2 - mpmath.log(1 + z * z) / 4 + mpmath.log(total)
    return +r


def _hankel_log_iv(nu, x, nterms=40) -> mpf:
    """Large-x asymptotic log I_nu(x) ~ x - log(2 pi x)/2 + log sum (-1)^k a_k/x^k."""
    nu = mpf(nu)
    x = mpf(x)
    with mp.workdps(mp.dps + _GUARD):
        mu4 = 4 * nu * nu
        term = mpf(1)
        s = mpf(1)
        for k in range(1, nterms):
            term = -term * (mu4 - (2 * k - 1) ** 2) / (k * 8 * x)
            s += term
        r = x - mpmath.log(2 * mpmath.pi * x) / 2 + mpmath.log(s)
    return +r


def _cf_ratio(nu, x) -> mpf:
    """Gauss continued fraction I_{nu+1}/I_nu = 1/(2(nu+1)/x + 1/(2(nu+2)/x + ...)),
    evaluated backward from a depth that is doubled until it stops changing."""
    nu = mpf(nu)
    x = mpf(x)
    with mp.workdps(mp.dps + _GUARD):
        def depth(K):
            r = mpf(0)
            for k in range(K, 0, -1):
                r = 1 / (2 * (nu + k) / x + r)
            return r
        K = int(2 * x) + 100
        prev = depth(K)
        while True:
            K *= 2
            cur = depth(K)
            if abs(cur - prev) <= abs(cur) * mpf(10) ** (-(mp.dps + 5)):
                break
            prev = cur
    return +cur


def independent_log_iv(nu, x):
    """log I_nu(x) by a route that does not use mpmath.besseli, where one applies:
    Debye expansion for nu >= 500 (any x > 0), Hankel large-x expansion for
    nu <= 100 and x >= 1e4. Returns None elsewhere."""
    if x > 0 and nu >= 500:
        return _debye_log_iv(nu, x)
    if nu <= 100 and x >= 1e4:
        return _hankel_log_iv(nu, x, nterms=80)
    return None


# --------------------------------------------------------------------------
# Loss and analytic gradient (the contract, sections 3 and 4)
# --------------------------------------------------------------------------

def _weights(weights, n2):
    if weights is None or (isinstance(weights, str) and weights == "mean"):
        return [mpf(1) / n2] * n2
    if isinstance(weights, str) and weights == "sum":
        return [mpf(1)] * n2
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n2,):
        raise ValueError("weights must have shape (2N,)")
    return [_mpf(v) for v in w]


def _diagnose(diag, a, p, others, P, loss, c, kappa_list, logC, inv_tau):
    """Rounding-sensitivity estimates a float64 implementation cannot beat.

    Each logit F_ab carries an absolute rounding error of about eps * s_ab, with
    s_ab = |log C_d(kappa_b)| + kappa_b (1 + |c_ab|) (PCL) or (1 + |c_ab|)/tau (NT-Xent).
    diag["cond_loss"] (one per anchor): sum_{b != a} |P_ab - Y_ab| s_ab / loss_a, the
        amplification into the relative error of loss_a (0 where loss_a is 0 in float64).
    diag["grad_cond"] (max over anchors): max_b P_ab [(1 - P_ab) s_ab + sum_{b' != b} P_ab' s_ab'],
        the bound on |dP_ab|/eps; divide by max |P - Y| (diag["max_abs_PmY"]) to get the
        rough amplification into a gradient block's max-norm relative error.
    """
    def sens(b):
        if kappa_list is not None:
            return abs(logC[b]) + kappa_list[b] * (1 + abs(c[a][b]))
        return (1 + abs(c[a][b])) * abs(inv_tau)

    cand = others + [p]
    Pall = dict(P)
    Pall[p] = mpmath.exp(-loss)
    s = {b: sens(b) for b in cand}
    one_minus_Pp = -mpmath.expm1(-loss)
    S = mpmath.fsum(P[b] * s[b] for b in others) + one_minus_Pp * s[p]
    diag.setdefault("cond_loss", []).append(float(S / loss) if float(loss) != 0 else 0.0)
    tot = mpmath.fsum(Pall[b] * s[b] for b in cand)
    gc = max([Pall[b] * ((1 - Pall[b]) * s[b] + (tot - Pall[b] * s[b])) for b in others]
             + [Pall[p] * (one_minus_Pp * s[p] + (tot - Pall[p] * s[p]))])
    diag["grad_cond"] = max(diag.get("grad_cond", 0.0), float(gc))
    pmy = max([P[b] for b in others] + [one_minus_Pp])
    diag["max_abs_PmY"] = max(diag.get("max_abs_PmY", 0.0), float(pmy))


def _extras(extra_z, extra_kappa, d, pcl):
    """Extra candidates (the contract's section 3.1) as mpf: unit directions and, for the PCL,
    concentrations, log-normalisers. Empty lists when there are none."""
    if extra_z is None:
        if extra_kappa is not None:
            raise ValueError("extra_kappa needs extra_z")
        return [], [], []
    ez = np.asarray(extra_z, dtype=np.float64)
    if ez.ndim != 2 or ez.shape[1] != d:
        raise ValueError("extra_z must have shape (M, d)")
    rows = [[_mpf(v) for v in row] for row in ez]
    nu = []
    for row in rows:
        nrm = mpmath.sqrt(mpmath.fsum(v * v for v in row))
        if nrm == 0:
            raise ValueError("extra_z has a zero row")
        nu.append([v / nrm for v in row])
    if not pcl:
        return nu, [], []
    if extra_kappa is None or np.shape(extra_kappa) != (len(nu),):
        raise ValueError("extra_kappa must have shape (M,)")
    lam = [_mpf(v) for v in np.asarray(extra_kappa, np.float64)]
    return nu, lam, [log_vmf_normalizer(d, k) for k in lam]


def _core(z1, z2, kappa_list, tau, weights, diag=None, extra_z=None, extra_kappa=None):
    """Shared forward/backward. kappa_list is None for NT-Xent.

    Extra candidates (``extra_z`` M x d, and ``extra_kappa`` for the PCL) join every
    anchor's denominator and get no gradient; they are kept apart from the 2N x 2N
    matrices: ``X[a][j]`` is anchor a's residual on extra candidate j.
    Returns (N, losses, total, gz, gk, dL/dtau); dL/dtau is None for the PCL.
    If ``diag`` is a dict it receives float64 conditioning diagnostics (see _diagnose;
    not with extra candidates)."""
    z1 = np.asarray(z1, dtype=np.float64)
    z2 = np.asarray(z2, dtype=np.float64)
    N, d = z1.shape
    assert z2.shape == (N, d) and N >= 1 and d >= 2
    n2 = 2 * N
    z = [[_mpf(v) for v in row] for row in np.concatenate([z1, z2], axis=0)]
    norms = [mpmath.sqrt(mpmath.fsum(v * v for v in row)) for row in z]
    mu = [[v / nrm for v in row] for row, nrm in zip(z, norms)]
    c = [[None] * n2 for _ in range(n2)]
    for a in range(n2):
        for b in range(a + 1, n2):
            c[a][b] = c[b][a] = mpmath.fdot(mu[a], mu[b])
    w = _weights(weights, n2)
    pos = [(a + N) % n2 for a in range(n2)]
    nu, lam, logC_x = _extras(extra_z, extra_kappa, d, kappa_list is not None)
    assert diag is None or not nu, "diagnostics are not defined with extra candidates"
    cx = [[mpmath.fdot(mu[a], v) for v in nu] for a in range(n2)]  # mu_a . nu_j

    if kappa_list is not None:
        logC = [log_vmf_normalizer(d, k) for k in kappa_list]
        A = [mean_resultant_length(d, k) for k in kappa_list]
        scale = kappa_list  # dF_ab/dc_ab = kappa_b
        scale_x = lam

        def F(a, b):
            return logC[b] + kappa_list[b] * c[a][b]

        def Fx(a, j):
            return logC_x[j] + lam[j] * cx[a][j]
    else:
        inv_tau = 1 / tau
        scale = [inv_tau] * n2
        scale_x = [inv_tau] * len(nu)

        def F(a, b):
            return c[a][b] * inv_tau

        def Fx(a, j):
            return cx[a][j] * inv_tau

    losses = []
    W = [[mpf(0)] * n2 for _ in range(n2)]
    X = [[mpf(0)] * len(nu) for _ in range(n2)]
    for a in range(n2):
        p = pos[a]
        others = [b for b in range(n2) if b != a and b != p]
        Fap = F(a, p)
        delta = {b: F(a, b) - Fap for b in others}
        delta_x = [Fx(a, j) - Fap for j in range(len(nu))]
        delta[p] = mpf(0)
        # loss_a = log sum_{b != a} exp(delta_ab), written as log1p of the
        # non-positive terms so a tiny loss keeps all its digits.
        s = mpmath.fsum(mpmath.exp(delta[b]) for b in others) + mpmath.fsum(mpmath.exp(t) for t in delta_x)
        loss = mpmath.log1p(s)
        losses.append(loss)
        # P_ab = exp(delta_ab - loss_a)
        P = {b: mpmath.exp(delta[b] - loss) for b in others}
        Px = [mpmath.exp(t - loss) for t in delta_x]
        if diag is not None:
            _diagnose(diag, a, p, others, P, loss, c, kappa_list, logC if kappa_list is not None else None,
                      None if kappa_list is not None else inv_tau)
        # W_ab = w_a (P_ab - Y_ab); the positive's entry as -w_a * sum of the others
        # (not w_a (P_ap - 1), which cancels when the match is confident).
        for b in others:
            W[a][b] = w[a] * P[b]
        X[a] = [w[a] * q for q in Px]
        W[a][p] = -w[a] * (mpmath.fsum(P[b] for b in others) + mpmath.fsum(Px))

    total = mpmath.fsum(wa * la for wa, la in zip(w, losses))

    # G_ab = W_ab * scale_b ; dL/dmu_a = sum_b (G_ab + G_ba) mu_b + sum_j X_aj scale_j nu_j
    G = [[W[a][b] * scale[b] for b in range(n2)] for a in range(n2)]
    gz = []
    for a in range(n2):
        coef = [G[a][b] + G[b][a] for b in range(n2)]
        gmu = [mpmath.fdot(coef, [mu[b][i] for b in range(n2)])
               + mpmath.fsum(X[a][j] * scale_x[j] * nu[j][i] for j in range(len(nu)))
               for i in range(d)]
        proj = mpmath.fdot(mu[a], gmu)
        gz.append([(gmu[i] - proj * mu[a][i]) / norms[a] for i in range(d)])

    gk = gtau = None
    if kappa_list is not None:
        gk = [mpmath.fsum(W[a][b] * (c[a][b] - A[b]) for a in range(n2) if a != b)
              for b in range(n2)]
    else:
        # F = c / tau for every candidate: dL/dtau = -tau^-2 (sum W_ab c_ab + sum X_aj mu_a.nu_j)
        inner = mpmath.fsum(W[a][b] * c[a][b] for a in range(n2) for b in range(n2) if a != b)
        inner += mpmath.fsum(X[a][j] * cx[a][j] for a in range(n2) for j in range(len(nu)))
        gtau = -inner / (tau * tau)
    return N, losses, total, gz, gk, gtau


def _f64(x):
    return np.array([float(v) for v in x], dtype=np.float64)


def _f64_2d(rows):
    return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)


def _kappas(kappa1, kappa2):
    return [_mpf(v) for v in np.concatenate([np.asarray(kappa1, np.float64).reshape(-1),
                                             np.asarray(kappa2, np.float64).reshape(-1)])]


def pcl_loss_and_grad_mp(z1, z2, kappa1, kappa2, weights="mean", extra_z=None, extra_kappa=None):
    """PCL at 50 digits, unrounded: (losses, total, gz, gkappa) as mpf lists over the 2N views."""
    _, losses, total, gz, gk, _ = _core(z1, z2, _kappas(kappa1, kappa2), None, weights, None, extra_z, extra_kappa)
    return losses, total, gz, gk


def ntxent_loss_and_grad_mp(z1, z2, tau, weights="mean", extra_z=None):
    """NT-Xent at 50 digits, unrounded: (losses, total, gz)."""
    _, losses, total, gz, _, _ = _core(z1, z2, None, _mpf(tau), weights, None, extra_z)
    return losses, total, gz


def pcl_loss_and_grad(z1, z2, kappa1, kappa2, weights="mean", diag=None, extra_z=None, extra_kappa=None):
    """PCL at 50 digits. Returns (loss_none (2N,), total, gz1 (N,d), gz2 (N,d),
    gkappa1 (N,), gkappa2 (N,)), all rounded to float64 (total as a Python float).
    Pass a dict as ``diag`` to receive conditioning diagnostics (see _core)."""
    N, losses, total, gz, gk, _ = _core(z1, z2, _kappas(kappa1, kappa2), None, weights, diag, extra_z, extra_kappa)
    return (_f64(losses), float(total), _f64_2d(gz[:N]), _f64_2d(gz[N:]),
            _f64(gk[:N]), _f64(gk[N:]))


def ntxent_loss_and_grad(z1, z2, tau, weights="mean", diag=None, extra_z=None):
    """NT-Xent(tau) at 50 digits. Returns (loss_none (2N,), total, gz1, gz2) as float64."""
    N, losses, total, gz, _, _ = _core(z1, z2, None, _mpf(tau), weights, diag, extra_z)
    return _f64(losses), float(total), _f64_2d(gz[:N]), _f64_2d(gz[N:])


def ntxent_temperature_grad(z1, z2, tau, weights="mean", extra_z=None):
    """dL/dtau of NT-Xent(tau) at 50 digits, rounded to float64."""
    return float(_core(z1, z2, None, _mpf(tau), weights, None, extra_z)[5])


# --------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------

def _pcl_total_mp(zz1, zz2, kk1, kk2, weights):
    """Forward PCL total for mpf-valued inputs (for finite differences; no float rounding)."""
    N = len(zz1)
    d = len(zz1[0])
    z = zz1 + zz2
    kap = kk1 + kk2
    n2 = 2 * N
    w = _weights(weights, n2) if not isinstance(weights, list) else weights
    mu = []
    for row in z:
        nrm = mpmath.sqrt(mpmath.fsum(v * v for v in row))
        mu.append([v / nrm for v in row])
    tot = mpf(0)
    for a in range(n2):
        p = (a + N) % n2
        Fs = {b: log_vmf_normalizer_mp(d, kap[b]) + kap[b] * mpmath.fdot(mu[a], mu[b])
              for b in range(n2) if b != a}
        # textbook form at high precision is fine for FD
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in Fs.values()))
        tot += w[a] * (lse - Fs[p])
    return tot


def log_vmf_normalizer_mp(d, k):
    """log C_d for an mpf kappa (no float64 conversion), for finite differences."""
    half = mpf(d) / 2
    nu = half - 1
    if k == 0:
        return mpmath.loggamma(half) - mpmath.log(2) - half * mpmath.log(mpmath.pi)
    return nu * mpmath.log(k) - half * mpmath.log(2 * mpmath.pi) - mpmath.log(mpmath.besseli(nu, k, maxterms=_MAXTERMS))


def self_check(verbose=True):
    """Run the oracle's own consistency checks; raises AssertionError on failure."""
    def say(*args):
        if verbose:
            print(*args)

    tol = mpf(10) ** -40

    # 1. special-function limits and identities
    assert log_iv(0, 0) == 0 and log_iv(3, 0) == mpf("-inf")
    assert bessel_ratio(5, 0) == 0
    for d in (2, 3, 64, 4096):
        lim = log_vmf_normalizer(d, 0)
        near = log_vmf_normalizer(d, 1e-30)
        assert abs(lim - near) < mpf("1e-25"), (d, lim, near)
    # d = 3: C_3(k) = k / (4 pi sinh k)
    for k in (1e-3, 1.0, 50.0, 1e4):
        exact = mpmath.log(_mpf(k) / (4 * mpmath.pi * mpmath.sinh(_mpf(k))))
        assert abs(log_vmf_normalizer(3, k) - exact) < tol * max(1, abs(exact))
    # half-integer order 1/2: I_{1/2} = sqrt(2/(pi x)) sinh x, ratio A_3 = coth x - 1/x
    for x in (1e-8, 0.3, 7.0, 1e5):
        X = _mpf(x)
        with mp.workdps(100):  # coth x - 1/x cancels for small x
            exact = mpmath.coth(X) - 1 / X
        assert abs(bessel_ratio(0.5, x) - exact) < tol * exact
    say("special-function identities: ok")

    # 2. independent routes for log I_nu and the ratio
    worst = mpf(0)
    for nu, x in [(2047, 1e-300), (2047, 1.0), (2047, 2047.0), (2047, 1e4), (2047, 1e6),
                  (2047, 25118.86431509582), (2046.5, 46415.88833612782),
                  (2046.5, 3e3), (1023.5, 500.0), (1000.1, 1e5), (511, 1e-10)]:
        ref = _debye_log_iv(nu, x)
        err = abs(log_iv(nu, x) - ref) / max(1, abs(ref))
        worst = max(worst, err)
    say("log_iv vs Debye expansion (nu >= 511), worst scaled diff:", mpmath.nstr(worst, 3))
    assert worst < mpf("1e-30")
    worst = mpf(0)
    for nu, x in [(0, 1e6), (0.5, 1e5), (3.3, 1e4), (29.9, 1e6), (100, 1e6), (2047, 1e6)]:
        ref = _hankel_log_iv(nu, x, nterms=80)
        err = abs(log_iv(nu, x) - ref) / max(1, abs(ref))
        worst = max(worst, err)
    say("log_iv vs large-x Hankel expansion, worst scaled diff:", mpmath.nstr(worst, 3))
    assert worst < mpf("1e-30")
    worst = mpf(0)
    for nu, x in [(0, 1e-5), (0, 3.0), (0.25, 100.0), (29.9, 30.0), (63.5, 1e-3),
                  (2047, 1e-100), (2047, 2047.0), (1000.1, 5e3), (10, 1e4), (2047, 3e4)]:
        ref = _cf_ratio(nu, x)
        err = abs(bessel_ratio(nu, x) - ref) / ref
        worst = max(worst, err)
    say("ratio vs Gauss continued fraction, worst rel diff:", mpmath.nstr(worst, 3))
    assert worst < tol
    # precision stability: dps 50 vs dps 90
    worst = mpf(0)
    for nu in (0, 0.5, 29.9, 2047):
        for x in (1e-300, 1e-3, 1.0, 40.0, 2047.0, 1e5, 1e6):
            a = log_iv(nu, x)
            r = bessel_ratio(nu, x)
            with mp.workdps(90):
                b = log_iv(nu, x)
                rb = bessel_ratio(nu, x)
            worst = max(worst, abs(a - b) / max(1, abs(b)), abs(r - rb) / rb)
    say("dps 50 vs dps 90, worst:", mpmath.nstr(worst, 3))
    assert worst < tol

    # 3. loss identities
    rng = np.random.default_rng(1234)
    z1 = rng.standard_normal((3, 5))
    z2 = rng.standard_normal((3, 5))
    for tau in (0.1, 0.5, 1.0):
        # kappa_b = 1/tau exactly at 50 digits (1/0.1 is not a float64, so use _core directly)
        T = _mpf(tau)
        _, lp, tp, gp, _, _ = _core(z1, z2, [1 / T] * 6, None, "mean")
        _, ln, tn, gn, _, _ = _core(z1, z2, None, T, "mean")
        diff = max([abs(x - y) for x, y in zip(lp, ln)] + [abs(tp - tn)]
                   + [abs(x - y) for r, s_ in zip(gp, gn) for x, y in zip(r, s_)])
        assert diff < tol * 10, (tau, diff)
    say("PCL(kappa = 1/tau) == NT-Xent(tau): ok")
    one = pcl_loss_and_grad(z1[:1], z2[:1], [3.0], [0.0])
    assert np.all(one[0] == 0) and one[1] == 0
    assert all(np.all(g == 0) for g in one[2:])
    say("N = 1: loss and gradients exactly 0: ok")

    # 4. gradients vs central finite differences in mpmath (all at 50 digits, unrounded)
    N, d = 2, 3
    z1 = rng.standard_normal((N, d))
    z2 = rng.standard_normal((N, d))
    k1 = np.array([0.7, 4.0])
    k2 = np.array([2.5, 0.0])  # kappa = 0: one-sided difference at the boundary
    for weights in ("mean", np.array([0.5, 1.5, 0.25, 2.0])):
        _, total, gz, gk = pcl_loss_and_grad_mp(z1, z2, k1, k2, weights)
        Z = [[_mpf(v) for v in r] for r in np.concatenate([z1, z2])]
        K = _kappas(k1, k2)
        h = mpf(10) ** -18

        def tot(Zs, Ks):
            return _pcl_total_mp(Zs[:N], Zs[N:], Ks[:N], Ks[N:], weights)

        assert abs(tot(Z, K) - total) < tol
        worst = mpf(0)
        for a in range(2 * N):
            for i in range(d):
                Zp = [r[:] for r in Z]
                Zm = [r[:] for r in Z]
                Zp[a][i] += h
                Zm[a][i] -= h
                num = (tot(Zp, K) - tot(Zm, K)) / (2 * h)
                worst = max(worst, abs(num - gz[a][i]))
            def tk(e, a=a):
                Ks = K[:]
                Ks[a] += e
                return tot(Z, Ks)
            if K[a] == 0:
                num = (-3 * tk(0) + 4 * tk(h) - tk(2 * h)) / (2 * h)
            else:
                num = (tk(h) - tk(-h)) / (2 * h)
            worst = max(worst, abs(num - gk[a]))
        say(f"gradient vs mpmath finite differences (weights={'mean' if isinstance(weights, str) else 'custom'}), "
            f"worst abs diff: {mpmath.nstr(worst, 3)}")
        assert worst < mpf("1e-25")
    # tiny-loss regime (loss ~ 1e-22): the analytic gradient must keep its digits
    # (W_ap from the sum of the other P's). Finite differences at 100 digits.
    zt1 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    zt2 = zt1 + 1e-9 * rng.standard_normal((N, d))
    kt1 = np.array([50.0, 55.0])
    kt2 = np.array([52.0, 60.0])
    _, tt, gzt, gkt = pcl_loss_and_grad_mp(zt1, zt2, kt1, kt2, "mean")
    assert 1e-30 < tt < 1e-15, tt
    with mp.workdps(100):
        Z = [[_mpf(v) for v in r] for r in np.concatenate([zt1, zt2])]
        K = _kappas(kt1, kt2)
        ht = mpf(10) ** -40

        def tot(Zs, Ks):
            return _pcl_total_mp(Zs[:N], Zs[N:], Ks[:N], Ks[N:], "mean")

        num_z = []
        for a in range(2 * N):
            for i in range(d):
                Zp = [r[:] for r in Z]
                Zm = [r[:] for r in Z]
                Zp[a][i] += ht
                Zm[a][i] -= ht
                num_z.append(((tot(Zp, K) - tot(Zm, K)) / (2 * ht), gzt[a][i]))
        num_k = []
        for a in range(2 * N):
            Kp = K[:]
            Km = K[:]
            Kp[a] += ht
            Km[a] -= ht
            num_k.append(((tot(Z, Kp) - tot(Z, Km)) / (2 * ht), gkt[a]))
    for name, pairs in (("z", num_z), ("kappa", num_k)):
        scale = max(abs(g) for _, g in pairs)
        err = max(abs(n - g) for n, g in pairs) / scale
        say(f"tiny-loss ({mpmath.nstr(tt, 3)}) {name}-gradient vs 100-digit finite differences, "
            f"rel to block max: {mpmath.nstr(err, 3)}")
        assert err < mpf("1e-25")

    # NT-Xent gradient too
    _, total, gz = ntxent_loss_and_grad_mp(z1, z2, 0.5, "sum")
    Z = [[_mpf(v) for v in r] for r in np.concatenate([z1, z2])]

    def tot_nt(Zs):
        n2 = 2 * N
        mu = [[v / mpmath.sqrt(mpmath.fsum(u * u for u in r)) for v in r] for r in Zs]
        t = mpf(0)
        for a in range(n2):
            Fs = {b: 2 * mpmath.fdot(mu[a], mu[b]) for b in range(n2) if b != a}
            t += mpmath.log(mpmath.fsum(mpmath.exp(v) for v in Fs.values())) - Fs[(a + N) % n2]
        return t

    worst = mpf(0)
    for a in range(2 * N):
        for i in range(d):
            Zp = [r[:] for r in Z]
            Zm = [r[:] for r in Z]
            Zp[a][i] += h
            Zm[a][i] -= h
            worst = max(worst, abs((tot_nt(Zp) - tot_nt(Zm)) / (2 * h) - gz[a][i]))
    say("NT-Xent gradient vs finite differences, worst abs diff:", mpmath.nstr(worst, 3))
    assert worst < mpf("1e-25")

    # Extra candidates: the z-gradient (none flows to the bank) and dL/dtau against finite
    # differences of the textbook loss with the bank in every denominator.
    bank = rng.standard_normal((3, d))
    tau = mpf("0.3")
    _, _, _, gz, _, gtau = _core(z1, z2, None, tau, "sum", None, bank)
    nus = [[_mpf(v) for v in r] for r in bank]

    def tot_bank(Zs, t):
        n2 = 2 * N
        unit = [[v / mpmath.sqrt(mpmath.fsum(u * u for u in r)) for v in r] for r in Zs + nus]
        total = mpf(0)
        for a in range(n2):
            Fs = {b: mpmath.fdot(unit[a], unit[b]) / t for b in range(len(unit)) if b != a}
            total += mpmath.log(mpmath.fsum(mpmath.exp(v) for v in Fs.values())) - Fs[(a + N) % n2]
        return total

    worst = mpf(0)
    for a in range(2 * N):
        for i in range(d):
            Zp = [r[:] for r in Z]
            Zm = [r[:] for r in Z]
            Zp[a][i] += h
            Zm[a][i] -= h
            worst = max(worst, abs((tot_bank(Zp, tau) - tot_bank(Zm, tau)) / (2 * h) - gz[a][i]))
    worst = max(worst, abs((tot_bank(Z, tau + h) - tot_bank(Z, tau - h)) / (2 * h) - gtau))
    say("extra candidates: NT-Xent z- and tau-gradient vs finite differences, worst abs diff:", mpmath.nstr(worst, 3))
    assert worst < mpf("1e-25")
    one = pcl_loss_and_grad(z1[:1], z2[:1], [3.0], [0.5], "mean", None, bank, [1.0, 0.0, 2.0])
    assert np.all(one[0] > 0)
    say("N = 1 with extra candidates: every loss > 0: ok")
    return True

if __name__ == "__main__":
    self_check()
