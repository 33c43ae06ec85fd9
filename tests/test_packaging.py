"""Packaging: the wheel carries the MNIST files where the loader finds them, and an
installed hadamnp keeps Numba's cache out of site-packages."""

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hadamnp import _numba_cache
from hadamnp.io import mnist

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = sorted(f"data/{name}.gz" for name in mnist.FILES.values())


def test_setup_cfg_installs_the_mnist_files_to_share():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    entries = dict(config["options.data_files"])
    assert set(entries) == {"share/hadamnp/data"}
    listed = sorted(entries["share/hadamnp/data"].split())
    assert listed == DATA_FILES
    for path in listed:
        assert (ROOT / path).is_file(), path


def _source_tree(destination):
    """A copy of what a wheel is built from (never build inside the checkout)."""
    destination.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    shutil.copytree(ROOT / "data", destination / "data")
    shutil.copytree(ROOT / "hadamnp", destination / "hadamnp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    return destination


def build_wheel(tmp_path):
    """``pip wheel . --no-deps`` of a copy of the checkout; return the wheel's path."""
    if importlib.util.find_spec("setuptools") is None or \
            importlib.util.find_spec("wheel") is None:
        pytest.skip("setuptools and wheel are needed to build a wheel without network "
                    "access (pip wheel --no-build-isolation)")
    source = _source_tree(tmp_path / "src")
    out = tmp_path / "wheel"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                             "--no-build-isolation", "--quiet", "-w", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("hadamnp-*.whl")
    return wheel


BENCH_MODULES = ("__init__", "__main__", "harness", "runner", "fwht", "binary", "integer",
                 "training")


def test_wheel_contains_the_data_and_the_bench(tmp_path):
    """The MNIST files (installed to share/hadamnp/data) and hadamnp.bench (so `hadamnp
    bench` works after `pip install .`) are in the wheel; no Numba cache file is."""
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    missing = [m for m in BENCH_MODULES if f"hadamnp/bench/{m}.py" not in names]
    assert not missing, f"wheel lacks hadamnp/bench modules {missing}"
    data = sorted(n.split("/data/", 1)[1] for n in names if ".data/data/" in n)
    assert data == sorted(f"share/hadamnp/{path}" for path in DATA_FILES)
    assert "hadamnp/_numba_cache.py" in names
    assert not [n for n in names if n.endswith((".nbi", ".nbc"))]


@pytest.mark.slow
def test_installed_wheel_trains_evaluates_and_exports_outside_the_checkout(tmp_path):
    """``pip install`` of the wheel into a fresh venv, then the README's first commands
    from another directory; the Numba cache stays out of site-packages."""
    wheel = build_wheel(tmp_path)
    # No PYTHONPATH: a checkout on it would count as an installed hadamnp.
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "HADAMNP_DATA", "NUMBA_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, env=env)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--quiet",
                    str(wheel)], check=True, env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def hadamnp(*args):
        result = subprocess.run([str(bin_dir / "hadamnp"), *args], cwd=work, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    hadamnp("train", "--out", "run", "--epochs", "1", "--steps-per-epoch", "3",
            "--val-batches", "1")
    assert "accuracy" in hadamnp("eval", "run", "--batches", "1")
    hadamnp("export", "run", "--format", "c", "--out", "m.h", "--eval-size", "50")
    assert (work / "m.h").is_file()
    site = subprocess.run([str(bin_dir / "python"), "-c",
                           "import hadamnp, os; print(os.path.dirname(hadamnp.__file__))"],
                          cwd=work, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert "site-packages" in site
    assert not list(Path(site).rglob("*.nbi")), "Numba cache written into site-packages"
    assert list((tmp_path / "cache" / "hadamnp" / "numba").rglob("*.nbi"))


def test_numba_cache_default(tmp_path):
    checkout = tmp_path / "repo" / "hadamnp"
    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "hadamnp"
    for folder in (checkout, installed):
        folder.mkdir(parents=True)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    assert _numba_cache.default_cache_dir(checkout, env) is None
    assert _numba_cache.default_cache_dir(installed, env) == tmp_path / "xdg/hadamnp/numba"
    assert _numba_cache.default_cache_dir(installed, {**env, "NUMBA_CACHE_DIR": "/x"}) is None
    assert _numba_cache.user_cache_dir({"HOME": str(tmp_path)}, "linux") == \
        tmp_path / ".cache/hadamnp/numba"
    assert _numba_cache.user_cache_dir({"LOCALAPPDATA": str(tmp_path)}, "win32") == \
        tmp_path / "hadamnp/numba"


def test_numba_cache_default_for_a_read_only_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(_numba_cache.os, "access", lambda path, mode: False)
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert _numba_cache.default_cache_dir(tmp_path, env) == tmp_path / "hadamnp/numba"


def test_import_sets_the_cache_dir_of_an_installed_copy(tmp_path):
    # The two modules `import hadamnp` runs, laid out as an installed package.
    site = tmp_path / "lib" / "site-packages"
    (site / "hadamnp").mkdir(parents=True)
    for name in ("__init__.py", "_numba_cache.py"):
        shutil.copy(ROOT / "hadamnp" / name, site / "hadamnp" / name)
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    code = "import os, sys, hadamnp; print(os.environ['NUMBA_CACHE_DIR'], 'numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "xdg" / "hadamnp" / "numba"), "False"]
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.stdout.split()[0] == str(tmp_path / "mine")
