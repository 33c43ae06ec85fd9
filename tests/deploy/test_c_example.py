"""The shipped C example (examples/c) is what make_example.py regenerates, and regenerating
it writes nowhere near the checkout unless asked."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np

from hadamnp.io.npzfile import read_npz_checked

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "c"


def load_script():
    spec = importlib.util.spec_from_file_location("make_example",
                                                  EXAMPLE_DIR / "make_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerated_example_matches_the_shipped_files(tmp_path):
    script = load_script()
    script.build(tmp_path)
    for name in ("hadamrnn_model.h", "example_input.txt", "example_expected.txt"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE_DIR / name).read_bytes(), name
    new, new_meta = read_npz_checked(tmp_path / "example_model.npz")
    old, old_meta = read_npz_checked(EXAMPLE_DIR / "example_model.npz")
    assert new.keys() == old.keys()
    assert all(np.array_equal(new[key], old[key]) and new[key].dtype == old[key].dtype
               for key in new)
    # Float calibration statistics may differ in the last bits with another BLAS.
    stats = ("max_abs_x", "max_abs_h", "stat_h")
    for key in stats:
        assert np.isclose(new_meta["calibration"][key], old_meta["calibration"][key],
                          rtol=1e-12, atol=0)
    strip = [{**meta, "calibration": {k: v for k, v in meta["calibration"].items()
                                      if k not in stats}} for meta in (new_meta, old_meta)]
    assert strip[0] == strip[1]


def test_default_output_is_a_new_temporary_directory(capsys):
    script = load_script()
    before = {p: p.stat().st_mtime_ns for p in EXAMPLE_DIR.iterdir()}
    assert script.main([]) == 0
    written = [Path(line.split(": ", 1)[1]) for line in capsys.readouterr().out.splitlines()]
    assert len(written) == 4 and all(p.is_file() and p.parent != EXAMPLE_DIR for p in written)
    assert {p: p.stat().st_mtime_ns for p in EXAMPLE_DIR.iterdir()} == before
    shutil.rmtree(written[0].parent)
    status = script.main(["--check"])
    out = capsys.readouterr().out
    # Only the npz may differ (its float calibration statistics, with another BLAS).
    assert (status, out) == (0, "the shipped example files are reproduced byte for byte\n") \
        or (status, out) == (1, "differs from the shipped file: example_model.npz\n"), out
