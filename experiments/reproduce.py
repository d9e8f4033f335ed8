"""``python -m experiments.reproduce``: runs ``aejax.experiments.reproduce`` (see its --help)."""

from aejax.experiments.reproduce import main

if __name__ == "__main__":
    raise SystemExit(1 if main().get("failed") else 0)
