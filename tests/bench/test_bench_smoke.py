"""Smoke tests of the benchmark harness, runner and packaging (no speed is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hadamnp.bench import harness, runner
from hadamnp.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
TIMING_FIELDS = ("median_s", "min_s", "q1_s", "q3_s", "iqr_s", "repeats", "number",
                 "first_call_s", "compile_s")


def test_time_call_fields_and_order():
    calls = []
    timing = harness.time_call(lambda: calls.append(1), budget_s=0.005, warmup=2, min_repeats=4)
    assert set(TIMING_FIELDS) <= set(timing), sorted(timing)
    assert 0 < timing["min_s"] <= timing["q1_s"] <= timing["median_s"] <= timing["q3_s"], timing
    assert timing["iqr_s"] == pytest.approx(timing["q3_s"] - timing["q1_s"])
    assert timing["repeats"] >= 4 and timing["number"] >= 1 and timing["compile_s"] >= 0, timing
    # first call + warm-up + every call of every sample
    assert len(calls) == 1 + 2 + timing["repeats"] * timing["number"], (len(calls), timing)


def test_time_call_rejects_bad_repeats():
    with pytest.raises(ValueError, match="min_repeats"):
        harness.time_call(lambda: None, min_repeats=0)


def test_make_row_derived_figures():
    timing = {"median_s": 2e-3, "min_s": 1e-3, "q1_s": 1.5e-3, "q3_s": 2.5e-3, "iqr_s": 1e-3,
              "repeats": 5, "number": 1, "first_call_s": 0.1, "compile_s": 0.098}
    row = harness.make_row("b", "case", "hadamnp", timing, elements=1000, bound_s=1e-3,
                           target_s=1e-3, n=8, threads=1)
    assert row["elements_per_s"] == pytest.approx(5e5), row
    assert row["bound_fraction"] == pytest.approx(0.5), row
    assert row["meets_target"] is False and row["n"] == 8, row
    other = harness.make_row("b", "case", "blas", {**timing, "median_s": 6e-3}, threads=1)
    skipped = harness.skip_row("b", "case", "torch", "torch not importable")
    harness.add_ratios([row, other, skipped])
    assert other["hadamnp_speedup"] == pytest.approx(3.0), other
    assert "hadamnp_speedup" not in row and "hadamnp_speedup" not in skipped
    table = harness.format_table([row, other, skipped])
    assert "hadamnp_speedup" in table and "3x" in table and "torch not importable" in table, table
    assert "threads" in table.splitlines()[0], table


def test_copy_time_is_positive():
    assert 0 < harness.copy_time(4096, quick=True) < 1


def test_format_seconds():
    assert [harness.format_seconds(s) for s in (1.5, 2.5e-3, 1.68e-5, 3e-8, None)] == \
        ["1.5 s", "2.5 ms", "16.8 us", "30 ns", "-"]


def test_machine_facts_and_jsonl(tmp_path):
    facts = harness.machine_facts()
    for key in ("cpu_model", "cpu_flags", "cpu_count", "thread_env", "numpy", "numba", "blas",
                "load_average"):
        assert key in facts, sorted(facts)
    row = {"bench": "b", "case": "c", "impl": "i", "median_s": 1e-6}
    path = harness.write_jsonl(tmp_path / "sub" / "r.jsonl", [row], facts)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["machine"]["numpy"] == facts["numpy"], lines[0]
    assert lines[1]["median_s"] == 1e-6 and lines[1]["machine"]["cpu_count"] == facts["cpu_count"]


def _row(bench, case, impl, median_s, **extra):
    return {"bench": bench, "case": case, "impl": impl, "median_s": median_s, **extra}


def test_summary_judges_targets_and_reports_missing_modules():
    smnist = runner._SMNIST
    rows = [_row("integer", "step n=512 B=1", "hadamnp-int", 1e-6),
            _row("integer", "step n=512 B=1", "sgemv-only", 1e-5),
            _row("training", smnist, "hadamnp-model", 40e-3),
            _row("training", runner._BIG, "hadamnp-checkpointed", 1.0, state_bytes=150e6)]
    rows += [_row("fwht", f"fwht float32 n=512 B={B}", impl, t) for B in range(2, 16)
             for impl, t in (("hadamnp-columns", 1.1e-6 if B != 7 else 2e-6),
                             ("hadamnp-rows-inplace", 1e-6))]
    by_job = {s["job"]: s for s in runner.summary_rows(rows, {"fwht": "ok"})}
    integer = by_job["integer step n=512 batch 1"]
    assert integer["verdict"].startswith("MEETS") and "sgemv-only 10 us (10x)" in \
        integer["measured here"], integer
    assert by_job["training step, sMNIST shape, 1 thread"]["verdict"].startswith("misses")
    assert by_job["same, 2 threads vs 1"]["verdict"].startswith("misses (no parallel path")
    columns = by_job["FWHT columns n=512 B=2..15 vs rows"]
    assert columns["hadamnp"] == "2x" and "B=7" in columns["verdict"], columns
    assert by_job["state memory n=4096 T=784 B=100 (checkpointed)"]["hadamnp"] == "150 MB"
    assert by_job["same, time vs all states stored"]["verdict"] == \
        "not measured (training: not run)"
    assert by_job["FWHT n=512 batch 100 (float32)"]["verdict"] == "not measured (fwht: ok)"


def test_default_output_is_outside_the_checkout():
    path = runner.default_json_path()
    assert path.suffix == ".jsonl" and REPO not in path.parents, path


def test_cli_bench_runs_the_packaged_runner(monkeypatch, tmp_path):
    """`hadamnp bench` starts `python -m hadamnp.bench` (no source checkout needed)."""
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(cli_main, ["bench", "--quick", "--threads", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert calls == [[sys.executable, "-m", "hadamnp.bench", "--threads", "2", "--quick",
                      "--json", str(out)]], calls
