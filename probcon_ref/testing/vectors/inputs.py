"""Inputs that are the same float64 on every machine: SplitMix64 draws and exact conversions.

A case's inputs are rebuilt from its seed, so they must not depend on the CPU, the C
library or the NumPy version. They are therefore made from integers only: SplitMix64
draws (64-bit integer arithmetic), sums of those, and integer rounding. An integer becomes
a float64 once, as the exact rational k * scale rounded by Python's correctly rounded
integer division (`fractions.Fraction` to float); most scales are powers of two, where that
is exact. Constants are decimal literals, which Python's parser rounds correctly. No
transcendental function (whose last bit differs between libm and NumPy's SIMD kernels, the
reason np.logspace gave 1e-05 on one CPU and 9.999999999999999e-06 on another), no
Gaussian sampler (its tails call exp and log) and no float product that a compiler could
fuse into an FMA takes part.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["Stream", "to_float", "UNIT", "pair_counts", "directions", "noisy_pair", "moderate_kappas",
           "rows_times_ten_to"]

_MASK64 = (1 << 64) - 1


class Stream:
    """SplitMix64 (Steele, Lea and Flood, 2014): integer draws identical on every platform.

    Each case has its own stream, seeded with the case's ``seed``; ``integers`` maps a 64-bit
    draw ``x`` to ``low + (x * (high - low + 1) >> 64)`` (inclusive bounds).
    """

    def __init__(self, seed: int):
        self._state = int(seed) & _MASK64

    def next_u64(self) -> int:
        """The next 64-bit draw."""
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def integers(self, low: int, high: int, shape=()) -> np.ndarray:
        """Integers in ``[low, high]``, an int64 array of ``shape``."""
        span = high - low + 1
        count = math.prod(shape)
        return np.array([low + ((self.next_u64() * span) >> 64) for _ in range(count)],
                        dtype=np.int64).reshape(shape)

    def bell(self, half_width: int, shape=()) -> np.ndarray:
        """Roughly Gaussian integers of standard deviation about ``half_width``: the sum of
        three uniform integers in ``[-half_width, half_width]`` (variance ``h (h + 1)``)."""
        return sum(self.integers(-half_width, half_width, shape) for _ in range(3))


def to_float(k, scale=Fraction(1)) -> np.ndarray:
    """The float64 nearest to each ``k * scale`` (an exact rational), rounded once."""
    k = np.asarray(k, dtype=np.int64)
    values = [float(Fraction(int(v)) * scale) for v in k.ravel()]
    return np.array(values, dtype=np.float64).reshape(k.shape)


UNIT = 1024  # embedding entries are multiples of 1/1024 (times 10**p for the norm cases)


def pair_counts(s: Stream, n: int, d: int, noise_den: int = 2):
    """Integer views ``(k1, k2, scale)``: ``z1 = k1 * scale`` has entries of standard
    deviation about 1 and ``z2 = z1 + noise`` with noise of standard deviation 1/noise_den."""
    k1 = s.bell(UNIT, (n, d)) * noise_den
    k2 = k1 + s.bell(UNIT, (n, d))
    return k1, k2, Fraction(1, UNIT * noise_den)


def directions(s: Stream, n: int, d: int) -> np.ndarray:
    """``n`` rows of ``d`` roughly Gaussian entries, multiples of 1/1024."""
    return to_float(s.bell(UNIT, (n, d)), Fraction(1, UNIT))


def noisy_pair(s: Stream, n: int, d: int, noise_den: int = 2):
    """The float64 views of :func:`pair_counts`."""
    k1, k2, scale = pair_counts(s, n, d, noise_den)
    return to_float(k1, scale), to_float(k2, scale)


def moderate_kappas(s: Stream, n: int) -> np.ndarray:
    """Moderate concentrations m * 2**e, m in 16..31, e in -5..0: from 0.5 to 31."""
    m, e = s.integers(16, 31, (n,)), s.integers(-5, 0, (n,))
    return np.array([float(Fraction(int(a)) * Fraction(2) ** int(b)) for a, b in zip(m, e)])


def rows_times_ten_to(k, scale, powers):
    """Row i of ``k * scale`` times ``10**powers[i]``, each entry rounded once."""
    return np.stack([to_float(row, scale * Fraction(10) ** int(p)) for row, p in zip(k, powers)])

