"""``python -m experiments.s4_interpolation``: runs ``aejax.experiments.s4_interpolation`` (see its --help)."""

from aejax.experiments.s4_interpolation import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
