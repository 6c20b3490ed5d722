"""Loss of one anchor as a function of its positive's cosine and confidence, from pcl_loss."""

import matplotlib.pyplot as plt
import numpy as np

import docs_data
from probcon_ref.special import inverse_bessel_ratio

d = 32
anchor_loss = docs_data.landscape_setup(d=d)
cos = np.linspace(-0.6, 0.98, 33)
kappa = np.geomspace(0.1, 1e3, 33)
loss = np.array([[anchor_loss(c, k) for c in cos] for k in kappa])

fig, ax = plt.subplots(figsize=(7.0, 4.0))
shown = np.maximum(np.log10(loss), -8.0)  # the corner of near-zero losses is clipped
mesh = ax.pcolormesh(cos, kappa, shown, shading="gouraud", cmap="cividis")
ax.contour(cos, kappa, shown, levels=np.arange(-8, 3, 0.5), colors="w", linewidths=0.4)
fig.colorbar(mesh, ax=ax, label=r"$\log_{10} \ell_a$ (clipped at $-8$)")
c_pos = np.linspace(0.02, 0.98, 200)
ax.plot(c_pos, inverse_bessel_ratio(d / 2 - 1, c_pos), color="#c0392b", lw=1.6,
        label=r"$\kappa^* = A_d^{-1}(c)$")
best = kappa[np.argmin(loss, axis=0)]
ax.plot(cos, best, "o", ms=3, color="w", mec="k", mew=0.4, label="smallest loss on the grid")
ax.set_yscale("log")
ax.set_ylim(kappa[0], kappa[-1])
ax.set_xlabel(r"cosine $c_{a,p(a)}$ of the anchor with its positive")
ax.set_ylabel(r"positive's confidence $\kappa_{p(a)}$")
ax.legend(fontsize=7, loc="upper left")
fig.tight_layout()
