"""``python -m experiments.s11_wae``: runs ``aejax.experiments.s11_wae`` (see its --help)."""

from aejax.experiments.s11_wae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
