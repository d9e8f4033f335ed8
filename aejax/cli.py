"""The ``aejax`` command: ``aejax run NAME ...``, ``aejax sweep ...``, ``aejax reproduce ...``, ``aejax bench ...``.

    aejax run s2_conv_ae --latent-dim 2 --out runs/s2_latent2
    aejax run s8_aae --preset recommended --out runs/s8_uniform
    aejax sweep --spec sweeps/s8_aae__recommended.toml
    aejax reproduce --quick
    aejax bench --batch-sizes 64
    aejax list

``aejax run NAME --help`` lists an experiment's flags and presets; NAME may be an
experiment's section (``s1`` for ``s1_pca``) or any unambiguous prefix of its name
(``s2`` for ``s2_conv_ae``).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import aejax

USAGE = "usage: aejax {run NAME | sweep | reproduce | bench | list | --version} [flags]  (aejax run NAME --help)"


def experiment_names() -> list[str]:
    """The experiments ``aejax run`` knows: the modules of ``aejax.experiments`` with a ``main``."""
    import aejax.experiments as package

    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_") and m.name not in ("common", "reproduce"))


def resolve_experiment(name: str) -> str:
    """The full name of the experiment ``name`` names exactly, by its section (the part before the
    first underscore) or as the unique prefix; ValueError otherwise."""
    names = experiment_names()
    if name in names:
        return name
    matches = [n for n in names if n.split("_")[0] == name] or [n for n in names if n.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"no experiment named {name!r}; known: {', '.join(names)}")
    raise ValueError(f"{name!r} names several experiments ({', '.join(matches)}); give more of the name")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "--version":
        print(f"aejax {aejax.__version__}")
        return 0
    if command == "list":
        for name in experiment_names():
            module = importlib.import_module(f"aejax.experiments.{name}")
            print(f"{name:24s} {(module.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if command == "run":
        if not rest:
            print(f"error: aejax run needs an experiment name; known: {', '.join(experiment_names())}", file=sys.stderr)
            return 2
        try:
            name = resolve_experiment(rest[0])
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        from aejax.runs import run_main

        run_main(importlib.import_module(f"aejax.experiments.{name}").main, rest[1:])
        return 0
    if command == "sweep":
        from aejax import sweep

        return sweep.main(rest)
    if command == "reproduce":
        from aejax.experiments import reproduce

        from aejax.runs import UsageError

        try:
            return 1 if reproduce.main(rest).get("failed") else 0
        except (UsageError, ValueError) as e:  # a bad value or a corrupt record: one line
            print(f"error: {e}", file=sys.stderr)
            return 2 if isinstance(e, UsageError) else 1
    if command == "bench":
        from aejax.benchmarks import train_speed

        result = train_speed.main(rest)
        return result if isinstance(result, int) else 0
    print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
