"""``python -m benchmarks.train_speed ...`` from the repository root: the same as ``aejax bench ...``.

The benchmark lives in ``aejax.benchmarks.train_speed``; this folder keeps its results
(``benchmarks/results/``), which that module writes by default when run from the root.
"""

from __future__ import annotations

import sys

from aejax.benchmarks.train_speed import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmarks.train_speed"))
