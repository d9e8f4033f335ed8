"""``python -m experiments.s9_disentangled``: runs ``aejax.experiments.s9_disentangled`` (see its --help)."""

from aejax.experiments.s9_disentangled import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
