"""Which method computes log I_nu(x) where, from the plan of each precision and the code's branch test."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

import generated_special as gs

orders = np.unique(np.concatenate([np.arange(0.0, 64.0, 0.25), np.geomspace(64.0, 2047.0, 60)]))
xs = np.geomspace(1e-3, 1e6, 500)
colours = ["#8ecae6", "#ffb703", "#b5838d"]
cmap = ListedColormap(colours)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, dtype in zip(axes, gs.DTYPES):
    plan = gs.plan_of(dtype)
    regions = gs.method_map(dtype, orders, xs)
    ax.pcolormesh(xs, orders + 1, regions, cmap=cmap, vmin=-0.5, vmax=2.5, shading="nearest",
                  rasterized=True)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"{dtype}: $n_0 = {plan.debye_min_order:g}$, $x_s = {plan.series_max_x:g}$")
    ax.set_xlabel("$x$")
    ax.grid(False)
axes[0].set_ylabel(r"$\nu + 1$")
axes[1].legend([Patch(color=c) for c in colours], gs.METHODS, fontsize=7, loc="upper left")
fig.tight_layout()
