"""The one ``jax.custom_vjp`` of the JAX integration: a reference loss whose backward is its VJP.

:func:`analytic_loss` evaluates a loss of :mod:`probcon_ref` and tells JAX that its
vector-Jacobian product is ``*_loss_and_grad(..., weights=cotangent)``, computed by formula
(:class:`AnalyticSpec`). For a reduced loss the cotangent is a scalar and the VJP is the
gradient scaled by it, so the forward pass of ``jax.grad`` computes the loss and its
gradient together and the backward pass only scales; for ``reduction="none"`` the cotangent
is the per-anchor weights ``w_a`` and the backward pass computes the VJP with them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["AnalyticSpec", "analytic_loss"]


@dataclass(frozen=True)
class AnalyticSpec:
    """What one call computes, kept out of the differentiated arguments (no equation: configuration).

    ``loss(*inputs, reduction=..., **options)`` is :func:`probcon_ref.pcl_loss` or
    :func:`probcon_ref.ntxent_loss`; ``loss_and_grad`` the matching ``*_loss_and_grad``, called
    with ``reduction=`` for the gradient of a reduced loss and with ``weights=`` for the VJP of
    the per-anchor losses. ``options`` (``temperature``, ``block_size``) go to both.
    ``constants`` names the keyword arguments (``extra_z``, ``extra_kappa``) that the last
    ``len(constants)`` inputs are passed as: arrays the loss holds constant, whose cotangent
    is zero.
    """

    loss: Callable
    loss_and_grad: Callable
    reduction: str
    options: tuple = field(default=())
    constants: tuple = field(default=())

    def _arguments(self, inputs, kwargs):
        count = len(inputs) - len(self.constants)
        return inputs[:count], {**dict(self.options), **dict(zip(self.constants, inputs[count:])), **kwargs}

    def value(self, *inputs, **kwargs):
        arrays, keywords = self._arguments(inputs, kwargs)
        return self.loss(*arrays, **keywords)

    def value_and_grad(self, *inputs, **kwargs):
        arrays, keywords = self._arguments(inputs, kwargs)
        return self.loss_and_grad(*arrays, **keywords)

    def constant_cotangents(self, inputs) -> tuple:
        """Zeros for the constant inputs: nothing flows to them."""
        return tuple(jnp.zeros_like(a) for a in inputs[len(inputs) - len(self.constants):])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _analytic(spec: AnalyticSpec, *inputs):
    return spec.value(*inputs, reduction=spec.reduction)


def _forward(spec: AnalyticSpec, *inputs):
    """The loss and what the backward pass needs (no equation of its own: the reference's call)."""
    if spec.reduction == "none":
        return spec.value(*inputs, reduction="none"), inputs
    value, grads = spec.value_and_grad(*inputs, reduction=spec.reduction)
    return value, (tuple(grads), spec.constant_cotangents(inputs))


def _backward(spec: AnalyticSpec, saved, cotangent):
    """The input cotangents (no equation of its own: the VJP is ``*_loss_and_grad``'s).

    A non-finite cotangent (what a loss scaler's overflow check looks for) propagates as
    NaN: its non-finite entries are set to zero before they become the weights, which the
    reference rightly refuses when a caller passes them, and NaN is added back after.
    """
    if spec.reduction != "none":
        grads, constants = saved
        return tuple((g * cotangent.astype(g.dtype)).astype(g.dtype) for g in grads) + constants
    finite = jnp.isfinite(cotangent)
    weights = jnp.where(finite, cotangent, jnp.zeros_like(cotangent))
    poison = jnp.sum(jnp.where(finite, jnp.zeros_like(cotangent), cotangent)) * 0
    _, grads = spec.value_and_grad(*saved, weights=weights)
    return tuple((g + poison.astype(g.dtype)).astype(g.dtype) for g in grads) + spec.constant_cotangents(saved)


_analytic.defvjp(_forward, _backward)


def analytic_loss(spec: AnalyticSpec, *inputs):
    """The loss of ``spec`` on ``inputs``, differentiable through its analytic VJP.

    No equation of its own: the loss and its VJP are the reference's.
    """
    return _analytic(spec, *inputs)
