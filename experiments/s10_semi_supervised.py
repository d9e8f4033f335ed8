"""``python -m experiments.s10_semi_supervised``: runs ``aejax.experiments.s10_semi_supervised`` (see its --help)."""

from aejax.experiments.s10_semi_supervised import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
