"""Regenerate the committed 50-digit reference data in tests/data/.

Run from anywhere:  python tests/reference/make_reference.py [--jobs J]
All values come from tests/reference/mp_reference.py (mpmath, mp.dps = 50), rounded to
float64 at the end. Inputs are drawn from fixed seeds, so a rerun on the same machine with
the same NumPy writes the same numbers. On another CPU or NumPy version the inputs may differ
in their last bits (NumPy's Gaussian sampler, np.logspace, 10.0 ** x and np.linalg.norm use
libm or SIMD kernels that round differently), and the outputs follow them. That is harmless:
the files store the inputs beside the outputs, and the tests read both and never rebuild the
inputs, so the committed data hold on every machine. It runs mp_reference.self_check() first and
cross-checks every special-function point against a route that avoids mpmath.besseli
where one exists; about 30-60 s on 2 cores.

Layout
======

tests/data/special_ref.npz
--------------------------
Flat, paired float64 arrays (one entry per grid point):

  nu, x, log_iv, ratio       log I_nu(x) and I_{nu+1}(x)/I_nu(x), for
                             nu in NU_VALUES (33 orders in [0, 2047]) times
                             x in X_GRID (0, 1e-300, 1e-100, 1e-30, 1e-10, 1e-5, 1e-3,
                             61 log-spaced points 1e-2..1e6) plus, for nu > 0,
                             x in nu * {0.5, 0.9, 0.99, 1, 1.01, 1.1, 2}.
                             log_iv = -inf at x = 0 for nu > 0 (0 for nu = 0);
                             ratio = 0 at x = 0.
  d, kappa, log_c, A         log C_d(kappa) and A_d(kappa) = I_{d/2}/I_{d/2-1}, for
                             d in D_VALUES (19 dimensions, 2..4096) times the same
                             X_GRID as kappa, plus kappa in nu * {0.5, 1, 2}
                             (nu = d/2 - 1 > 0). d is stored as float64 holding integers.
                             kappa = 0 gives the finite limit of log C_d.

tests/data/loss_ref.npz
-----------------------
  cases                      1-D str array of case names, in generation order.
  For each case name C, keys "C__<field>":
    kind                     0-d str: "pcl" or "ntxent"
    reduction                0-d str: the reduction the case is meant to exercise
                             ("mean", "sum", "none" or "weights"); all of
                             none/mean/sum are stored regardless.
    z1, z2                   (N, d) float64 inputs
    kappa1, kappa2           (N,) float64           [pcl only]
    tau                      0-d float64            [ntxent only]
    weights                  (2N,) float64, anchors of view 1 first [only if the
                             case has per-anchor weights]
    loss_none                (2N,) per-anchor losses (view-1 anchors first)
    loss_mean, loss_sum      0-d float64
    grad_z1_mean, grad_z2_mean, grad_kappa1_mean, grad_kappa2_mean
    grad_z1_sum,  grad_z2_sum,  grad_kappa1_sum,  grad_kappa2_sum
                             gradients of the mean / sum reduction
                             (grad_kappa* absent for ntxent)
    loss_weighted, grad_z1_weighted, grad_z2_weighted,
    grad_kappa1_weighted, grad_kappa2_weighted
                             total sum_a w_a loss_a and its gradients [only if weights]
    cond_loss                (2N,) float64: amplification of logit rounding into the
                             relative error of loss_a: sum_{b != a} |P_ab - Y_ab| s_ab / loss_a,
                             s_ab = |log C_d(kappa_b)| + kappa_b (1 + |c_ab|)  (PCL) or
                             (1 + |c_ab|)/tau (NT-Xent); 0 where loss_a is 0 in float64.
                             No float64 implementation can promise much better than
                             ~eps*cond_loss (eps = 2^-53) relative error.
    grad_cond                0-d float64: rough amplification of logit rounding into a
                             gradient block's max-norm relative error:
                             max_ab P_ab[(1-P_ab) s_ab + sum_{b'!=b} P_ab' s_ab'] / max_ab |P_ab - Y_ab|.
                             (Both come from the mean-reduction run.)
  Load with np.load(path) (no pickles: strings are unicode arrays).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from probcon_ref.testing.regimes import keys, required

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mp_reference as ref  # noqa: E402

DATA = os.path.join(os.path.dirname(HERE), "data")

NU_VALUES = (
    [0, 1, 2, 3, 5, 10, 15, 20, 29, 30, 31, 40, 63, 64, 100, 255, 511, 1023, 2047]
    + [0.5, 1.5, 2.5, 14.5, 30.5, 63.5, 1023.5, 2046.5]
    + [0.25, 0.7, 3.3, 29.9, 47.123, 1000.1]
)
D_VALUES = [2, 3, 4, 5, 8, 16, 31, 32, 33, 64, 65, 128, 129, 256, 512, 1024, 2047, 2048, 4096]
X_GRID = np.concatenate([
    np.array([0.0, 1e-300, 1e-100, 1e-30, 1e-10, 1e-5, 1e-3]),
    np.logspace(-2, 6, 61),
])
NEAR_NU = [0.5, 0.9, 0.99, 1.0, 1.01, 1.1, 2.0]
NEAR_NU_C = [0.5, 1.0, 2.0]
EPS = 2.0 ** -53


# --------------------------------------------------------------------------
# special functions
# --------------------------------------------------------------------------

def _special_point(args):
    """(log_iv, ratio, scaled diff of log_iv vs an independent route or -1,
    rel diff of ratio vs the Gauss continued fraction or -1)."""
    nu, x = args
    liv = ref.log_iv(nu, x)
    rat = ref.bessel_ratio(nu, x)
    alt = ref.independent_log_iv(nu, x)
    e1 = -1.0 if alt is None else float(abs(liv - alt) / max(1, abs(alt)))
    e2 = -1.0
    if 0 < x <= 1e3:
        e2 = float(abs(rat - ref._cf_ratio(nu, x)) / rat)
    return float(liv), float(rat), e1, e2


def _logc_point(args):
    d, k = args
    return float(ref.log_vmf_normalizer(d, k)), float(ref.mean_resultant_length(d, k))


def special_grid():
    pts = []
    for nu in NU_VALUES:
        xs = list(X_GRID)
        if nu > 0:
            xs += [nu * f for f in NEAR_NU]
        pts += [(float(nu), float(x)) for x in xs]
    cpts = []
    for d in D_VALUES:
        nu = d / 2 - 1
        ks = list(X_GRID)
        if nu > 0:
            ks += [nu * f for f in NEAR_NU_C]
        cpts += [(d, float(k)) for k in ks]
    return pts, cpts


# --------------------------------------------------------------------------
# loss cases
# --------------------------------------------------------------------------

def _unit(rng, n, d):
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _views(rng, N, d, noise=0.5):
    """Random pairs: view 2 is view 1 plus noise, both with norms in [0.5, 2]."""
    base = rng.standard_normal((N, d))
    z1 = base + noise * rng.standard_normal((N, d))
    z2 = base + noise * rng.standard_normal((N, d))
    return z1, z2


def _logk(rng, n, lo, hi):
    return 10.0 ** rng.uniform(lo, hi, n)


def _confident(rng, N, d, K, eps=1e-9):
    """Pairs along orthogonal basis directions, views nearly identical, kappa ~ K:
    loss ~ 2(N-1) exp(-K)."""
    e = np.eye(d)[:N]
    z1 = e * rng.uniform(0.5, 2.0, (N, 1))
    z2 = (e + eps * rng.standard_normal((N, d))) * rng.uniform(0.5, 2.0, (N, 1))
    k1 = K * (1 + 0.01 * rng.standard_normal(N))
    k2 = K * (1 + 0.01 * rng.standard_normal(N))
    return z1, z2, k1, k2


def build_cases():
    """Return a list of dicts: name, kind, reduction, z1, z2, kappa1/kappa2 or tau, weights,
    and the regimes (probcon_ref.testing.regimes) each case exercises; together they cover
    every regime the contract, section 6 names (checked here, not stored in the data)."""
    cases = []

    def pcl(name, seed, make, reduction="mean", weights=None, regimes=()):
        rng = np.random.default_rng(seed)
        z1, z2, k1, k2 = make(rng)
        c = dict(name=name, kind="pcl", reduction=reduction, regimes=keys(*regimes),
                 z1=np.ascontiguousarray(z1, np.float64), z2=np.ascontiguousarray(z2, np.float64),
                 kappa1=np.asarray(k1, np.float64), kappa2=np.asarray(k2, np.float64))
        if weights is not None:
            c["weights"] = np.asarray(weights(rng, z1.shape[0]), np.float64)
        cases.append(c)

    def ntx(name, seed, N, d, tau, reduction="mean", weights=None, z=None, regimes=()):
        rng = np.random.default_rng(seed)
        z1, z2 = _views(rng, N, d) if z is None else z
        c = dict(name=name, kind="ntxent", reduction=reduction, regimes=keys(*regimes),
                 z1=np.asarray(z1, np.float64), z2=np.asarray(z2, np.float64),
                 tau=np.float64(tau))
        if weights is not None:
            c["weights"] = np.asarray(weights(rng, N), np.float64)
        cases.append(c)

    def rand(N, d, lo=-1, hi=2):
        def make(rng):
            z1, z2 = _views(rng, N, d)
            return z1, z2, _logk(rng, N, lo, hi), _logk(rng, N, lo, hi)
        return make

    # random batches across dimensions
    pcl("rand_N4_d2", 101, rand(4, 2), regimes=("random", "d2"))
    pcl("rand_N8_d3", 102, rand(8, 3), reduction="sum", regimes=("random", "d3", "odd-d"))
    pcl("rand_N6_d5", 103, rand(6, 5), reduction="none", regimes=("random", "odd-d"))
    pcl("rand_N16_d16", 104, rand(16, 16), regimes=("random",))
    pcl("rand_N16_d64", 105, rand(16, 64, -1, 3), regimes=("random",))
    pcl("rand_N4_d129", 106, rand(4, 129, 0, 3), regimes=("random", "odd-d", "large-order"))
    pcl("rand_N3_d512", 107, rand(3, 512, 0, 3), regimes=("random", "large-order"))
    pcl("rand_N2_d4096", 108, lambda r: (*_views(r, 2, 4096, noise=1.0),
                                          _logk(r, 2, 0, 1.5), _logk(r, 2, 0, 1.5)),
        regimes=("random", "large-d"))
    # unrelated views, kappa around the order nu = 2047 (Bessel transition region)
    pcl("kappa_near_nu_N2_d4096", 109, lambda r: (r.standard_normal((2, 4096)),
                                                   r.standard_normal((2, 4096)),
                                                   r.uniform(1500, 2500, 2), r.uniform(1500, 2500, 2)),
        regimes=("large-d",))

    # kappa regimes
    pcl("kappa_all_zero_N5_d8", 201,
        lambda r: (*_views(r, 5, 8), np.zeros(5), np.zeros(5)), regimes=("kappa-zero",))
    pcl("kappa_mixed_0_1e-8_1e3_1e6_N4_d16", 202,
        lambda r: (*_views(r, 4, 16, noise=0.1), np.array([0.0, 1e-8, 1e3, 1e6]),
                   np.array([1e6, 1e3, 0.0, 1e-8])), regimes=("kappa-zero", "tiny-kappa", "huge-kappa"))
    pcl("kappa_tiny_1e-8_N4_d31", 203,
        lambda r: (*_views(r, 4, 31), np.full(4, 1e-8), 1e-8 * r.uniform(0.5, 2, 4)),
        regimes=("tiny-kappa", "odd-d"))
    pcl("kappa_1e6_loss_underflow_N4_d33", 204,
        lambda r: (*_views(r, 4, 33, noise=1e-3), 1e6 * r.uniform(0.5, 1.5, 4),
                   1e6 * r.uniform(0.5, 1.5, 4)), regimes=("huge-kappa", "tiny-loss", "odd-d"))
    pcl("kappa_mixed_N2_d2048", 205,
        lambda r: (*_views(r, 2, 2048, noise=0.05), np.array([0.0, 1e3]), np.array([1e6, 1e-8])),
        regimes=("kappa-zero", "tiny-kappa", "huge-kappa", "large-d"))

    # raw norms
    def scaled(N, d, s):
        def make(rng):
            z1, z2 = _views(rng, N, d)
            z1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True) * s * rng.uniform(0.5, 2, (N, 1))
            z2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True) * s * rng.uniform(0.5, 2, (N, 1))
            return z1, z2, _logk(rng, N, -1, 2), _logk(rng, N, -1, 2)
        return make

    pcl("norms_1e-6_N4_d16", 301, scaled(4, 16, 1e-6), regimes=("tiny-norm",))
    pcl("norms_1e6_N4_d16", 302, scaled(4, 16, 1e6), regimes=("huge-norm",))

    def norms_mixed(rng):
        z1, z2 = _views(rng, 4, 5)
        z1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True) * np.array([[1e-6], [1e6], [1.0], [1e-6]])
        z2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True) * np.array([[1e6], [1e-6], [1e6], [1.0]])
        return z1, z2, _logk(rng, 4, -1, 2), _logk(rng, 4, -1, 2)

    pcl("norms_mixed_1e-6_1e6_N4_d5", 303, norms_mixed, regimes=("tiny-norm", "huge-norm", "odd-d"))

    # degenerate geometry
    def identical(rng):
        z1 = rng.standard_normal((4, 8))
        return z1, z1.copy(), _logk(rng, 4, -1, 3), _logk(rng, 4, -1, 3)

    def antipodal(rng):
        z1 = rng.standard_normal((4, 5))
        return z1, -z1, _logk(rng, 4, -1, 3), _logk(rng, 4, -1, 3)

    pcl("identical_views_N4_d8", 401, identical, regimes=("identical",))
    pcl("antipodal_views_N4_d5", 402, antipodal, regimes=("antipodal", "odd-d"))
    pcl("N1_d7", 403, rand(1, 7), regimes=("n1", "odd-d"))
    pcl("N1_d2_kappa0", 404, lambda r: (*_views(r, 1, 2), np.zeros(1), np.array([5.0])),
        regimes=("n1", "d2", "kappa-zero"))

    # confident matches: tiny losses
    pcl("confident_loss_1e-20_N3_d8", 501, lambda r: _confident(r, 3, 8, 47.0), regimes=("tiny-loss",))
    pcl("confident_loss_1e-250_N3_d8", 502, lambda r: _confident(r, 3, 8, 580.0), reduction="none",
        regimes=("tiny-loss",))
    pcl("confident_loss_1e-300_N4_d4", 503, lambda r: _confident(r, 4, 4, 700.0), regimes=("tiny-loss",))

    def confident_random(rng):
        # pair directions with pairwise cosine 1/2 (randomly rotated), views agree to
        # 1e-7, kappa ~ 1e3: loss ~ exp(-kappa/2) ~ 1e-217
        N, d = 4, 16
        e = np.eye(d)
        dirs = (e[0] + e[1:N + 1]) / np.sqrt(2.0)
        Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
        dirs = dirs @ Q
        z1 = dirs * 3.0
        z2 = (dirs + 1e-7 * rng.standard_normal((N, d))) * 0.3
        return z1, z2, 1e3 * rng.uniform(0.95, 1.05, N), 1e3 * rng.uniform(0.95, 1.05, N)

    pcl("confident_cos0.5_kappa1e3_N4_d16", 504, confident_random, regimes=("tiny-loss",))

    # per-anchor weights
    pcl("weights_N5_d8", 601, rand(5, 8),
        reduction="weights", weights=lambda r, N: r.uniform(0.0, 2.0, 2 * N), regimes=("random",))
    pcl("weights_some_zero_N4_d3", 602, rand(4, 3),
        reduction="weights", weights=lambda r, N: np.array([0.0, 1.0, 0.5, 0.0, 2.0, 0.0, 0.25, 1.0]),
        regimes=("random", "d3", "odd-d"))

    # NT-Xent and the exact special case kappa_b = 1/tau
    ntx("ntxent_tau0.1_N8_d16", 701, 8, 16, 0.1, regimes=("random",))
    ntx("ntxent_tau0.5_N4_d3", 702, 4, 3, 0.5, reduction="sum", regimes=("random", "d3", "odd-d"))
    ntx("ntxent_tau1.0_N6_d64", 703, 6, 64, 1.0, regimes=("random",))
    ntx("ntxent_tau0.5_weights_N4_d5", 704, 4, 5, 0.5,
        reduction="weights", weights=lambda r, N: r.uniform(0.0, 2.0, 2 * N),
        regimes=("random", "odd-d"))
    ntx("ntxent_tau0.1_N1_d4", 705, 1, 4, 0.1, regimes=("n1",))
    # same inputs as ntxent_tau0.5_N4_d3 with kappa = 2 = 1/0.5 exactly: equal losses
    ref_case = next(c for c in cases if c["name"] == "ntxent_tau0.5_N4_d3")
    cases.append(dict(name="pcl_kappa2_equals_ntxent_tau0.5_N4_d3", kind="pcl", reduction="mean",
                      regimes=keys("equal-kappa", "d3", "odd-d"),
                      z1=ref_case["z1"].copy(), z2=ref_case["z2"].copy(),
                      kappa1=np.full(4, 2.0), kappa2=np.full(4, 2.0)))
    missing = required("pcl") - {r for c in cases for r in c["regimes"]}
    if missing:
        raise SystemExit(f"the reference cases miss the regimes {sorted(missing)}")
    return cases


def evaluate_case(c):
    t0 = time.time()
    out = {"kind": np.str_(c["kind"]), "reduction": np.str_(c["reduction"]),
           "z1": c["z1"], "z2": c["z2"]}
    pcl = c["kind"] == "pcl"
    if pcl:
        out["kappa1"], out["kappa2"] = c["kappa1"], c["kappa2"]

        def run(w, diag=None):
            r = ref.pcl_loss_and_grad(c["z1"], c["z2"], c["kappa1"], c["kappa2"], w, diag)
            return r[0], r[1], dict(z1=r[2], z2=r[3], kappa1=r[4], kappa2=r[5])
    else:
        out["tau"] = np.float64(c["tau"])

        def run(w, diag=None):
            r = ref.ntxent_loss_and_grad(c["z1"], c["z2"], c["tau"], w, diag)
            return r[0], r[1], dict(z1=r[2], z2=r[3])

    variants = [("mean", "mean"), ("sum", "sum")]
    if "weights" in c:
        out["weights"] = c["weights"]
        variants.append(("weighted", c["weights"]))
    for tag, w in variants:
        diag = {} if tag == "mean" else None
        loss_none, total, grads = run(w, diag)
        if diag is not None:
            out["cond_loss"] = np.array(diag["cond_loss"], dtype=np.float64)
            pmy = diag["max_abs_PmY"]
            out["grad_cond"] = np.float64(diag["grad_cond"] / pmy if pmy > 0 else 0.0)
        out["loss_none"] = loss_none
        out[f"loss_{tag}"] = np.float64(total)
        for k, g in grads.items():
            out[f"grad_{k}_{tag}"] = g
    return c["name"], out, time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    os.makedirs(DATA, exist_ok=True)
    t_start = time.time()
    ref.self_check(verbose=False)  # never write data from a broken oracle
    print(f"mp_reference.self_check passed ({time.time() - t_start:.1f} s)")

    pts, cpts = special_grid()
    with ProcessPoolExecutor(args.jobs) as ex:
        sp = list(ex.map(_special_point, pts, chunksize=16))
        cp = list(ex.map(_logc_point, cpts, chunksize=16))
        t_special = time.time() - t_start
        cases = build_cases()
        results = list(ex.map(evaluate_case, cases))

    np.savez_compressed(
        os.path.join(DATA, "special_ref.npz"),
        nu=np.array([p[0] for p in pts]), x=np.array([p[1] for p in pts]),
        log_iv=np.array([s[0] for s in sp]), ratio=np.array([s[1] for s in sp]),
        d=np.array([float(p[0]) for p in cpts]), kappa=np.array([p[1] for p in cpts]),
        log_c=np.array([s[0] for s in cp]), A=np.array([s[1] for s in cp]),
    )
    print(f"special_ref.npz: {len(pts)} (nu, x) points, {len(cpts)} (d, kappa) points, "
          f"{t_special:.1f} s")
    e1 = [s[2] for s in sp if s[2] >= 0]
    e2 = [s[3] for s in sp if s[3] >= 0]
    print(f"  log_iv vs Debye/Hankel (no besseli) on {len(e1)} points: worst {max(e1):.1e}")
    print(f"  ratio vs continued fraction on {len(e2)} points: worst {max(e2):.1e}")
    if max(e1) > 1e-40 or max(e2) > 1e-40:
        raise SystemExit("independent cross-check failed")

    flat = {"cases": np.array([r[0] for r in results])}
    for name, out, dt in results:
        for k, v in out.items():
            flat[f"{name}__{k}"] = v
        print(f"  {name:40s} {str(out['kind']):6s} loss_mean={float(out['loss_mean']):.3e} "
              f"eps*cond_loss={EPS * out['cond_loss'].max():.1e} "
              f"eps*grad_cond={EPS * out['grad_cond']:.1e} ({dt:.2f} s)")
    np.savez_compressed(os.path.join(DATA, "loss_ref.npz"), **flat)
    print(f"loss_ref.npz: {len(results)} cases")
    print(f"total time {time.time() - t_start:.1f} s with {args.jobs} process(es)")


if __name__ == "__main__":
    main()
