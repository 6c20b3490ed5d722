"""The analytic gradient of the PCL and of NT-Xent (the contract, section :ref:`4 <contract-gradient>`, docs page *gradient*).

What ``*_loss_and_grad(..., weights=w)`` returns is the vector-Jacobian product of the
per-anchor losses with the cotangent ``w``: ``sum_a w_a d loss_a / d input``. Read top to
bottom, this file follows the page: the residual weights ``W_ab = w_a (P_ab - Y_ab)`` from
the shifted softmax :eq:`eq-residual`, the three products with each block of ``e`` that
hold every sum the gradient needs, and the chain rule back through the concentrations
:eq:`eq-grad-kappa`, the directions :eq:`eq-grad-mu` and their normalisation
:eq:`eq-grad-z`. The block driver that calls it is :func:`probcon_ref.loss.contrast_anchors`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["negative_weight_scale", "positive_weights", "GradientSums", "block_gradient_sums", "candidate_columns",
           "direction_grad", "column_cosine_sums", "kappa_grad", "temperature_grad", "embedding_grad"]


def negative_weight_scale(xp, denominator, w_rows):
    """Row factor ``w_a / D_a`` of the negatives' weights ``W_ab = w_a P_ab = (w_a / D_a) e[a, b]``.

    Implements :eq:`eq-softmax` and :eq:`eq-residual` for ``b not in {a, p(a)}`` (``W_aa = 0``;
    the positive's entry is :func:`positive_weights`); ``D_a = exp(-m_a) + s_a`` is the softmax
    denominator in the shifted units of ``e`` (``denominator`` of
    :class:`probcon_ref.loss.AnchorTerms`). The factor is shared by a whole row, so it scales
    the (rows x d) products of the gradient instead of the (rows x 2N) matrix.
    """
    return w_rows / denominator


def positive_weights(xp, negatives_sum, denominator, w_rows):
    """``W_{a,p(a)} = -w_a sum_{b not in {a,p(a)}} P_ab = -w_a s_a / D_a`` :eq:`eq-residual-positive`.

    Never ``w_a (P_{a,p(a)} - 1)``, which cancels when the positive is confidently matched.
    """
    return -w_rows * negatives_sum / denominator


class GradientSums(NamedTuple):
    """The sums over anchors that the gradient needs, over the negatives (``W_ab = row_a e[a, b]``).

    ``rows``: ``sum_b W_ab scale_b mu_b`` for each anchor (2N x d), over every candidate;
    ``columns``: ``sum_a W_ab mu_a`` for each candidate (C x d); ``column_weights``:
    ``sum_a W_ab`` for each candidate (C). They are :eq:`eq-grad-mu`'s two halves and
    :eq:`eq-grad-kappa`'s sums. The candidates are the batch's ``2N`` views, then its ``M``
    extra candidates, ``C = 2N + M`` :eq:`eq-extra-logits`.
    """

    rows: object
    columns: object
    column_weights: object


def block_gradient_sums(xp, e, row, scaled_mu, mu_rows):
    """One block's share of :class:`GradientSums`: three products with its ``e`` :eq:`eq-grad-mu` :eq:`eq-grad-kappa`.

    ``row[:, None] * (e @ (scale mu))`` for the block's anchors, ``e^T @ (row mu_a)`` and
    ``row @ e`` for every candidate; ``e`` itself is never rescaled.
    """
    return GradientSums(row[:, None] * (e @ scaled_mu), xp.matrix_transpose(e) @ (row[:, None] * mu_rows),
                        row @ e)


def candidate_columns(sums: GradientSums, start: int, stop: int) -> GradientSums:
    """The column sums of candidates ``start .. stop - 1`` only, the rows' sums kept.

    The batch's own columns ``0 .. 2N - 1`` give its gradient; an extra candidate's column
    is the derivative with respect to its direction, which the loss holds constant, so it
    takes no part :eq:`eq-extra-grad`.
    """
    return GradientSums(sums.rows, sums.columns[start:stop, ...], sums.column_weights[start:stop])


def direction_grad(xp, sums: GradientSums, w_pos, scale, mu, pos):
    """``dL/dmu_a = sum_b (G_ab + G_ba) mu_b`` with ``G_ab = W_ab scale_b`` :eq:`eq-grad-cos` :eq:`eq-grad-mu`.

    Negatives: ``sum_b W_ab scale_b mu_b`` (rows, over every candidate, the extra ones
    included :eq:`eq-extra-grad`) plus ``scale_a sum_b W_ba mu_b`` (the batch's columns).
    Positives, one per row: ``(W_{a,p(a)} scale_{p(a)} + W_{p(a),a} scale_a) mu_{p(a)}``;
    ``pos`` holds ``p(a)`` for every anchor, ``scale`` and ``sums.columns`` cover the batch.
    """
    negatives = sums.rows + scale[:, None] * sums.columns
    pos_coef = w_pos * xp.take(scale, pos) + xp.take(w_pos, pos) * scale
    return negatives + pos_coef[:, None] * xp.take(mu, pos, axis=0)


def column_cosine_sums(xp, columns, directions):
    """``sum_a W_ab c_ab = mu_b . sum_a W_ab mu_a`` over the negatives, for each candidate ``b``.

    Implements the weighted cosines of :eq:`eq-grad-kappa` and :eq:`eq-grad-temperature`:
    ``columns`` are :class:`GradientSums` column sums, ``directions`` the same candidates'
    ``mu_b``. The positives' terms are added by the caller.
    """
    return xp.sum(directions * columns, axis=1)


def kappa_grad(xp, sums: GradientSums, w_pos, c_pos, mu, mean_length, pos):
    """``dL/dkappa_b = sum_{a != b} W_ab (c_ab - A_d(kappa_b))`` :eq:`eq-grad-kappa`.

    ``sum_a W_ab c_ab = mu_b . sum_a W_ab mu_a`` reuses the column sums of the direction
    gradient; the positive of column ``b`` is row ``p(b)``, with ``c_{p(b),b} = c_{b,p(b)}``.
    """
    w_in = xp.take(w_pos, pos)  # W_{p(b), b}
    weighted_cos = column_cosine_sums(xp, sums.columns, mu) + w_in * c_pos
    return weighted_cos - mean_length * (sums.column_weights + w_in)


def temperature_grad(xp, sums: GradientSums, w_pos, c_pos, candidates, temperature: float):
    """``dL/dtau = -(1/tau^2) sum_a sum_{b != a} W_ab c_ab`` for NT-Xent :eq:`eq-grad-temperature`.

    Every logit ``c_ab / tau`` depends on ``tau``, the extra candidates' too, so the sum runs
    over every candidate column: ``sums`` holds the column sums of all ``C`` candidates and
    ``candidates`` their directions (the batch's ``2N`` first). The negatives' terms are
    ``mu_b . sum_a W_ab mu_a`` (:func:`column_cosine_sums`); the positives', one per anchor,
    ``W_{a,p(a)} c_{a,p(a)}``. Divided by ``tau`` twice, so that ``1/tau^2`` is never formed.
    """
    total = xp.sum(column_cosine_sums(xp, sums.columns, candidates)) + xp.sum(w_pos * c_pos)
    return -(total / temperature) / temperature


def embedding_grad(xp, mu_grad, mu, norm):
    """``dL/dz_a = (I - mu_a mu_a^T) dL/dmu_a / ||z_a||`` :eq:`eq-grad-z`."""
    radial = xp.sum(mu * mu_grad, axis=1, keepdims=True)
    return (mu_grad - radial * mu) / norm
