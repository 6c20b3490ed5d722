"""The text report and the documentation page of ``probcon-ref experiment``.

Every number written here is read from the summary the command measured; nothing is typed in.

The page is the Markdown template ``templates/report.md`` (with ``templates/ablation.md``
for the ablation's section) filled by :meth:`str.format_map` from named fields, which
:func:`markdown_fields` computes from the summary; the format of each number (``:+.3f``,
``:.1%``) is written where it appears in the template, and a literal brace there is doubled
(``{{``). The sentences that interpret a number are chosen here by the number (a sign, a
threshold), so the text stays true when a rerun measures something else.
"""

from __future__ import annotations

from importlib import resources

# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _mets(flag: bool) -> str:
    return "met" if flag else "NOT met"


def text_report(s: dict) -> str:
    """The short plain-text report (``report.txt``, also printed by the command)."""
    probe, pv, ext = s["linear_probe"], s["kappa_vs_cosine"], s["extremes"]
    q = ext["by_kappa_quintile"]
    t = s["timing_s"]
    by_class = ", ".join(f"{c}: {v:.1f}" for c, v in ext["kappa_median_by_class"].items())
    lines = [
        s["title"],
        "=" * len(s["title"]),
        f"command: {s['command']}",
        f"data: {s['data']['name']}; {s['data']['train']} train / {s['data']['held_out']} held-out images",
        f"loss in PyTorch from: {s['torch_integration']}",
        f"run time: {t['total']:.0f} s on {s['environment']['threads']} threads ("
        + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in t.items() if k != "total") + ")",
        "",
        *_text_degradation(s),
        "",
        f"(b) clean held-out images by kappa ({ext['count']} lowest and highest in kappa_extremes.png)",
        f"    pixel logistic-regression error, lowest kappa quintile: {_pct(q[0]['classifier_error_rate'])};"
        f" highest: {_pct(q[-1]['classifier_error_rate'])}"
        f" (all quintiles: {', '.join(_pct(v['classifier_error_rate']) for v in q)})",
        f"    Spearman(kappa, classifier probability of the true label): "
        f"{ext['spearman_kappa_vs_classifier_p_true']:+.3f}",
        f"    Spearman(kappa, typicality = mean cosine to the training images of the same class): "
        f"{ext['spearman_kappa_vs_typicality']:+.3f}",
        f"    median kappa by class: {by_class}",
        "",
        "(c) linear probe on the frozen encoder (held-out accuracy)",
        f"    PCL {_pct(probe['pcl'])}, NT-Xent {_pct(probe['ntxent'])}, raw pixels {_pct(probe['pixels'])};"
        f" PCL - NT-Xent = {probe['pcl_minus_ntxent_points']:+.2f} points"
        f"   [criterion within 2 points: {_mets(s['criteria']['probe_pcl_within_2_points_of_ntxent'])}]",
        "",
        f"(d) kappa against the cosine of two augmented views ({pv['views']} held-out views, d = {int(2 * pv['nu'] + 2)})",
        f"    Spearman(kappa, cosine) {pv['spearman_kappa_vs_cos']:+.3f};"
        f" median kappa / optimum A_d^-1(c) {pv['median_ratio_kappa_to_optimum']:.3g};"
        f" below the optimum: {_pct(pv['fraction_below_optimum'])}",
        "",
    ]
    return "\n".join(lines)


def _text_degradation(s: dict) -> list[str]:
    """The lines of (a) in the text report, the ablation's included."""
    deg = s["degradation"]
    unseen = s["config"]["degradations_unseen_in_training"]
    abl = s.get("ablation_every_degradation_in_training")
    lines = [
        "(a) kappa under degradation of held-out images (Spearman with strength)",
        f"    pooled over {deg['pairs_pooled']} (image, type, strength) pairs: {deg['spearman_pooled']:+.3f}"
        f"   [criterion <= -0.5: {_mets(s['criteria']['spearman_pooled_at_most_minus_0.5'])}]",
    ]
    for kind, rho in deg["spearman_by_type"].items():
        st = deg["by_type"][kind]
        lines.append(
            f"    {kind:<9} {rho:+.3f}  (mean within-image {deg['within_image_spearman_mean'][kind]:+.3f};"
            f" median kappa {st['kappa_median'][0]:.1f} -> {st['kappa_median'][-1]:.1f};"
            f" cosine to clean {st['cos_to_clean_median'][-1]:.3f} at strength {deg['strengths'][-1]:g})"
            + ("  [never seen in training]" if kind in unseen else "")
        )
    if abl is not None:
        lines.append(
            f"    ablation, every type in training: pooled {abl['spearman_pooled']:+.3f}; "
            + ", ".join(f"{k} {v:+.3f}" for k, v in abl["spearman_by_type"].items())
            + f"; probe {_pct(abl['linear_probe'])}"
        )
    return lines


# ---------------------------------------------------------------------------------------
# The documentation page: templates/report.md and its fields
# ---------------------------------------------------------------------------------------


