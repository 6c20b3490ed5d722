"""``probcon-ref experiment``: statistics, degradations, the PyTorch adapter and a tiny run.

The full default run (minutes) is not a test; here a few epochs on a few hundred images
check that the command produces every output, finite numbers and a falling loss, and the
committed report is checked to be what the code writes from the committed summary.
"""

from __future__ import annotations

import json
import math
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from probcon_ref.tools import cli  # noqa: E402
from probcon_ref import experiment as ex  # noqa: E402
from probcon_ref.experiment import core, report, stats  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "experiment"


def _all_numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _all_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _all_numbers(v)


def _nulls(obj, path=""):
    if obj is None:
        yield path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nulls(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nulls(v, f"{path}[{i}]")


def test_module_import_is_light():
    code = "import sys, probcon_ref.experiment; sys.exit('torch' in sys.modules or 'sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_rankdata_ties_and_spearman():
    assert stats.rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    x = np.arange(10.0)
    assert stats.spearman(x, x ** 3) == pytest.approx(1.0)
    assert stats.spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(stats.spearman(x, np.ones(10)))


def test_spearman_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=200).astype(float)  # many ties
    b = a + rng.normal(size=200)
    assert stats.spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)


def _template_fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.fixture
def committed_summary() -> dict:
    if not (COMMITTED / "summary.json").is_file():
        pytest.skip("no experiment report is committed")
    return json.loads((COMMITTED / "summary.json").read_text())


def test_committed_report_is_what_the_code_writes(committed_summary):
    """docs/experiment/report.md and report.txt, rewritten from the summary.json beside them."""
    summary = committed_summary
    assert report.report_markdown(summary) == (COMMITTED / "report.md").read_text()
    assert report.text_report(summary) == (COMMITTED / "report.txt").read_text()


@pytest.mark.parametrize("ablation", [True, False])
def test_template_fields_are_all_filled_and_all_used(committed_summary, ablation):
    summary = committed_summary
    if not ablation:
        summary["ablation_every_degradation_in_training"] = None
    fields = report.markdown_fields(summary)
    assert _template_fields(report.template("report.md")) == set(fields)
    assert ("#### Ablation" in fields["ablation"]) == ablation


@pytest.mark.parametrize("kind", core.DEGRADATIONS)
def test_degradations(kind):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 8, 8, generator=gen)
    assert torch.allclose(core.degrade(x, kind, 0.0, gen), x, atol=1e-6)
    y = core.degrade(x, kind, 1.0, gen)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().max() > 0.05
    per_image = core.degrade(x, kind, torch.linspace(0, 1, 5), gen)  # one strength per image
    assert torch.allclose(per_image[0], x[0], atol=1e-6)


def test_occlusion_area_follows_strength():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 1, 8, 8)
    y = core.occlude(x, torch.tensor([0.0, 0.5, 1.0]), gen)
    areas = (y == core.OCCLUDER_VALUE).sum(dim=(1, 2, 3)).tolist()
    assert areas == [0, 9, 36]


def test_augment_shapes_and_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=gen)
    v = core.augment(x, core.AugmentConfig(corrupt_prob=1.0), gen)
    assert v.shape == x.shape and float(v.min()) >= 0.0 and float(v.max()) <= 1.0


def test_parser_defaults():
    import argparse

    p = argparse.ArgumentParser()
    ex.add_arguments(p)
    args = p.parse_args([])
    assert args.out == ex.DEFAULT_OUT and args.docs is None
    assert p.parse_args(["--docs"]).docs == "docs"
    assert ex._parse_strengths(args.strengths) == list(ex.DEFAULT_STRENGTHS)
    with pytest.raises(ValueError):
        ex._parse_strengths("0.5,0.2")
    with pytest.raises(ValueError):
        ex._parse_corruptions("noise,fog", core.DEGRADATIONS)
    assert ex._parse_corruptions("none", core.DEGRADATIONS) == ()


def test_tiny_run_writes_every_output(tmp_path, capsys):
    docs = tmp_path / "docs"
    rc = cli.main([
        "experiment", "--docs", str(docs), "--limit", "240", "--epochs", "4", "--warmup-epochs", "1", "--batch-size", "60",
        "--threads", "1", "--no-progress",
    ])
    assert rc == 0
    out = docs / "experiment"
    summary = json.loads((out / "summary.json").read_text())
    for key in ("command", "torch_integration", "config", "data", "training", "degradation", "extremes",
                "linear_probe", "kappa_vs_cosine", "criteria", "figures", "timing_s"):
        assert key in summary, key
    assert summary["data"]["train"] + summary["data"]["held_out"] == 240
    assert not list(_nulls(summary)), f"NaN or inf in the summary at {list(_nulls(summary))}"
    assert all(math.isfinite(v) for v in _all_numbers(summary))
    for name in ("pcl", "ntxent"):
        losses = summary["training"][name]["epoch_loss"]
        assert len(losses) == 4 and losses[-1] < losses[0], (name, losses)
    deg = summary["degradation"]
    assert set(deg["spearman_by_type"]) == set(core.DEGRADATIONS)
    assert -1.0 <= deg["spearman_pooled"] <= 1.0
    for acc in summary["linear_probe"].values():
        assert math.isfinite(acc)
    for fname in summary["figures"].values():
        png = out / fname
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size < 300_000
    report = (out / "report.txt").read_text()
    assert "Spearman" in report and "linear probe" in report
    page = (out / "report.md").read_text()
    for fname in summary["figures"].values():
        assert f"]({fname})" in page
    assert "summary.json" in page
    assert "Spearman" in capsys.readouterr().out
