"""The asignals benchmark suite: ``python -m benchmarks --help``.

Sections, each in its own module:

* :mod:`benchmarks.dispatch` — ns per send for every send mode, receiver kind, receiver
  count and event loop, against a hand-written loop, raw task groups and peer libraries
  (:mod:`benchmarks.peers`).
* :mod:`benchmarks.asgi` — requests per second and latency of ``SignalMiddleware`` under
  ``wrk`` against uvicorn (apps in :mod:`benchmarks.asgi_app`).
* :mod:`benchmarks.instructions` — instructions per send and per request (callgrind),
  asignals against the same baselines, beside the times.
* :mod:`benchmarks.memory` — bytes per connected receiver, and no growth under churn.

:mod:`benchmarks.targets` judges the results against the project's performance targets and
:mod:`benchmarks.report` prints them, writes JSON and draws the plot.
"""
