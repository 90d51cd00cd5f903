"""``autorecovery up``: the whole product on one machine, with a live view and a summary.

With no database or Redis URL set, embedded PostgreSQL and Redis run in the data directory.
Children (simulator, worker, beat, API, optionally Flower) run as processes of their own and are
stopped on Ctrl-C or when ``--duration`` ends. Modules: ``preflight`` (options, ports),
``prepare`` (servers, database, tokens), ``supervisor`` (children), ``chaos`` (faults),
``summary`` (live view, summary, verdict) and ``demo`` (the run itself).
"""

from harness.up.demo import run_up
from harness.up.preflight import UpOptions

__all__ = ["UpOptions", "run_up"]
