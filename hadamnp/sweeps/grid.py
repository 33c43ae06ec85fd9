"""Sweep grids: a TOML file that describes many training runs.

A grid holds fixed options (``[base]``, a run configuration in its TOML form, preset
included), axes whose values are combined (``[axes]``, the Cartesian product in file
order) and/or an explicit list of runs (``[[runs]]``, each merged over the base)::

    name = "families"              # sweep directory: sweeps/<name> unless --out is given

    [base]
    preset = "pmnist"
    epochs = 2
    checkpoint_every = 100
    [base.model]
    hidden_size = 128

    [axes]                          # keys are dotted paths into the run configuration
    "model.name" = ["hadamrnn", "block-hadamrnn"]
    seed = [1, 2, 3]

    [[runs]]                        # more runs, outside the product
    label = "fp-dense"              # optional: names the run and its report group
    "model.name" = "dense"
    "model.quant_in" = "none"

The key ``label`` (in ``[axes]`` or ``[[runs]]``) is no run option: it names the run
directory (``r<index>-<label>-seed=<seed>``) and the run's group in the report. Every run
is validated (a :class:`~hadamnp.runs.config.RunConfig`) when the grid is read, so a typo
anywhere fails before anything trains. Unknown top-level keys are errors. Each run
gets a stable identifier ``r<index>-<axis values>`` and its own run directory.
"""

import itertools
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hadamnp.errors import ConfigError
from hadamnp.runs.config import RunConfig, resolve_config

__all__ = ["SweepRun", "Grid", "LABEL", "load_grid", "parse_grid"]

GRID_KEYS = ("name", "base", "axes", "runs")
LABEL = "label"  # a settings key that names a run instead of setting an option


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes
    ----------
    run_id : str
        ``r<index>-<slug>``, unique in the sweep and stable for the same grid.
    settings : dict
        The dotted settings that distinguish this run (axis values and ``[[runs]]`` keys).
    config : RunConfig
    """

    run_id: str
    settings: dict
    config: RunConfig


@dataclass(frozen=True)
class Grid:
    """A parsed grid: its name and its runs, in order."""

    name: str
    runs: tuple
    source: dict

    def group_keys(self):
        """Settings keys that distinguish runs, seed excluded (what a report groups by)."""
        keys = dict.fromkeys(k for run in self.runs for k in run.settings if k != "seed")
        return tuple(keys)


def _set_dotted(target, path, value, where):
    """``target["a"]["b"] = value`` for ``path = "a.b"``, creating tables on the way."""
    parts = path.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: empty part in key {path!r}")
    for part in parts[:-1]:
        node = target.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {path!r} sets a field inside {part!r}, "
                              f"which is not a table")
        target = node
    target[parts[-1]] = value


def _merged(base, settings, where):
    """A deep copy of ``base`` with the dotted ``settings`` applied."""
    import copy

    values = copy.deepcopy(base)
    for path, value in settings.items():
        _set_dotted(values, path, value, where)
    return values


def _slug(settings):
    if LABEL in settings:
        seed = [f"seed={settings['seed']}"] if "seed" in settings else []
        text = "-".join([str(settings[LABEL]), *seed])
    else:
        text = "-".join(f"{k.split('.')[-1]}={v}" for k, v in settings.items())
    return re.sub(r"[^A-Za-z0-9=._+-]+", "_", text)[:80]


def _resolve(values, where):
    options = dict(values)
    preset = options.pop("preset", None)
    try:
        return resolve_config(preset=preset, overrides=options)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_grid(values, default_name="sweep"):
    """The :class:`Grid` described by a dict in the grid-file form (see the module docstring).

    Raises
    ------
    ConfigError
        Unknown keys, malformed axes, or a run whose configuration is invalid (named).
    """
    if not isinstance(values, dict):
        raise ConfigError("a sweep grid must be a table")
    unknown = sorted(set(values) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"unknown grid key {unknown[0]!r}; a grid has "
                          f"{', '.join(GRID_KEYS)}")
    name = values.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"grid name must be letters, digits, '.', '_' or '-', got {name!r}")
    base = values.get("base", {})
    axes = values.get("axes", {})
    extra = values.get("runs", [])
    if not isinstance(base, dict) or not isinstance(axes, dict):
        raise ConfigError("[base] and [axes] must be tables")
    if not isinstance(extra, list) or not all(isinstance(r, dict) for r in extra):
        raise ConfigError("[[runs]] must be a list of tables")
    for key, choices in axes.items():
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"axis {key!r} must be a non-empty list of values")
    settings_list = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] \
        if axes else []
    settings_list += [dict(run) for run in extra]
    if not settings_list:
        settings_list = [{}]
    runs, seen = [], {}
    for index, settings in enumerate(settings_list):
        run_id = f"r{index:03d}" + (f"-{_slug(settings)}" if settings else "")
        options = {k: v for k, v in settings.items() if k != LABEL}
        config = _resolve(_merged(base, options, run_id), f"run {run_id}")
        key = json.dumps(config.to_dict(), sort_keys=True)
        if key in seen:
            raise ConfigError(f"runs {seen[key]} and {run_id} have the same configuration")
        seen[key] = run_id
        runs.append(SweepRun(run_id, settings, config))
    return Grid(name=name, runs=tuple(runs), source=values)


def load_grid(path):
    """Read and validate a grid TOML file (see :func:`parse_grid`)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read grid file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a valid TOML grid: {exc}") from None
    try:
        return parse_grid(values, default_name=path.stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
