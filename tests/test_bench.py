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
    assert main(["bench", "--quick", "--no-memory", "--repeats", "3", "--compile-backend", "aot_eager",
                 "--json", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    sections = {r["section"] for r in report["ratios"]}
    assert {"loss", "special"} <= sections
    if importlib.util.find_spec("torch") is not None:
        assert "integration" in sections and report["float32_finiteness"]["integration_finite"]
        assert {"training", "bank"} <= sections and report["training"]["backend"] == "aot_eager"
        assert "| PCLLoss step, compiled |" in md.read_text()
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
    assert main(["bench", "--quick", "--no-memory", "--no-training", "--repeats", "3", "--json", str(out),
                 "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    sections = {r["section"] for r in report["ratios"]}
    assert "loss" in sections and "special" not in sections
    assert "section 7, turned off (--no-training)" in report["skipped"] and "training" not in sections
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


def test_training_section_reports_every_row():
    """Section 7 at tiny sizes (the quick ``aot_eager`` backend: the code path, not the speed):
    every row timed, every compiled step's first call, graphs and breaks, the targets judged."""
    pytest.importorskip("torch")
    from probcon_ref.tools import bench_training

    r = bench_training.training_section((32, 8), (32, 8), [48, 96], repeats=3, memory=False, backend="aot_eager")
    assert [(row["section"], row["ours"]) for row in r["rows"]] == [
        ("training", "PCLLoss step, compiled"), ("training", "PCLLoss step, eager"),
        ("bank", "PCLLoss, M = 48"), ("bank", "NTXentLoss, M = 48"),
        ("bank", "PCLLoss, M = 96"), ("bank", "NTXentLoss, M = 96")]
    for row in r["rows"]:
        assert 0 < row["ours_ms"] < float("inf") and 0 < row["other_ms"] < float("inf"), row
    for name, step in r["steps"].items():
        assert 0 < step["ms"] < float("inf"), name
        if name.endswith("compiled"):
            assert step["first_call_s"] > 0
            assert isinstance(step["graph_count"], int) and isinstance(step["graph_break_count"], int)
    assert len(r["steps"]) == 4 and len(r["bank"]) == 2
    assert all(e["ntxent_rel_diff"] <= 1e-5 for e in r["bank"])
    assert [t["limit"] for t in r["targets"]] == [1.1, 1.2, 1.2]
    assert all(isinstance(t["met"], bool) for t in r["targets"])
    md = bench_training.to_markdown(r)
    assert "| PCLLoss step, compiled |" in md and "| 96 | autograd NT-Xent + queue |" in md


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("float64", 1e-12)])
def test_queue_baseline_is_the_modules_ntxent_with_a_memory_bank(dtype, tolerance):
    """autograd NT-Xent with a queue and NTXentLoss(memory_bank_size=M) with that queue are
    the same loss: values and gradients agree to rounding."""
    torch = pytest.importorskip("torch")
    from probcon_ref.torch import NTXentLoss
    from probcon_ref.tools.baselines import autograd_ntxent_with_queue

    z1, z2, _, _ = (torch.as_tensor(a) for a in measure.inputs(24, 8, dtype))
    queue_rows = torch.as_tensor(measure.inputs(80, 8, dtype, seed=3)[0])
    criterion = NTXentLoss(0.2, memory_bank_size=40)
    criterion.memory_bank.push(queue_rows)
    queue = criterion.memory_bank.directions.clone()
    results = []
    for loss in (lambda a, b: criterion(a, b), lambda a, b: autograd_ntxent_with_queue(a, b, queue, 0.2)):
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        value = loss(a, b)
        value.backward()
        results.append((float(value.detach()), a.grad, b.grad))
    (ours, ga, gb), (theirs, ha, hb) = results
    assert abs(ours - theirs) <= tolerance * abs(theirs)
    for g, h in ((ga, ha), (gb, hb)):
        assert float((g - h).abs().max()) <= 10 * tolerance * float(h.abs().max())


def test_a_compiled_step_is_measured_after_its_compilation_in_a_child():
    pytest.importorskip("torch")
    from probcon_ref.tools import bench_training

    peak = measure.child_measurement("probcon_ref.tools.bench_training", "_step_probe", "PCLLoss", True,
                                     32, 8, "aot_eager", "float32")
    assert peak is None or 0 <= peak < 2**30
    with pytest.raises(ValueError, match="unknown memory-bank case"):
        bench_training.bank_case("no-such-case", 8, 4, 16)
