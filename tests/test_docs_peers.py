"""The peers page: its recipes, their committed measurements, and the lists it prints.

Nothing here builds the site (``tests/test_docs.py`` builds it once for every page): the
generators of ``docs/_ext/generated_peers.py`` are called directly, and the committed results
of ``tests/peers/measure_recipes.py`` are checked against the adapters they were measured on.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "peers.md"
PEERS = ROOT / "tests" / "peers"
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import generated_peers  # noqa: E402

from probcon_ref.testing import battery  # noqa: E402


def recipes() -> list[str]:
    tree = ast.parse((PEERS / "recipes.py").read_text())
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def test_results_were_measured_on_these_adapters():
    data = json.loads((PEERS / "recipes_results.json").read_text())
    sys.path.insert(0, str(PEERS))
    import measure_recipes

    assert data["sources_sha256"] == measure_recipes.sources_hash(), "run python tests/peers/measure_recipes.py"
    assert [e["recipe"] for e in data["recipes"]] == list(measure_recipes.PACKAGES) == recipes()
    for e in data["recipes"]:
        assert "import_error" in e or sum(e["counts"].values()) == 2 * len(battery("ntxent")) - 1


def test_page_shows_every_recipe_and_its_result():
    text = PAGE.read_text()
    for name in recipes():
        assert f":pyobject: {name}" in text, name
        if name != "lightly_ntxent":
            assert f"{{generated}} peer_diagnoses {name}" in text, name
    table = generated_peers.peer_results()
    assert all(f"`{name}`" in table for name in recipes())


def test_the_measured_supcon_facts_hold():
    """What the page says of pytorch-metric-learning's SupConLoss is what was measured."""
    data = json.loads((PEERS / "recipes_results.json").read_text())
    by_name = {e["recipe"]: e for e in data["recipes"]}
    if "import_error" in by_name["pml_supcon"]:
        pytest.skip("pytorch-metric-learning was not installed when the results were measured")
    facts = data["pml_supcon_reducer"]
    assert facts["zero"] > 0 and facts["reduced_is_mean_of_nonzero"]
    textbook = {"tiny-loss", "gradient:positive-weight"}
    for name in ("pml_ntxent", "pml_supcon_mean"):  # the page: every failing run named as the textbook form
        e = by_name[name]
        assert {d["signature"] for d in e["diagnoses"]} <= textbook
        assert set().union(*(set(d["runs"]) for d in e["diagnoses"])) == set(e["failing"])
    assert not {d["signature"] for d in by_name["pml_supcon"]["diagnoses"]} <= textbook
    assert by_name["supcon_as_trained"]["diagnoses"][0]["summary"] == (
        "The loss is the reference's times the case's temperature / 0.07")
    assert "loss-scaled" not in {d["signature"] for d in by_name["supcon_unscaled"]["diagnoses"]}


def test_the_lists_hold_every_case_and_signature():
    from probcon_ref.testing import diagnose as dg

    cases = generated_peers.validate_battery()
    for loss in ("pcl", "ntxent"):
        for c in battery(loss):
            assert f"`{c.name}`" in cases, c.name
    signatures = generated_peers.validate_signatures()
    keys = ([v.key for v in dg.VARIANTS] + [k for k in dg.REDUCTIONS if k != "declared"] + list(dg.SCALED)
            + [f"gradient:{k}" for k in dg.GRADIENT_DIAGNOSES] + [p.key for p in dg.PREDICATES]
            + [f"constant-offset:{k}" for k, *_ in dg.OFFSETS]
            + ["loss-scaled", "unexplained", "tiny-loss", "dtype", "shape", "calling-convention"])
    for key in keys:
        assert f"`{key}`" in signatures, key
