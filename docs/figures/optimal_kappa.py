"""The optimal confidence of a positive pair, kappa* = A_d^{-1}(c), from the code."""

import matplotlib.pyplot as plt
import numpy as np

from probcon_ref.special import inverse_bessel_ratio

cos = np.linspace(0.0, 0.995, 400)
fig, ax = plt.subplots()
for d, colour in zip((2, 3, 8, 32, 128, 512), plt.cm.plasma(np.linspace(0, 0.85, 6))):
    kappa = inverse_bessel_ratio(d / 2 - 1, cos)
    ax.semilogy(cos[1:], kappa[1:], color=colour, label=f"$d = {d}$")
    ax.semilogy(cos[1:], (d - 1) / (2 * (1 - cos[1:])), ":", color=colour, lw=0.8)
ax.set_xlabel(r"cosine $c$ between the two views")
ax.set_ylabel(r"optimal confidence $\kappa^* = A_d^{-1}(c)$")
ax.set_ylim(1e-2, 1e6)
ax.legend(fontsize=7)
fig.tight_layout()
