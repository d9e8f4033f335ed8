"""``python -m experiments.s3_sparse_ae``: runs ``aejax.experiments.s3_sparse_ae`` (see its --help)."""

from aejax.experiments.s3_sparse_ae import main
from aejax.runs import run_main

if __name__ == "__main__":
    run_main(main)
