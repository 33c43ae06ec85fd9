"""Sweeps: grids of training runs on Dask (:mod:`~hadamnp.sweeps.grid`,
:mod:`~hadamnp.sweeps.runner`) and the results report (:mod:`~hadamnp.sweeps.report`).
Dask and distributed are the optional ``sweep`` extra, imported only when a sweep runs."""
