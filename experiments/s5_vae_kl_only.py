"""``python -m experiments.s5_vae_kl_only``: runs ``aejax.experiments.s5_vae_kl_only`` (see its --help)."""

from aejax.experiments.s5_vae_kl_only import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
