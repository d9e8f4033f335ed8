"""``python -m experiments.s8_aae``: runs ``aejax.experiments.s8_aae`` (see its --help)."""

from aejax.experiments.s8_aae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
