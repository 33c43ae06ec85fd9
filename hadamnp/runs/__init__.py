"""Runs: the run configuration (:mod:`~hadamnp.runs.config`) and the plumbing from a
configuration to its task and model, and from a run directory back to its model
(:mod:`~hadamnp.runs.plumbing`). Training, golden files and deploy all go through here."""
