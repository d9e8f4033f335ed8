"""``python -m experiments.s6_toy_conditional``: runs ``aejax.experiments.s6_toy_conditional`` (see its --help)."""

from aejax.experiments.s6_toy_conditional import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
