"""``python -m experiments.s5_vae``: runs ``aejax.experiments.s5_vae`` (see its --help)."""

from aejax.experiments.s5_vae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
