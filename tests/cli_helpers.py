"""Helpers of the command-line tests: invoking ``hadamnp``, reading a run, judging an error,
and a simulated Ctrl-C."""

import contextlib

from click.testing import CliRunner

from hadamnp.cli import main
from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint


def run(*args):
    """``hadamnp ARGS...`` in-process (arguments converted to strings); the click result."""
    return CliRunner().invoke(main, [str(a) for a in args])


def params(run_dir):
    """The parameters of the run's latest checkpoint."""
    return load_checkpoint(checkpoint_path(run_dir)).params


def assert_user_error(result, *fragments):
    """A clean failure: non-zero exit, a one-line message naming the problem (every
    fragment), no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


@contextlib.contextmanager
def interrupted_at_step(call):
    """Inside the block, training raises ``KeyboardInterrupt`` at the start of its
    ``call``-th optimizer step (1-based, counted over the block), as Ctrl-C would; the loop
    is restored on exit."""
    from hadamnp.training import loop

    original = loop._Run._step
    calls = []

    def interrupting(self, *args):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(self, *args)

    loop._Run._step = interrupting
    try:
        yield
    finally:
        loop._Run._step = original
