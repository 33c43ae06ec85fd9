"""Smoke tests of the compact-RNN benchmarks: hadamnp.bench.ldr (FFT vs dense products) and
bench/compact_curve.py (accuracy against parameters). No speed and no accuracy is
asserted."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ldr_rows_check_the_fft_product_and_pair_it_with_dense():
    from hadamnp.bench import ldr as bench

    rows = bench.matmul_rows(64, 3, 2, quick=True, threads="1")
    rows += bench.matmul_rows(64, 3, 2, quick=True, threads="1", backward=True)
    assert [r["impl"] for r in rows] == ["hadamnp-fft", "blas-dense"] * 2
    assert all(r["check"] < 1e-5 for r in rows[::2]), rows
    assert all(r["hadamnp_speedup"] > 0 for r in rows[1::2])
    build = bench.build_rows(16, 2, quick=True, threads="1")
    assert build[0]["check"] < 1e-5 and build[1]["impl"] == "reference-dense"


def test_crossover_is_the_first_size_from_which_fft_stays_faster():
    from hadamnp.bench import ldr as bench

    def pair(n, ratio):
        return {"job": "matmul", "B": 1, "r": 2, "n": n, "impl": "blas-dense",
                "hadamnp_speedup": ratio}

    rows = [pair(256, 0.5), pair(512, 1.2), pair(1024, 0.9), pair(2048, 1.5), pair(4096, 9.0)]
    (summary,) = bench.crossovers(rows)
    assert summary["crossover_n"] == 2048 and summary["ratio_at_largest_n"] == 9.0
    (never,) = bench.crossovers([pair(256, 0.5), pair(512, 0.7)])
    assert never["crossover_n"] is None


def test_curve_commands_match_the_documented_variants(tmp_path):
    curve = _load("compact_curve")
    names = [name for name, _, _ in curve.variants()]
    assert names == ["lstm", "lstm-ldr:1", "lstm-ldr:2", "lstm-ldr:4", "lstm-shared:2",
                     "lstm-shared:3", "lstm-shared:6", "hadamrnn"]
    namespace = type("Args", (), dict(hidden=128, batch_size=100, steps=300, epochs=1, lr=2e-3,
                                      eval_batch_size=500, val_batches=1, test_batches=4,
                                      seed=0, checkpoint_every=50, adding_length=100))
    cmd = curve.command("pmnist", "lstm", ["-O", "param_rec=ldr:2"], tmp_path, namespace)
    assert cmd[:2] == ["hadamnp", "train"] and cmd[-2:] == ["-O", "param_rec=ldr:2"]
    assert "--adding-length" not in cmd
    assert "--adding-length" in curve.command("adding", "lstm", [], tmp_path, namespace)


@pytest.mark.slow
def test_curve_end_to_end_on_tiny_runs(tmp_path, monkeypatch):
    """Two tiny adding runs through ``hadamnp train`` subprocesses, then the table and the
    JSON records (needs this checkout importable by ``python -m hadamnp``)."""
    curve = _load("compact_curve")
    records = curve.main(["--task", "adding", "--only", "lstm-ldr:1", "hadamrnn",
                          "--steps", "2", "--hidden", "8", "--adding-length", "10",
                          "--eval-batch-size", "20", "--checkpoint-every", "1",
                          "--root", str(tmp_path / "runs"), "--results", str(tmp_path)])
    assert [r["variant"] for r in records] == ["lstm-ldr:1", "hadamrnn"]
    stored = json.loads((tmp_path / "curve.json").read_text())
    assert stored == json.loads(json.dumps(records))
    assert records[0]["recurrent_parameters"] == 4 * 2 * 8 and "mse" in records[0]["test"]
    assert "| adding | lstm-ldr:1 |" in (tmp_path / "curve.md").read_text()
