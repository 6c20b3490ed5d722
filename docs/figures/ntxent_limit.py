"""How the PCL approaches NT-Xent as every kappa approaches 1/tau, from the code."""

import matplotlib.pyplot as plt
import numpy as np

import docs_data

r = docs_data.ntxent_limit()
fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))

left.loglog(r["spreads"], r["gaps"], "o-", ms=3)
left.set_xlabel(r"spread $\eta$: $\kappa_b = e^{\eta g_b} / \tau$, $g_b \sim \mathcal{N}(0, 1)$")
left.set_ylabel("|PCL - NT-Xent| / NT-Xent")
left.set_title(rf"confidences around $1/\tau$, $\tau = {r['temperature']:g}$")

positive = r["ntxent"] > 0
left_k = r["kappas"][positive]
right.loglog(left_k, r["ntxent"][positive], "-", lw=2.5, alpha=0.5, label=r"NT-Xent, $\tau = 1/\kappa$")
right.loglog(left_k, r["pcl_common"][positive], "k.", ms=4, label=r"PCL, every $\kappa_b = \kappa$")
right.set_xlabel(r"common confidence $\kappa$")
right.set_ylabel("loss (mean over anchors)")
right.set_title("one common confidence")
right.legend(fontsize=7)
fig.tight_layout()
