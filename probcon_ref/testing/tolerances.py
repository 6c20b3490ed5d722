"""The accuracy the contract, sections :ref:`5 <contract-special>` and :ref:`6 <contract-accuracy>` require, in one table.

Every bound the project holds a result to comes from :data:`SPEC_BOUNDS`: ``validate``
holds other implementations to the loss and gradient rows, ``probcon-ref check`` holds the
backends to them, the tests hold the reference to every row, and the documentation prints
the table. The float64 column is the error against a 50-digit evaluation; the float32 column
is, for the loss and gradient rows, the error against the float64 result on the same inputs
(the contract, section :ref:`6 <contract-accuracy>`), and for the special functions the error against 50 digits at a float32
argument (the contract, section :ref:`5 <contract-special>`).

Where the logits of a batch are large, their own rounding moves a correct result by more
than the bounds of the contract, section :ref:`6 <contract-accuracy>`; :data:`ROUNDING` and :data:`SUBNORMALS` say how ``validate``
widens them there.

>>> TOLERANCES["float64"]
(1e-12, 1e-10)
>>> bound("log_vmf", "float32")
5e-06
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Bound", "SPEC_BOUNDS", "DTYPES", "bound", "TOLERANCES", "SPECIAL", "ROUNDING", "SUBNORMALS"]

#: The dtypes the contract, sections 5 and 6 bound (half precisions are computed in float32).
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Bound:
    """One row of the table: a quantity, how its error is measured, and the bound per dtype."""

    key: str
    quantity: str
    measure: str
    float64: float
    float32: float
    section: int  # of the contract

    def __getitem__(self, dtype: str) -> float:
        """The bound in ``dtype`` (float64 or float32)."""
        if dtype not in DTYPES:
            raise KeyError(f"the contract bounds float64 and float32 only, not {dtype!r}")
        return getattr(self, dtype)


SPEC_BOUNDS: tuple[Bound, ...] = (
    Bound("loss", "loss", "relative error of the reduced loss and of every per-anchor loss",
          1e-12, 1e-5, 6),
    Bound("grad", "gradient block (z1, z2, kappa1, kappa2)",
          "max-norm error / max(the block's max-norm, its terms' scale)", 1e-10, 1e-4, 6),
    Bound("log_iv", "log I_nu(x)", "error / max(1, |log I_nu(x)|, nu + x A)", 4e-15, 2e-6, 5),
    Bound("ratio", "A = I_{nu+1}(x) / I_nu(x)", "relative error", 1e-14, 1e-6, 5),
    Bound("log_vmf", "log C_d(kappa)", "error / max(1, |log C_d(kappa)|)", 2e-14, 5e-6, 5),
)

_BY_KEY = {b.key: b for b in SPEC_BOUNDS}


def bound(key: str, dtype: str) -> float:
    """The contract's bound of quantity ``key`` (a row of :data:`SPEC_BOUNDS`) in ``dtype``."""
    try:
        row = _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no bound of the contract for {key!r}; known: {', '.join(_BY_KEY)}") from None
    return row[dtype]


#: The contract, section 6: ``(loss, gradient block)`` by dtype.
TOLERANCES = {dt: (bound("loss", dt), bound("grad", dt)) for dt in DTYPES}
#: The contract, section 5: ``(float64, float32)`` by special function.
SPECIAL = {key: (bound(key, "float64"), bound(key, "float32")) for key in ("log_iv", "ratio", "log_vmf")}

#: Where the logits are large (size S: ``max_b |log C_d(kappa_b)| + kappa_b``, or ``1/tau``),
#: their own rounding moves a correct implementation's per-anchor losses and gradients by up
#: to a few ``eps * S`` relative (a straightforward PyTorch PCL stays within half of ROUNDING:
#: the tests check it); ``validate`` raises the tolerances to ``ROUNDING * eps * S`` there, and
#: its report says so.
ROUNDING = 8
#: Absolute floor of a per-anchor loss, in smallest subnormals of the output dtype per
#: candidate: a term that underflows keeps only an absolute error of that size.
SUBNORMALS = 4
#: Frameworks whose arithmetic flushes subnormal results to zero (XLA on the CPU does; a test
#: of the JAX integration shows it): the smallest nonzero value they compute is the dtype's
#: smallest normal number, which takes the smallest subnormal's place in the floor above.
FLUSH_TO_ZERO = ("jax",)
