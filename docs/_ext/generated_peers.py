"""Generators of the peers page: the measured results of its recipes, and the lists of what
``probcon-ref validate`` runs and names, from ``probcon_ref.testing``.

``peer_results`` and ``pml_supcon_reducer`` read ``tests/peers/recipes_results.json``, which
``python tests/peers/measure_recipes.py`` writes, and refuse results measured on adapters
other than the ones in the tree (their hash is recorded); ``validate_battery`` and
``validate_signatures`` read the battery and the diagnoses themselves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers"
RESULTS = PEERS / "recipes_results.json"
SOURCES = (PEERS / "recipes.py", PEERS / "supcon_style.py")


def _results() -> dict:
    """The committed measurements, checked against the adapters they were measured on."""
    data = json.loads(RESULTS.read_text())
    h = hashlib.sha256()
    for path in SOURCES:
        h.update(path.read_bytes())
    if h.hexdigest() != data["sources_sha256"]:
        raise RuntimeError(f"{RESULTS.name} was measured on other adapters: run "
                           "python tests/peers/measure_recipes.py")
    return data


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, by ``docs_content._table`` (imported here: it imports this module)."""
    from docs_content import _table as table

    return table(header, rows)


def _fmt(x: float) -> str:
    from docs_content import _fmt as fmt

    return fmt(x)


def _signatures(entry: dict) -> str:
    return ", ".join(f"`{d['signature']}`" for d in entry["diagnoses"]) or "none"


def peer_results() -> str:
    """One row per recipe: the peer, what ``validate`` said, and the diagnoses' signatures."""
    data = _results()
    rows = []
    for e in data["recipes"]:
        peer = f"{e['package']} {e['version']}" if e.get("package") and e.get("version") else (
            e.get("package") or "the stand-in `tests/peers/supcon_style.py`")
        if "import_error" in e:
            rows.append([f"`{e['recipe']}`", peer, "not measured: " + e["import_error"], "", ""])
            continue
        c = e["counts"]
        tried = c["pass"] + c["fail"] + c["error"]
        worst = e["worst"].get("float64", {})
        rows.append([f"`{e['recipe']}`", peer, f"{c['pass']} of {tried}",
                     ", ".join(f"{k} {_fmt(v)}" for k, v in worst.items()), _signatures(e)])
    note = (f"\nMeasured with PyTorch {data['torch']} (CPU) and Python {data['python']}; the worst errors are "
            "over every float64 run, failing ones included.\n")
    return _table(["recipe", "peer", "runs that pass", "worst float64 errors", "diagnoses"], rows) + note


def peer_diagnoses(recipe: str) -> str:
    """What ``validate`` printed for one recipe: the line of what fails and each diagnosis."""
    (e,) = [e for e in _results()["recipes"] if e["recipe"] == recipe]
    if "import_error" in e:
        return f"Not measured here: importing the peer raised `{e['import_error']}`.\n"
    lines = [f"```text\nWhat fails: {e['what_fails'] or 'nothing'}."]
    for d in e["diagnoses"]:
        lines.append(f"* {d['summary']}\n  {len(d['runs'])} runs: {', '.join(d['runs'])}")
    return "\n".join(lines) + "\n```\n"


def mistake_report(name: str, loss: str = "ntxent") -> str:
    """What ``validate`` prints, from the line of what fails on, for ``tests/peers/mistakes.py:NAME``
    (PyTorch), run now."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "This build of the site had no PyTorch, so the report is not shown.\n"
    from probcon_ref.testing import load_callable, validate

    report = validate(load_callable(f"{PEERS / 'mistakes.py'}:{name}"), loss=loss, framework="torch",
                      target=f"tests/peers/mistakes.py:{name}")
    text = report.to_text()
    return "```text\n" + text[text.index("What fails"):] + "\n```\n"


def pml_supcon_reducer() -> str:
    """The measured fact about pytorch-metric-learning's SupConLoss and its default reducer."""
    facts = _results().get("pml_supcon_reducer")
    if not facts:
        return "pytorch-metric-learning was not installed when the results were measured.\n"
    same = "is" if facts["reduced_is_mean_of_nonzero"] else "is not"
    return (f"On the `{facts['case']}` case in float64, {facts['zero']} of its {facts['anchors']} per-anchor "
            f"losses are exactly 0, and the reduced loss ({facts['reduced']:.6g}) {same} the mean over the "
            f"other {facts['anchors'] - facts['zero']} ({facts['mean_of_nonzero']:.6g}).\n")


