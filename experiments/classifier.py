"""``python -m experiments.classifier``: runs ``aejax.experiments.classifier`` (see its --help)."""

from aejax.experiments.classifier import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
