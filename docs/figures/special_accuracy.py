"""Accuracy of the special functions against mpmath (50 digits), computed at build time."""

import matplotlib.pyplot as plt
import numpy as np

import docs_data

sample = docs_data.special_accuracy()
floor = 1e-19
orders = docs_data.ACCURACY_ORDERS
colours = plt.cm.viridis(np.linspace(0, 0.95, len(orders)))
fig, axes = plt.subplots(2, 3, figsize=(10, 5.6), sharex=True)
for row, dtype in enumerate(("float64", "float32")):
    for col, quantity in enumerate(docs_data.QUANTITY_LABELS):
        ax = axes[row, col]
        err = np.maximum(sample.errors[(quantity, dtype)], floor)
        for nu, colour in zip(orders, colours):
            sel = sample.nu == nu
            order = np.argsort(sample.x[sel])
            ax.loglog(sample.x[sel][order], err[sel][order], "o", ms=2.2, alpha=0.8,
                      color=colour, label=f"{nu:g}")
        ax.axhline(docs_data.SPEC_TARGETS[quantity][row], ls="--", color="k", lw=0.8)
        ax.set_ylim(floor / 3, 1e-4 if dtype == "float32" else 1e-12)
        if row == 0:
            ax.set_title(docs_data.QUANTITY_LABELS[quantity])
        if row == 1:
            ax.set_xlabel("$x$")
        if col == 0:
            ax.set_ylabel(f"{dtype}: scaled error")
axes[0, 2].legend(title=r"$\nu$", fontsize=6, title_fontsize=7, ncol=2, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0))
fig.tight_layout()
