"""Branch and bound over cells of the joint input-parameter box (DESIGN.md §3).

The package's files are the architecture:

* :mod:`~hybridq.bab.api` -- :func:`verify` and problem validation (:func:`check_problem`);
* :mod:`~hybridq.bab.scheduler` -- the best-first scheduler (:func:`run_bab`): rounds of chunks,
  merging outcomes in order, budgets, stopping, the result;
* :mod:`~hybridq.bab.queue` -- the cell queue (best-first, depth-first when large);
* :mod:`~hybridq.bab.engine` -- the per-cell engine: bound pass, attack, exact call, split decision;
* :mod:`~hybridq.bab.exact` -- the exact stage: milp or SMT backend, its limits and budget, one call;
* :mod:`~hybridq.bab.splitting` -- the splitting heuristics (smear, phase scores, dimension weights);
* :mod:`~hybridq.bab.executors` -- who runs the chunks (in-process, process pool).
"""

from hybridq.bab.api import check_problem, verify
from hybridq.bab.scheduler import BabOutcome, run_bab

__all__ = ["verify", "check_problem", "run_bab", "BabOutcome"]
