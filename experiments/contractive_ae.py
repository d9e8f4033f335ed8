"""``python -m experiments.contractive_ae``: runs ``aejax.experiments.contractive_ae`` (see its --help)."""

from aejax.experiments.contractive_ae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
