"""The benchmark command runs end to end (a smoke run; speed itself is not a test)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from probcon_ref.tools import bench, measure
from probcon_ref.tools.cli import main


def test_quick_benchmark_writes_a_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    assert main(["bench", "--quick", "--no-memory", "--repeats", "3", "--json", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    sections = {r["section"] for r in report["ratios"]}
    assert {"loss", "special"} <= sections
    if importlib.util.find_spec("torch") is not None:
        assert "integration" in sections and report["float32_finiteness"]["integration_finite"]
    for r in report["ratios"]:
        assert r["ours_ms"] > 0 and r["other_ms"] > 0
    assert "| loss |" in md.read_text()
    assert "ratio" in capsys.readouterr().out


def test_quick_benchmark_runs_without_scipy(tmp_path, capsys, monkeypatch):
    """SciPy only provides baselines: without it the SciPy rows are left out, with the reason."""
    for name in ("scipy", "scipy.special"):
        monkeypatch.setitem(sys.modules, name, None)  # `import scipy` now raises ImportError
    assert not bench._scipy_available()
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(["bench", "--quick", "--no-memory", "--repeats", "3", "--json", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    sections = {r["section"] for r in report["ratios"]}
    assert "loss" in sections and "special" not in sections
    assert not [r for r in report["ratios"] if r["other"] == "naive-pcl"]
    assert any(s.startswith("section 3, SciPy is not installed") for s in report["skipped"])
    if "integration" in sections:  # PyTorch present: its rows stay, the naive SciPy PCL goes
        assert report["float32_finiteness"]["naive_finite"] is None
        assert all("naive-pcl" not in m for m in report["integration_memory"])
    assert "Not measured: section 3, SciPy is not installed" in md.read_text()
    assert "skipped: section 3, SciPy is not installed" in capsys.readouterr().out


def test_unknown_case_is_rejected():
    with pytest.raises(ValueError, match="unknown benchmark case"):
        measure.make_case("no-such-case", 8, 4, "float64")


def test_device_section_rehearses_on_the_cpu():
    """The GPU section's code, run on PyTorch's CPU: every case timed, ratios against the
    baseline and the floor computed from the times of the same run."""
    pytest.importorskip("torch")
    from probcon_ref.tools import bench_device

    r = bench_device.device_section(n2=128, d=16, device="cpu", repeats=3, budget_s=2.0)
    times = r["times_ms"]
    assert bench_device.BASELINE in times and all(v > 0 for v in times.values())
    assert r["floor_ms"]["torch"] == pytest.approx(times["torch floor: 3 products"]
                                                   + 1.5 * times["torch floor: copy (2N x 2N)"])
    cases = {row["case"]: row for row in r["rows"]}
    assert {"torch integration PCL fwd+bwd", "torch pcl_loss_and_grad"} <= set(cases)
    row = cases["torch pcl_loss_and_grad"]
    assert row["over_baseline"] == pytest.approx(row["ms"] / times[bench_device.BASELINE])
    assert row["over_floor"] == pytest.approx(row["ms"] / r["floor_ms"]["torch"])
    assert "| torch pcl_loss_and_grad |" in bench_device.to_markdown(r)


def test_size_sweep_times_each_target_and_stops_on_time():
    """backends/gpu-check's timings, on NumPy: one row per target and 2N, none once time is up."""
    from probcon_ref.tools import bench_device
    from probcon_ref.tools.backends import make_target

    targets = [make_target("numpy", "cpu", dt) for dt in ("float64", "float32")]
    rows = bench_device.size_sweep(targets, [8, 16], 4, repeats=3, budget_s=0.05)
    assert [(r["backend"], r["dtype"], r["2N"]) for r in rows] == [
        ("numpy", "float64", 8), ("numpy", "float64", 16), ("numpy", "float32", 8), ("numpy", "float32", 16)]
    assert all(r["pcl_over_ntxent"] == r["pcl_loss_and_grad_ms"] / r["ntxent_loss_and_grad_ms"] for r in rows)
    assert "| numpy | float32 | 16 | 4 |" in bench_device.sweep_markdown(rows)
    assert bench_device.size_sweep(targets, [8], 4, time_left=lambda: 5.0, reserve=10.0) == []


def test_committed_cpu_results_meet_the_targets():
    """The results on the docs' benchmark page (measured, not typed: `probcon-ref bench
    --json`) meet the CPU targets; this reads them, it times nothing."""
    from pathlib import Path

    report = json.loads((Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "cpu.json").read_text())

    def ratio(section, backend, dtype, ours, other, n2, d):
        rows = [r for r in report["ratios"] if (r["section"], r["backend"], r["dtype"], r["ours"], r["other"],
                                                 r["n2"], r["d"]) == (section, backend, dtype, ours, other, n2, d)]
        assert len(rows) == 1, (section, backend, dtype, ours, other)
        return rows[0]["ours_ms"] / rows[0]["other_ms"]

    for backend in ("numpy-cpu", "torch-cpu"):
        for dtype in ("float32", "float64"):
            assert ratio("loss", backend, dtype, "pcl", "ntxent", 2048, 128) <= 1.2
    for dtype in ("float32", "float64"):
        assert ratio("integration", "torch-cpu", dtype, "integration-pcl", "autograd-ntxent", 2048, 128) <= 1.3
        assert ratio("integration", "torch-cpu", dtype, "integration-pcl", "naive-pcl", 2048, 128) < 1.0
    for mem in report["integration_memory"]:
        assert mem["integration-pcl"] <= mem["autograd-ntxent"], mem
    assert ratio("special", "numpy-cpu", "float64", "log_iv+bessel_ratio", "scipy ive x2", 4_000_000, 63) <= 0.5
    big = [m for m in report["memory"] if m["n2"] == 65536 and m["dtype"] == "float32"]
    assert big and big[0]["peak_bytes"] <= 4 * 2**30
    assert report["float32_finiteness"]["integration_finite"] and not report["float32_finiteness"]["naive_finite"]
