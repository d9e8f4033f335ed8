"""``python -m experiments.s1_pca``: runs ``aejax.experiments.s1_pca`` (see its --help)."""

from aejax.experiments.s1_pca import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
