"""A_d(kappa) and log C_d(kappa) for several dimensions, from the code (float64), at build time."""

import matplotlib.pyplot as plt
import numpy as np

import generated_special
from probcon_ref import tables
from probcon_ref.special import bessel_ratio, log_vmf_normalizer

kappa = np.geomspace(1e-2, 1e5, 400)
dims = generated_special.CURVE_DIMS
colours = plt.cm.viridis(np.linspace(0, 0.9, len(dims)))
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
for d, colour in zip(dims, colours):
    left.semilogx(kappa, bessel_ratio(d / 2 - 1, kappa), color=colour, label=f"$d = {d}$")
    right.semilogx(kappa, log_vmf_normalizer(d, kappa), color=colour, label=f"$d = {d}$")
    anchor = tables.normalizer_anchor(d)
    if anchor is not None:
        right.plot(anchor[0], anchor[1], "o", ms=5, color=colour, mec="k", mew=0.5)
left.set_xlabel(r"$\kappa$")
left.set_ylabel(r"$A_d(\kappa) = I_{d/2}(\kappa) / I_{d/2-1}(\kappa)$")
left.legend(fontsize=7, loc="upper left")
right.set_yscale("symlog", linthresh=10.0)
right.axhline(0.0, color="k", lw=0.6)
right.set_xlabel(r"$\kappa$")
right.set_ylabel(r"$\log C_d(\kappa)$ (linear within $\pm 10$)")
right.legend(fontsize=7, loc="lower left")
fig.tight_layout()
