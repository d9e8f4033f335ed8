"""``python -m experiments.s7_cvae``: runs ``aejax.experiments.s7_cvae`` (see its --help)."""

from aejax.experiments.s7_cvae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
