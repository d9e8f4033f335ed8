"""``python -m experiments.s11_beta_vae``: runs ``aejax.experiments.s11_beta_vae`` (see its --help)."""

from aejax.experiments.s11_beta_vae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