def template(name: str) -> str:
    """The text of ``templates/<name>``, shipped inside the package."""
    return (resources.files(__package__) / "templates" / name).read_text(encoding="utf-8")


def report_markdown(s: dict) -> str:
    """The report as a Markdown fragment (MyST), figures linked relative to its own folder.

    The documentation page ``docs/experiment.md`` includes ``docs/experiment/report.md``
    under a second-level heading, so the sections of the template are third-level.
    """
    return template("report.md").format_map(markdown_fields(s))


def markdown_fields(s: dict) -> dict:
    """The named fields of ``templates/report.md``, computed from the summary ``s``."""
    fields = {"command": s["command"], "torch_integration": s["torch_integration"]}
    fields.update({f"figure_{key}": name for key, name in s["figures"].items()})
    for section in (_setup_fields, _degradation_fields, _extremes_fields, _probe_fields, _pairs_fields):
        fields.update(section(s))
    fields["ablation"] = _ablation_section(s)
    return fields


def _join(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _met(flag: bool) -> str:
    return "met" if flag else "not met"


def _corruptions_text(cfg: dict) -> str:
    """The degradation types of the training augmentation, in words."""
    corruptions = cfg["augment"]["corruptions"]
    return _join(corruptions) if corruptions else "none"


def _setup_fields(s: dict) -> dict:
    """Data, model, views, training, degradations and run time."""
    cfg, t = s["config"], s["timing_s"]
    aug, unseen = cfg["augment"], cfg["degradations_unseen_in_training"]
    fields = {key: cfg[key] for key in ("features", "proj_dim", "kappa_min", "epochs", "batch_size", "lr",
                                        "temperature", "kappa_init", "warmup_epochs", "conf_lr_mult")}
    fields.update({key: s["data"][key] for key in ("images", "train", "held_out")})
    fields.update({key: aug[key] for key in ("rotation_deg", "translate_px", "corrupt_prob")})
    fields.update(scale_low=aug["scale"][0], scale_high=aug["scale"][1],
                  brightness_low=aug["brightness"][0], brightness_high=aug["brightness"][1])
    fields["corruptions"] = _corruptions_text(cfg)
    fields["unseen_text"] = (f"{_join(unseen)} never appears in training, so it measures whether the "
                             "confidence generalises to a degradation the model has not met" if unseen else
                             "every degradation type also appears in training")
    fields.update(cfg["degradation_max"])  # noise_sigma, occlusion_side_px, blur_sigma_px
    fields.update(strengths=s["degradation"]["strengths"], threads=s["environment"]["threads"],
                  total_s=t["total"], train_pcl_s=t["train_pcl"], train_ntxent_s=t["train_ntxent"])
    return fields


_UNSEEN_NOTE = (
    " {Kind}, never seen in training, moves the projection furthest from the clean one yet lowers "
    "`kappa` least: the confidence head learned what a degraded view looks like from {seen}, and "
    "carries it over to {kind} only in part."
)


def _degradation_fields(s: dict) -> dict:
    """(a): the pooled and per-type correlations, the table, and what the unseen type shows."""
    deg, ok = s["degradation"], s["criteria"]
    unseen = s["config"]["degradations_unseen_in_training"]
    rho = deg["spearman_by_type"]
    kinds = list(rho)
    rows = "\n".join(
        f"| {k} | {'no' if k in unseen else 'yes'} | {rho[k]:+.3f} | {deg['within_image_spearman_mean'][k]:+.3f} | "
        f"{deg['by_type'][k]['kappa_median'][0]:.1f} | {deg['by_type'][k]['kappa_median'][-1]:.1f} | "
        f"{deg['by_type'][k]['cos_to_clean_median'][-1]:.3f} |"
        for k in kinds
    )
    weakest = max(kinds, key=lambda k: rho[k])
    cos_end = {k: deg["by_type"][k]["cos_to_clean_median"][-1] for k in kinds}
    unseen_note = ""
    if weakest in unseen and cos_end[weakest] == min(cos_end.values()):
        unseen_note = _UNSEEN_NOTE.format(kind=weakest, Kind=weakest.capitalize(),
                                          seen=_corruptions_text(s["config"]))
    return {
        "spearman_pooled": deg["spearman_pooled"],
        "spearman_target": _met(ok["spearman_pooled_at_most_minus_0.5"]),
        "spearman_by_type": ", ".join(f"{k} {rho[k]:+.3f}" for k in kinds),
        "pairs_pooled": deg["pairs_pooled"],
        "strength_max": deg["strengths"][-1],
        "degradation_rows": rows,
        "strongest": min(kinds, key=lambda k: rho[k]),
        "weakest": weakest,
        "unseen_note": unseen_note,
    }


_ABLATION_CONCLUSION = (
    "Training on {changed} as well weakens the response to it: the encoder learns "
    "to map those views close to their clean version (the cosine to clean stays higher), "
    "the views agree, and by the optimality condition of the contract page, section 3 they keep their "
    "confidence. The confidence reflects the disagreement the model cannot remove, so "
    "an augmentation used in training is, for the confidence, no longer a degradation."
)


def _ablation_section(s: dict) -> str:
    """(a) for the model trained with every degradation type: ``templates/ablation.md``, or ""."""
    abl = s.get("ablation_every_degradation_in_training")
    if abl is None:
        return ""
    deg = s["degradation"]
    unseen = s["config"]["degradations_unseen_in_training"]
    cos_default = {k: v["cos_to_clean_median"][-1] for k, v in deg["by_type"].items()}
    cos_abl = {k: v[-1] for k, v in abl["cos_to_clean_median_by_type"].items()}
    rows = "\n".join(
        f"| {k} | {deg['spearman_by_type'][k]:+.3f} | {abl['spearman_by_type'][k]:+.3f} | "
        f"{cos_default[k]:.3f} | {cos_abl[k]:.3f} |"
        for k in deg["spearman_by_type"]
    )
    changed = [k for k in unseen if abl["spearman_by_type"][k] > deg["spearman_by_type"][k]
               and cos_abl[k] > cos_default[k]]
    conclusion = _ABLATION_CONCLUSION.format(changed=_join(changed)) if changed else ""
    return "\n" + template("ablation.md").format(
        train_corruptions=_join(abl["train_corruptions"]), spearman_pooled=abl["spearman_pooled"],
        linear_probe=abl["linear_probe"], strength_max=deg["strengths"][-1], rows=rows, conclusion=conclusion)


_NEGATIVES_EXPLAIN = (
    " The more typical an image of its class, the lower its confidence. The loss "
    "offers a reason. By the contract page, section 4, `dL/dkappa_b = sum_a W_ab (c_ab - A_d(kappa_b))`, and in "
    "instance discrimination every other image `a`, of the same class too, is a negative "
    "(`W_ab > 0`). Where negatives lie closer than `A_d(kappa_b)`, the gradient lowers "
    "`kappa_b`: a neatly written digit of a tight class sits among many near-identical "
    "negatives and loses confidence, an unusual one stands apart and keeps it. Without "
    "labels, the confidence measures how well a view can be told apart from other images, "
    "which on clean images is not how legible it is."
)


def _classifier_verdict(rho_p: float) -> str:
    if rho_p >= 0.2:
        return ("On clean images the confidence agrees with the classifier: images of low `kappa` are "
                "the ones it finds harder.")
    if rho_p > -0.2:
        return ("On clean images the confidence barely tracks the classifier: low `kappa` does not pick "
                "out the images it finds hard.")
    return ("On clean images the confidence runs against the classifier: low `kappa` goes with images "
            "it finds easy.")


def _extremes_fields(s: dict) -> dict:
    """(b): the classifier along kappa, typicality, and the median kappa by class."""
    ext = s["extremes"]
    rho_p = ext["spearman_kappa_vs_classifier_p_true"]
    rho_n = ext["spearman_kappa_vs_typicality"]
    typicality = (f"Spearman correlation between `kappa` and typicality (the mean cosine of an image's "
                  f"projection to the training images of its class): {rho_n:+.3f}.")
    by_class = ext["kappa_median_by_class"]
    return {
        "rho_p_true": rho_p,
        "rho_typicality": rho_n,
        "classifier_verdict": _classifier_verdict(rho_p),
        "typicality_text": typicality + (_NEGATIVES_EXPLAIN if rho_n <= -0.2 else ""),
        "quintile_rows": "\n".join(
            f"| {i + 1} | {v['kappa_range'][0]:.1f} - {v['kappa_range'][1]:.1f} | {v['images']} | "
            f"{100 * v['classifier_error_rate']:.1f} | {v['classifier_mean_p_true']:.3f} |"
            for i, v in enumerate(ext["by_kappa_quintile"])
        ),
        "class_head": " | ".join(by_class),
        "class_rule": " | ".join("---" for _ in by_class),
        "class_row": " | ".join(f"{v:.1f}" for v in by_class.values()),
    }


def _probe_fields(s: dict) -> dict:
    """(c): the probe accuracies (fractions, shown as percentages) and the target."""
    probe = s["linear_probe"]
    return {
        "probe_pcl": probe["pcl"], "probe_ntxent": probe["ntxent"], "probe_pixels": probe["pixels"],
        "probe_difference": probe["pcl_minus_ntxent_points"],
        "probe_target": _met(s["criteria"]["probe_pcl_within_2_points_of_ntxent"]),
    }


def _pairs_fields(s: dict) -> dict:
    """(d): kappa against the cosine of two views."""
    pv = s["kappa_vs_cosine"]
    return {
        "nu": pv["nu"],
        "spearman_kappa_vs_cos": pv["spearman_kappa_vs_cos"],
        "median_ratio_to_optimum": pv["median_ratio_kappa_to_optimum"],
        "below_optimum": pv["fraction_below_optimum"],
    }
