"""The format of a golden set: its name and version, the arrays of each loss, and the types
a set is read into.

A set is a directory with ``manifest.json`` (the format, the version, the conventions in
words and one entry per case), a ``README.md`` and, for every case, ``NAME.npz`` (plain
float64 arrays) and ``NAME.json`` (the same numbers as JSON, each float64 written so that it
reads back exactly). A case with extra candidates has ``m`` (their count M) in its manifest
entry and its JSON file, and holds the inputs of :data:`EXTRA_INPUTS` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["FORMAT", "VERSION", "PCL_INPUTS", "PCL_OUTPUTS", "NTXENT_INPUTS", "NTXENT_OUTPUTS", "LOSSES",
           "EXTRA_INPUTS", "GoldenCase", "GoldenVectorError", "shape_of", "FLOAT64", "shipped_directory"]

FORMAT = "probcon-ref golden vectors"
VERSION = 1

PCL_INPUTS = ("z1", "z2", "kappa1", "kappa2")
PCL_OUTPUTS = ("loss", "loss_sum", "losses", "grad_z1", "grad_z2", "grad_kappa1", "grad_kappa2",
               "log_vmf_normalizer", "mean_resultant_length")
NTXENT_INPUTS = ("z1", "z2", "temperature")
NTXENT_OUTPUTS = ("loss", "loss_sum", "losses", "grad_z1", "grad_z2")


LOSSES = {"pcl": (PCL_INPUTS, PCL_OUTPUTS), "ntxent": (NTXENT_INPUTS, NTXENT_OUTPUTS)}
#: The inputs of a case with extra candidates, besides its loss's: by loss.
EXTRA_INPUTS = {"pcl": ("extra_z", "extra_kappa"), "ntxent": ("extra_z",)}
# the shape of every array, from the case's N, d and M
_SHAPES = {"z1": "nd", "z2": "nd", "grad_z1": "nd", "grad_z2": "nd",
           "kappa1": "n", "kappa2": "n", "grad_kappa1": "n", "grad_kappa2": "n",
           "losses": "2n", "log_vmf_normalizer": "2n", "mean_resultant_length": "2n",
           "temperature": "", "loss": "", "loss_sum": "", "extra_z": "md", "extra_kappa": "m"}
FLOAT64 = np.dtype("<f8")  # as the format stores it: little-endian IEEE double


def shape_of(key: str, n: int, d: int, m: int = 0) -> tuple:
    """The shape of array ``key`` in a case of ``n`` pairs in dimension ``d`` (with ``m`` extra
    candidates)."""
    return {"nd": (n, d), "n": (n,), "2n": (2 * n,), "": (), "md": (m, d), "m": (m,)}[_SHAPES[key]]



@dataclass
class GoldenCase:
    """One golden case as read back: metadata, inputs and outputs (float64 NumPy arrays)."""

    name: str
    loss: str
    n: int
    d: int
    regimes: tuple[str, ...]
    description: str
    inputs: dict
    outputs: dict

    @property
    def m(self) -> int:
        """The number of extra candidates (0 for a case without them)."""
        extra = self.inputs.get("extra_z")
        return 0 if extra is None else int(extra.shape[0])

    @property
    def temperature(self) -> float | None:
        """NT-Xent: the case's temperature (None for the PCL)."""
        t = self.inputs.get("temperature")
        return None if t is None else float(t)



class GoldenVectorError(ValueError):
    """A golden-vector file is unreadable or disagrees with its manifest.

    ``path`` is the file (``manifest.json``, ``NAME.npz`` or ``NAME.json``) and ``problem``
    what is wrong with it; the message reads ``"PATH: PROBLEM"``.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")



def shipped_directory():
    """The golden set installed with the package (a ``Traversable``)."""
    return resources.files("probcon_ref.testing") / "golden"