def validate_battery() -> str:
    """The cases of ``validate``'s battery: loss, name, what it holds, temperature, dtypes."""
    from probcon_ref.testing import battery

    rows = []
    for loss in ("pcl", "ntxent"):
        for c in battery(loss):
            rows.append(["PCL" if loss == "pcl" else "NT-Xent", f"`{c.name}`", c.description,
                         "" if c.temperature is None else f"{c.temperature:g}", ", ".join(c.dtypes)])
    return _table(["loss", "case", "what it holds", "temperature", "dtypes"], rows)


def _signature_rows() -> list[list[str]]:
    """Every signature ``validate`` can print, with what it says, from the diagnosis modules."""
    from probcon_ref.testing.diagnose import (GRADIENT_DIAGNOSES, OFFSETS, PREDICATES, REDUCTIONS, SCALED,
                                              VARIANTS)

    rows = [["`calling-convention`", "every call raised: the function is called another way"],
            ["`shape`", "the output's shape is not the declared reduction's"],
            ["`dtype`", "the loss or a gradient is not in the inputs' dtype"]]
    rows += [[f"`{v.key}`", v.summary] for v in VARIANTS]
    rows += [[f"`{key}`", red.summary] for key, red in REDUCTIONS.items() if key != "declared"]
    rows.append(["`VARIANT+REDUCTION`", "a variant with a reduction other than the declared one"])
    rows.append(["`loss-scaled`", "the loss is the reference's times a constant (or the temperature over "
                 "one), reported with the constant"])
    rows += [[f"`{key}`", f"a temperature on top of kappa, solved for: the logits are {form}"]
             for key, form in SCALED.items()]
    rows.append(["`temperature-scaled`", "NT-Xent: the temperature it is given times a constant, solved for"])
    rows.append(["`constant-offset`", "a loss error unchanged when the embeddings are redrawn"])
    rows += [[f"`constant-offset:{key}`", f"the offset is {what}"] for key, _, what, _ in OFFSETS]
    rows += [[f"`gradient:{key}`", summary] for key, (summary, _) in GRADIENT_DIAGNOSES.items()]
    rows.append(["`tiny-loss`", "the loss is right only to the rounding of its logits where it is tiny "
                 "(the textbook -F_ap + logsumexp_b F_ab)"])
    rows += [[f"`{p.key}`", p.summary] for p in PREDICATES]
    rows.append(["`unexplained`", "no signature and no regime fits: what fails, by how much, and how the "
                 "errors move with kappa, the temperature, d and N"])
    return rows


def validate_signatures() -> str:
    """Every signature of ``validate``'s diagnoses, as a table."""
    return _table(["signature", "what it says"], _signature_rows())


GENERATORS = {
    "peer_results": peer_results,
    "peer_diagnoses": peer_diagnoses,
    "pml_supcon_reducer": pml_supcon_reducer,
    "mistake_report": mistake_report,
    "validate_battery": validate_battery,
    "validate_signatures": validate_signatures,
}

#: Files a generator reads: a change to them rebuilds the page.
DEPENDENCIES = {name: (RESULTS, *SOURCES) for name in ("peer_results", "peer_diagnoses", "pml_supcon_reducer")}
DEPENDENCIES["mistake_report"] = (PEERS / "mistakes.py",)
