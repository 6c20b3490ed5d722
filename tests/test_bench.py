"""The benchmark command runs end to end (a smoke run; speed itself is not a test)."""

from __future__ import annotations

import json

import pytest

from probcon_ref import bench
from probcon_ref.cli import main


def test_quick_benchmark_writes_a_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    assert main(["bench", "--quick", "--no-memory", "--repeats", "3", "--json", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    sections = {r["section"] for r in report["ratios"]}
    assert {"loss", "special"} <= sections
    for r in report["ratios"]:
        assert r["ours_ms"] > 0 and r["other_ms"] > 0
    assert "| loss |" in md.read_text()
    assert "ratio" in capsys.readouterr().out


def test_unknown_case_is_rejected():
    with pytest.raises(ValueError, match="unknown benchmark case"):
        bench._make_case("no-such-case", 8, 4, "float64")
