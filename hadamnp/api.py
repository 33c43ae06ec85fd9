"""The small public API, re-exported lazily by :mod:`hadamnp` (``import hadamnp``)::

    import hadamnp

    result = hadamnp.train({"task": "pmnist", "epochs": 1}, "runs/demo")  # or a RunConfig
    model, params, config = hadamnp.load("runs/demo")
    logits = hadamnp.predict(model, params, x)                  # x (B, T, d_in)
    hadamnp.evaluate(model, params, config, split="test")       # {"loss", "accuracy"/"mse", ...}
    model = hadamnp.build_model("hadamrnn", input_size=1, output_size=10, hidden_size=128)
"""

from pathlib import Path

from hadamnp.errors import ConfigError

__all__ = ["train", "resume", "load", "predict", "evaluate"]


def train(config=None, run_dir=None, *, callback=None, max_steps=None):
    """Train a model and write its run directory (checkpoints, ``metrics.jsonl``).

    Parameters
    ----------
    config : RunConfig, dict, str or None
        A :class:`~hadamnp.runs.config.RunConfig`; a dict of options in its TOML form
        (e.g. ``{"task": "copy", "model": {"name": "hadamrnn", "hidden_size": 64}}``,
        layered over the task's preset as on the command line); a preset name; ``None``
        for the default ``quick`` preset.
    run_dir : str or os.PathLike, optional
        Default: a new ``runs/<task>-<model>-n<hidden>-<time>`` directory.
    callback, max_steps
        See :func:`hadamnp.training.loop.train`.

    Returns
    -------
    hadamnp.training.loop.RunResult
    """
    from hadamnp.runs.config import RunConfig, resolve_config
    from hadamnp.runs.plumbing import default_run_dir
    from hadamnp.training import loop

    if config is None or isinstance(config, str):
        config = resolve_config(preset=config)
    elif isinstance(config, dict):
        config = resolve_config(overrides=config)
    elif not isinstance(config, RunConfig):
        raise ConfigError(f"config must be a RunConfig, a dict of options, a preset name or "
                          f"None, got {type(config).__name__}")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    return loop.train(config, run_dir, callback=callback, max_steps=max_steps)


def resume(run_dir, *, callback=None, max_steps=None, **overrides):
    """Continue a run from its latest checkpoint, bit for bit
    (see :func:`hadamnp.training.loop.resume`)."""
    from hadamnp.training import loop

    return loop.resume(run_dir, callback=callback, max_steps=max_steps, **overrides)


def load(path):
    """``(model, params, config)`` of a run directory or checkpoint file.

    ``model`` is rebuilt through the registry from the checkpoint's description, ``params``
    are the trained parameters, ``config`` the run's :class:`RunConfig`. No data is loaded.
    """
    from hadamnp.runs.plumbing import restore

    return restore(path)


def predict(model, params, x):
    """Deterministic outputs of ``model`` on ``x`` (B, T, d_in): logits (B, d_out) or
    (B, T, d_out) (a new array)."""
    outputs, _ = model.forward(params, x)
    return outputs.copy()


def evaluate(model, params, data, split="test", batch_size=500, max_batches=None):
    """Mean loss and metrics of ``params`` over a task split.

    Parameters
    ----------
    model, params : as returned by :func:`load` (or any model and its parameters)
    data : RunConfig or TaskData
        The run configuration whose task to load (scored with the run's loss), or a
        loaded task (scored with the task's loss).
    split : {"test", "val"}
    batch_size, max_batches : int

    Returns
    -------
    dict: ``loss``, the loss's metric (``accuracy`` or ``mse``), ``sequences`` (and the
    task's figures: ``bpc`` of the text task, ``baseline`` and ``ratio`` of the copy and
    adding tasks); see :func:`hadamnp.runs.plumbing.evaluate`
    """
    from hadamnp.io.datasets import TaskData
    from hadamnp.runs.config import RunConfig
    from hadamnp.runs.plumbing import build_task, run_loss
    from hadamnp.runs.plumbing import evaluate as evaluate_task

    loss = None
    if isinstance(data, RunConfig):
        config, data = data, build_task(data)
        loss = run_loss(config, data)
    elif not isinstance(data, TaskData):
        raise ConfigError(f"data must be a RunConfig or a TaskData, got {type(data).__name__}")
    return evaluate_task(model, params, data, split, batch_size, max_batches, loss=loss)
