"""Smoke tests of the benchmark harness and runner plumbing (no speed is asserted)."""

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import hadamnp
from hadamnp.cli import main as cli_main

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness():
    return _load("_harness")


TIMING_FIELDS = ("median_s", "min_s", "q1_s", "q3_s", "iqr_s", "repeats", "number",
                 "first_call_s", "compile_s")


def test_time_call_fields_and_order(harness):
    calls = []
    timing = harness.time_call(lambda: calls.append(1), budget_s=0.005, warmup=2, min_repeats=4)
    assert set(TIMING_FIELDS) <= set(timing), sorted(timing)
    assert 0 < timing["min_s"] <= timing["q1_s"] <= timing["median_s"] <= timing["q3_s"], timing
    assert timing["iqr_s"] == pytest.approx(timing["q3_s"] - timing["q1_s"])
    assert timing["repeats"] >= 4 and timing["number"] >= 1 and timing["compile_s"] >= 0, timing
    # first call + warm-up + every call of every sample
    assert len(calls) == 1 + 2 + timing["repeats"] * timing["number"], (len(calls), timing)


def test_time_call_rejects_bad_repeats(harness):
    with pytest.raises(ValueError, match="min_repeats"):
        harness.time_call(lambda: None, min_repeats=0)


def test_make_row_derived_figures(harness):
    timing = {"median_s": 2e-3, "min_s": 1e-3, "q1_s": 1.5e-3, "q3_s": 2.5e-3, "iqr_s": 1e-3,
              "repeats": 5, "number": 1, "first_call_s": 0.1, "compile_s": 0.098}
    row = harness.make_row("b", "case", "hadamnp", timing, elements=1000, bound_s=1e-3,
                           target_s=1e-3, n=8)
    assert row["elements_per_s"] == pytest.approx(5e5), row
    assert row["bound_fraction"] == pytest.approx(0.5), row
    assert row["meets_target"] is False and row["n"] == 8, row
    other = harness.make_row("b", "case", "blas", {**timing, "median_s": 6e-3})
    skipped = harness.skip_row("b", "case", "torch", "torch not importable")
    harness.add_ratios([row, other, skipped])
    assert other["hadamnp_speedup"] == pytest.approx(3.0), other
    assert "hadamnp_speedup" not in row and "hadamnp_speedup" not in skipped
    table = harness.format_table([row, other, skipped])
    assert "hadamnp_speedup" in table and "3x" in table and "torch not importable" in table, table


def test_format_seconds(harness):
    assert [harness.format_seconds(s) for s in (1.5, 2.5e-3, 1.68e-5, 3e-8, None)] == \
        ["1.5 s", "2.5 ms", "16.8 us", "30 ns", "-"]


def test_machine_facts_and_jsonl(harness, tmp_path):
    facts = harness.machine_facts()
    for key in ("cpu_model", "cpu_flags", "cpu_count", "thread_env", "numpy", "numba", "blas",
                "load_average"):
        assert key in facts, sorted(facts)
    row = {"bench": "b", "case": "c", "impl": "i", "median_s": 1e-6}
    path = harness.write_jsonl(tmp_path / "sub" / "r.jsonl", [row], facts)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["machine"]["numpy"] == facts["numpy"], lines[0]
    assert lines[1]["median_s"] == 1e-6 and lines[1]["machine"]["cpu_count"] == facts["cpu_count"]


def test_summary_reports_missing_module():
    run_all = _load("run_all")
    row = {"bench": "integer", "case": "step n=512 B=1", "impl": "hadamnp-int", "median_s": 1e-6}
    alt = {**row, "impl": "sgemv-only", "median_s": 1e-5}
    summary = run_all.summary_rows([row, alt], {"bench_fwht": "missing"})
    by_job = {s["job"]: s for s in summary}
    fwht = by_job["FWHT n=512 batch 100 (float32)"]
    assert fwht["verdict"] == "not measured (bench_fwht: missing)", fwht
    integer = by_job["integer step n=512 batch 1"]
    assert integer["verdict"] == "MEETS" and "sgemv-only 10 us (10x)" in \
        integer["alternatives measured here (x = alt / hadamnp)"], integer


def test_cli_bench_without_source_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(hadamnp, "__file__", str(tmp_path / "site" / "hadamnp" / "__init__.py"))
    result = CliRunner().invoke(cli_main, ["bench", "--quick"])
    assert result.exit_code == 1, result.output
    assert "benchmark scripts not found" in result.output, result.output
