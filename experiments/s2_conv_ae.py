"""``python -m experiments.s2_conv_ae``: runs ``aejax.experiments.s2_conv_ae`` (see its --help)."""

from aejax.experiments.s2_conv_ae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
