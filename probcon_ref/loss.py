"""The probabilistic contrastive loss and NT-Xent (the contract, section :ref:`3 <contract-loss>`), block by block.

Read top to bottom, this file follows the derivation: directions, cosines, the logits
(from the concentrations, in the form that rounds less, or from the compensated product at
large confidence), the per-anchor loss computed from differences, and the driver that runs
the anchors in blocks of rows and hands each block's softmax to :mod:`probcon_ref.gradient`.
The candidates are the views, then the batch's extra candidates if it has any. Every
function is written once against the array API standard and receives what it needs as
arguments: the namespace ``xp`` and the elementwise steps (this file's reference
:class:`ElementwiseSteps`, or CuPy's fused kernels) chosen once per call by the public
functions (:func:`probcon_ref.pcl_loss` and the others), after the input rules of
:mod:`probcon_ref._inputs`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import _arrays
from .gradient import GradientSums, block_gradient_sums, negative_weight_scale, positive_weights
from .special import NormalizerTerms, log_vmf_normalizer_terms_working, mean_resultant_length_working

__all__ = ["PCLGrads", "NTXentGrads", "NTXentTemperatureGrads", "Concentrations", "pcl_concentrations",
           "ntxent_concentrations", "ElementwiseSteps", "contrast_anchors", "contrast"]


class PCLGrads(NamedTuple):
    """Gradients of the reduced PCL with respect to each input, in that input's dtype.

    Fields ``z1``, ``z2`` (N x d) and ``kappa1``, ``kappa2`` (N). No equation: a container
    of what :eq:`eq-grad-z` and :eq:`eq-grad-kappa` give for each input.
    """

    z1: object
    z2: object
    kappa1: object
    kappa2: object


class NTXentGrads(NamedTuple):
    """Gradients of the reduced NT-Xent loss with respect to each view.

    Fields ``z1``, ``z2`` (N x d). No equation: a container of what :eq:`eq-grad-z` gives.
    """

    z1: object
    z2: object


class NTXentTemperatureGrads(NamedTuple):
    """Gradients of the reduced NT-Xent loss with respect to each view and to the temperature.

    Fields ``z1``, ``z2`` (N x d) and ``temperature`` (0-d, in the loss's dtype). No equation:
    a container of what :eq:`eq-grad-z` and :eq:`eq-grad-temperature` give.
    """

    z1: object
    z2: object
    temperature: object


# ---------------------------------------------------------------------------------------
# What distinguishes the two losses: the concentration of each candidate
# ---------------------------------------------------------------------------------------


class Concentrations(NamedTuple):
    """Per-candidate terms of the logits ``F_ab = shift_b + scale_b c_ab = peak_b - scale_b (1 - c_ab)``.

    PCL: ``scale_b = kappa_b``, ``shift_b = log C_d(kappa_b) - log C_d(0)`` and
    ``peak_b = shift_b + kappa_b``, the logit at cosine 1 (:class:`~probcon_ref.special.NormalizerTerms`,
    :eq:`eq-normalizer-shift`, :eq:`eq-normalizer-peak`): a constant shared by all candidates
    cancels in the softmax. NT-Xent: ``scale_b = 1/tau``, ``shift_b = -1/tau``, ``peak_b = 0``:
    its logits ``c_ab / tau`` less the constant ``1/tau``, which is the PCL with every
    ``kappa_b = 1/tau`` up to that constant. :func:`logits_from_terms` picks the form.
    """

    scale: object  # (2N,)
    shift: object  # (2N,)
    peak: object  # (2N,)


def pcl_concentrations(xp, kappa, d: int, steps) -> Concentrations:
    """``scale = kappa`` and the normaliser's two forms, for the PCL logits :eq:`eq-pcl-logits`."""
    terms = steps.normalizer_terms(d, kappa)
    return Concentrations(kappa, terms.shift, terms.peak)


def ntxent_concentrations(xp, temperature: float, like, count: int | None = None) -> Concentrations:
    """``scale = 1/tau``, ``shift = -1/tau``, ``peak = 0`` for every candidate :eq:`eq-ntxent-logits`.

    ``count`` candidates (by default one per row of ``like``), in the dtype and on the device
    of ``like``; the extra candidates share the temperature :eq:`eq-extra-logits`.
    """
    dev = _arrays.device_of(like)
    count = like.shape[0] if count is None else count
    scale = xp.full((count,), 1.0 / temperature, dtype=like.dtype, device=dev)
    return Concentrations(scale, -scale, xp.zeros((count,), dtype=like.dtype, device=dev))


def candidate_rows(xp, batch_rows, extra_rows):
    """Directions or concentrations of every candidate: the batch's ``2N``, then the ``M`` extra
    candidates' (``None``: none) :eq:`eq-extra-logits`. An extra candidate is no anchor: a
    column of the logits after the views', never a row."""
    return batch_rows if extra_rows is None else xp.concat([batch_rows, extra_rows], axis=0)


# ---------------------------------------------------------------------------------------
# Forward: from raw embeddings to per-anchor losses, one block of anchors at a time
# ---------------------------------------------------------------------------------------


def unit_directions(xp, z):
    """``mu_a = z_a / ||z_a||`` and ``||z_a||`` :eq:`eq-direction`.

    Rows are first divided by their largest magnitude, so that norms from 1e-30 to 1e30
    neither underflow nor overflow when squared.
    """
    scale = xp.max(xp.abs(z), axis=1, keepdims=True)
    y = z / scale
    length = xp.sqrt(xp.sum(y * y, axis=1, keepdims=True))
    return y / length, scale * length


def positive_index(xp, n: int, like):
    """``p(a) = (a + N) mod 2N`` for the ``2N`` anchors, on the device of ``like`` :eq:`eq-positive`."""
    return (xp.arange(2 * n, device=_arrays.device_of(like)) + n) % (2 * n)


def positive_cosines(xp, mu_rows, mu_pos):
    """``c_{a,p(a)} = mu_a . mu_{p(a)}``, one per anchor :eq:`eq-cosine`."""
    return xp.sum(mu_rows * mu_pos, axis=1)


def positive_distances(xp, mu_rows, mu_pos):
    """``1 - c_{a,p(a)} = ||mu_a - mu_{p(a)}||^2 / 2``, one per anchor :eq:`eq-positive-logit`.

    From the difference of the directions, not from the cosine: when the views agree the
    cosine rounds to within ``eps`` of 1 and ``1 - c`` would keep none of its digits, while
    the difference is exact for identical views and accurate to its own size otherwise.
    """
    diff = mu_rows - mu_pos
    return 0.5 * xp.sum(diff * diff, axis=1)


def logits_from_terms(xp, shift, peak, scale, c, h):
    """``F = shift + scale c`` or ``F = peak - scale h`` (``h = 1 - c``), whichever rounds less :eq:`eq-positive-logit`.

    The two are equal; each is a sum of two terms, and its rounding is about ``eps`` times
    the sum of their magnitudes: ``|shift| + scale |c|`` or ``|peak| + scale h``. Identical views
    at large ``kappa`` need the second (``peak`` is of size ``log kappa``, ``h`` is 0); nearly
    orthogonal views in high dimension, where ``peak`` is close to ``kappa``, the first.
    """
    by_peak = peak - scale * h
    by_shift = shift + scale * c
    return xp.where(xp.abs(peak) + scale * h <= xp.abs(shift) + scale * xp.abs(c), by_peak, by_shift)


def positive_logits(xp, c_pos, distance_pos, conc: Concentrations, pos):
    """``F_{a,p(a)}`` from the positive's cosine and distance :eq:`eq-positive-logit`."""
    return logits_from_terms(xp, xp.take(conc.shift, pos), xp.take(conc.peak, pos), xp.take(conc.scale, pos),
                             c_pos, distance_pos)


def logit_factors(xp, mu_anchors, mu, conc: Concentrations):
    """Anchor and candidate factors whose inner products are the logits :eq:`eq-pcl-logits`.

    ``F_ab = (mu_a, 1) . (scale_b mu_b, shift_b)``: ``kappa_b`` and ``log C_d(kappa_b) - log C_d(0)``
    for the PCL, ``1/tau`` and ``-1/tau`` for NT-Xent :eq:`eq-ntxent-logits`. The vMF
    log-density is linear in the direction, so one matrix product gives every logit
    :eq:`eq-cosine`.
    """
    ones = xp.ones((mu_anchors.shape[0], 1), dtype=mu.dtype, device=_arrays.device_of(mu))
    return (xp.concat([mu_anchors, ones], axis=1),
            xp.concat([conc.scale[:, None] * mu, conc.shift[:, None]], axis=1))


def block_logits(xp, anchor_rows, candidates):
    """``F_ab`` for a block of anchors and every candidate: one matrix product :eq:`eq-pcl-logits`."""
    return anchor_rows @ xp.matrix_transpose(candidates)


class SplitDirections(NamedTuple):
    """Directions split as ``mu = hi + lo`` for the compensated logits :eq:`eq-compensated-logits`.

    ``hi`` holds ``mu`` rounded to a multiple of ``2^-26``: every product of two such entries
    is a multiple of ``2^-52``, and so is every partial sum of a dot product, whose magnitude
    stays below ``||hi_a|| ||hi_b|| < 2``; float64 therefore holds it exactly, in any order of
    summation. ``lo = mu - hi`` (exact, below
    ``2^-27``). ``sq_hi = sum hi^2`` (exact) and ``sq_lo = ||mu||^2 - sq_hi = sum lo (hi + mu)``.
    """

    hi: object
    lo: object
    mu: object
    sq_hi: object
    sq_lo: object


def split_directions(xp, mu) -> SplitDirections:
    """:class:`SplitDirections` of the rows of ``mu`` (float64) :eq:`eq-compensated-logits`."""
    hi = xp.round(mu * 2.0**26) / 2.0**26
    lo = mu - hi
    return SplitDirections(hi, lo, mu, xp.sum(hi * hi, axis=1), xp.sum(lo * (hi + mu), axis=1))


def rows_of(split: SplitDirections, r0: int, r1: int) -> SplitDirections:
    """The anchors ``r0 .. r1 - 1`` of a :class:`SplitDirections` (no equation: slicing)."""
    return SplitDirections(*(part[r0:r1, ...] for part in split))


def compensated_block_logits(xp, anchors: SplitDirections, candidates: SplitDirections, conc: Concentrations):
    """``F_ab`` from ``c_ab`` and ``h_ab = 1 - c_ab = ||mu_a - mu_b||^2 / 2``, each to its own
    precision :eq:`eq-compensated-logits`.

    The plain product rounds ``kappa_b c_ab`` to about ``eps kappa_b``, which at large ``kappa``
    is far more than the logit of a near-duplicate candidate is worth. Here
    ``c_ab = hi_a . hi_b + (hi_a . lo_b + lo_a . mu_b)``: the first product is exact and the
    second small, and ``h_ab = ((|mu_a|^2 - c_ab) + (|mu_b|^2 - c_ab)) / 2`` is formed from the
    exact parts first, so nothing of size 1 is rounded before it cancels; the logit then takes
    the form of :func:`logits_from_terms` that rounds less. Costs two more
    matrix products (one of inner size ``2d``); used in float64 when some concentration
    exceeds :func:`probcon_ref._inputs.compensate_above`.
    """
    exact = anchors.hi @ xp.matrix_transpose(candidates.hi)
    small = (xp.concat([anchors.hi, anchors.lo], axis=1)
             @ xp.matrix_transpose(xp.concat([candidates.lo, candidates.mu], axis=1)))
    h = (0.5 * ((anchors.sq_hi[:, None] - exact) + (candidates.sq_hi[None, :] - exact))
         + (0.5 * (anchors.sq_lo[:, None] + candidates.sq_lo[None, :]) - small))
    return logits_from_terms(xp, conc.shift[None, :], conc.peak[None, :], conc.scale[None, :], exact + small, h)


def excluded_candidates(xp, rows: int, cols: int, self_col: int, pos_col: int, like):
    """Mask of the anchor itself (column ``self_col + i`` for row ``i``) and of its positive
    (column ``pos_col + i``) in a block of anchors whose rows are consecutive views of one
    half :eq:`eq-loss`. Two shifted identity matrices, no index comparisons."""
    dev = _arrays.device_of(like)
    return (xp.eye(rows, cols, k=self_col, dtype=xp.bool, device=dev)
            | xp.eye(rows, cols, k=pos_col, dtype=xp.bool, device=dev))


def logit_gaps(xp, logits_rows, pos_logit, excluded):
    """``delta_ab = F_ab - F_{a,p(a)}`` over the negatives ``b not in {a, p(a)}`` :eq:`eq-delta`.

    The anchor itself and its positive are set to ``-inf``: the anchor is never its own
    candidate :eq:`eq-loss`, and the positive's gap is exactly 0 by definition, so it is
    carried analytically rather than through the matrix.
    """
    gaps = logits_rows - pos_logit[:, None]
    return xp.where(excluded, _arrays.const(xp, -math.inf, gaps), gaps)


class AnchorTerms(NamedTuple):
    """Per-anchor quantities of the shifted softmax :eq:`eq-shifted-sum` :eq:`eq-loss-stable`.

    ``m_a = max(0, max_b delta_ab)`` (the positive's gap is 0); ``e[a, b] = exp(delta_ab - m_a)``
    over the negatives; ``s_a = sum_b e[a, b]``; ``denominator_a = exp(-m_a) + s_a``, the
    softmax denominator in the same shifted units.
    """

    m: object
    e: object
    s: object
    denominator: object


def anchor_terms(xp, gaps) -> AnchorTerms:
    """Shift the gaps by their maximum (and the positive's 0) and exponentiate :eq:`eq-shifted-sum`;
    a row holds every candidate's gap, the extra candidates' too :eq:`eq-extra-loss`."""
    m = xp.maximum(xp.max(gaps, axis=1), _arrays.const(xp, 0.0, gaps))
    e = xp.exp(gaps - m[:, None])
    s = xp.sum(e, axis=1)
    return AnchorTerms(m, e, s, xp.exp(-m) + s)


def per_anchor_loss(xp, terms: AnchorTerms):
    """``loss_a = m_a + log1p(s_a + expm1(-m_a))`` :eq:`eq-loss-stable`.

    Equal to ``-F_{a,p(a)} + log sum_{b != a} exp(F_ab)`` :eq:`eq-loss`. When the positive
    dominates (``m_a = 0``) this is ``log1p(s_a)``, exact for losses down to underflow;
    the textbook form subtracts two nearly equal numbers there.
    """
    return terms.m + xp.log1p(terms.s + xp.expm1(-terms.m))


# ---------------------------------------------------------------------------------------
# The elementwise steps (the reference; CuPy's fused kernels do the same in one launch each)
# ---------------------------------------------------------------------------------------


class ElementwiseSteps:
    """The steps of the loss that are elementwise (or row-wise) work, as array-API operations.

    This is the reference. On CuPy arrays the public functions pass
    :class:`probcon_ref.cupy.FusedSteps` instead, which does each step in one kernel and
    is tested against this class; the matrix products and the gradient stay common code.
    No equation of its own: each method cites the one it computes.
    """

    def __init__(self, xp):
        self.xp = xp

    def normalizer_terms(self, d: int, kappa) -> NormalizerTerms:
        """``log C_d(kappa) - log C_d(0)`` and that plus ``kappa`` :eq:`eq-normalizer-shift` :eq:`eq-normalizer-peak`."""
        return log_vmf_normalizer_terms_working(self.xp, d, kappa)

    def mean_resultant_length(self, d: int, kappa):
        """``A_d(kappa)`` :eq:`eq-mean-resultant`."""
        return mean_resultant_length_working(self.xp, d, kappa)

    def logit_gaps(self, logits_rows, pos_logit, self_col: int, pos_col: int):
        """:func:`logit_gaps` with the anchor itself (column ``self_col + i`` of row ``i``)
        and its positive (column ``pos_col + i``) excluded :eq:`eq-delta`.

        The fused version computes the gaps in place, in ``logits_rows``.
        """
        xp = self.xp
        excluded = excluded_candidates(xp, logits_rows.shape[0], logits_rows.shape[1], self_col, pos_col,
                                       logits_rows)
        return logit_gaps(xp, logits_rows, pos_logit, excluded)

    def anchor_terms(self, gaps) -> AnchorTerms:
        """:func:`anchor_terms` :eq:`eq-loss-stable`; the fused version exponentiates in place, in ``gaps``."""
        return anchor_terms(self.xp, gaps)


# ---------------------------------------------------------------------------------------
# The driver: anchors in blocks of rows, so memory is O(block x 2N)
# ---------------------------------------------------------------------------------------

#: Elements of one (block x 2N) matrix when ``block_size`` is not given: 2**24 (128 MiB in
#: float64). Batches with 2N up to 4096 run as a single block.
DEFAULT_BLOCK_ELEMENTS = 2**24


def check_block_size(block_size) -> int | None:
    """``None`` or a positive integer of any integer type; ``TypeError``/``ValueError`` otherwise.

    No equation: an input rule.
    """
    if block_size is None:
        return None
    message = "block_size must be a positive integer or None, got {}"
    try:
        value = _arrays.integer_scalar(block_size, "block_size")
    except TypeError as exc:
        got = "bool" if str(exc).endswith("bool") else type(block_size).__name__
        raise TypeError(message.format(got)) from None
    if value < 1:
        raise ValueError(message.format(value))
    return value


def row_blocks(candidates: int, block_size: int | None, n: int, matrices: int = 1):
    """``(start, stop)`` of each block of the ``2n`` anchor rows; no block straddles the two views.

    By default a block holds about :data:`DEFAULT_BLOCK_ELEMENTS` entries in each of the
    ``matrices`` (rows x candidates) arrays that are alive at once. No equation: the
    blocks only bound the memory; every equation holds row by row.
    """
    block_size = check_block_size(block_size)
    if block_size is None:
        block_size = max(1, DEFAULT_BLOCK_ELEMENTS // (candidates * matrices))
    return [(r, min(r + block_size, half + n)) for half in (0, n) for r in range(half, half + n, block_size)]


class Pass(NamedTuple):
    """What one pass over the anchors leaves: per-anchor quantities and the gradient's sums.

    No equation: a container (``losses`` are :eq:`eq-loss-stable`'s, ``w_pos``
    :eq:`eq-residual-positive`'s).
    """

    losses: object  # loss_a per anchor
    pos: object  # p(a) per anchor, local to the anchors
    c_pos: object  # c_{a,p(a)} per anchor
    w_pos: object  # W_{a,p(a)} per anchor, or None
    sums: GradientSums | None


def contrast_anchors(xp, mu_anchors, first: int, mu, conc: Concentrations, weights, steps: ElementwiseSteps, *,
                     with_grad: bool, block_size=None, compensated: bool = False) -> Pass:
    """Losses of the anchors ``mu_anchors`` against every candidate ``mu``, block by block, and
    the sums the gradient needs (:func:`probcon_ref.gradient.block_gradient_sums`).

    The anchors are the ``2n`` candidates ``first, ..., first + 2n - 1``: ``n`` views 1 then
    their ``n`` views 2, so that the positive of local anchor ``a`` is candidate
    ``first + p(a)``. The single-process loss passes the whole batch (``first = 0``), its
    extra candidates after it; the distributed loss one process's views against the
    candidates of all processes.
    ``compensated`` takes the logits from :func:`compensated_block_logits` (float64 only).
    No equation of its own: the driver that calls, block by block, the functions that cite
    theirs.
    """
    n = mu_anchors.shape[0] // 2
    pos = positive_index(xp, n, mu)
    mu_pos = xp.take(mu, first + pos, axis=0)
    c_pos = positive_cosines(xp, mu_anchors, mu_pos)
    pos_logit = positive_logits(xp, c_pos, positive_distances(xp, mu_anchors, mu_pos), conc, first + pos)
    logits, scaled_mu = _block_logit_maker(xp, mu_anchors, mu, conc, compensated)
    losses, w_pos, rows, total = [], [], [], None
    for r0, r1 in row_blocks(mu.shape[0], block_size, n, matrices=3 if compensated else 1):
        shift = n if r0 < n else -n  # positives of view-1 rows are n columns on, of view-2 rows n back
        # The logits live only as long as this call: the reference frees them once the gaps
        # exist, the fused kernels reuse their memory for the gaps and then for e.
        gaps = steps.logit_gaps(logits(r0, r1), pos_logit[r0:r1], first + r0, first + r0 + shift)
        terms = steps.anchor_terms(gaps)
        del gaps
        losses.append(per_anchor_loss(xp, terms))
        if with_grad:  # W_ab = row[a] e[a, b] over the negatives
            w_rows = weights[r0:r1]
            row = negative_weight_scale(xp, terms.denominator, w_rows)
            w_pos.append(positive_weights(xp, terms.s, terms.denominator, w_rows))
            block = block_gradient_sums(xp, terms.e, row, scaled_mu, mu_anchors[r0:r1, ...])
            rows.append(block.rows)  # each block's own anchors; the column sums add up across blocks
            total = block if total is None else GradientSums(None, total.columns + block.columns,
                                                             total.column_weights + block.column_weights)
    if not with_grad:
        return Pass(xp.concat(losses), pos, c_pos, None, None)
    sums = GradientSums(xp.concat(rows, axis=0), total.columns, total.column_weights)
    return Pass(xp.concat(losses), pos, c_pos, xp.concat(w_pos), sums)


def _block_logit_maker(xp, mu_anchors, mu, conc: Concentrations, compensated: bool):
    """``(logits(r0, r1), scale mu)``: the logits of anchors ``r0 .. r1 - 1`` against every candidate,
    plain :eq:`eq-pcl-logits` or compensated :eq:`eq-compensated-logits`."""
    if compensated:
        split_anchors, split_candidates = split_directions(xp, mu_anchors), split_directions(xp, mu)
        return (lambda r0, r1: compensated_block_logits(xp, rows_of(split_anchors, r0, r1), split_candidates, conc),
                conc.scale[:, None] * mu)
    anchor_factors, candidates = logit_factors(xp, mu_anchors, mu, conc)
    return (lambda r0, r1: block_logits(xp, anchor_factors[r0:r1, ...], candidates)), candidates[:, :mu.shape[1]]


def contrast(xp, batch, conc: Concentrations, steps: ElementwiseSteps, *, with_grad: bool, block_size=None):
    """``(mu, norm, candidates, Pass)``: the directions and norms of the views of a validated
    batch (:class:`probcon_ref._inputs.Batch`), the directions of every candidate (the views,
    then the batch's extra candidates, if any) and the :class:`Pass` of every view as an
    anchor against them; ``conc`` holds the concentrations of every candidate.

    No equation of its own: :func:`unit_directions`, :func:`candidate_rows`
    (:eq:`eq-extra-logits`), then :func:`contrast_anchors`.
    """
    mu, norm = unit_directions(xp, batch.z)
    extra = None if batch.extra_z is None else unit_directions(xp, batch.extra_z)[0]
    candidates = candidate_rows(xp, mu, extra)
    out = contrast_anchors(xp, mu, 0, candidates, conc, batch.weights, steps, with_grad=with_grad,
                           block_size=block_size, compensated=batch.compensated)
    return mu, norm, candidates, out
