"""Validation sweeps: a preset's settings chosen on the validation split, the test set never read.

    aejax sweep --spec sweeps/s8_aae__recommended.toml --jobs 2
    aejax sweep s8_aae --preset recommended --grid discriminator_norm=none,batch --grid epochs=10,20 \\
        --seeds 42,43 --metric validation_prior_match.inside_support --higher-is-better

Each candidate (one point of the grid, over the preset and ``--set``'s fixed values) runs once
per seed as ``aejax run EXPERIMENT --preset P --validation --selection --seed S <its flags>``: the
validation protocol with the test files never read (``runs.RunOptions.selection``; such a run
names every number by the validation split). Its score is ``--metric``, a dotted path into its
metrics.json; ``--curve`` names the per-epoch curve recorded beside it. The winner is the
candidate with the best mean score over the seeds. ``--evaluation NAME=PATH`` (in place of
``--metric``) scores each run once per way of evaluating it (e.g. BatchNorm's running or
recomputed statistics), and the way is part of the candidate: a choice that costs no run.

The selection record, ``docs/results/selections/<experiment>__<preset>.json`` (``--record``), is
rewritten after every finished run, and a sweep started again reads it: a run it holds is not run
again, nor one whose folder under ``--workdir`` holds metrics.json, and an interrupted run resumes
from its checkpoints. So a long sweep may stop and go on, and each finished run can be committed.
Flags after ``--`` go to every run as they are (e.g. ``-- --classifier runs/classifier``); the
record keeps them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import importlib
import itertools
import json
import math
import os
import pathlib
import shlex
import subprocess
import sys
import threading
import tomllib
from typing import Any, Mapping, Sequence

from aejax import flags, runs

RECORDS = pathlib.Path("docs/results/selections")  # where records go by default, relative to the working directory
# flags a sweep sets itself on every run: a spec may not set them
_RESERVED = frozenset({"validation", "selection", "out", "preset", "restart", "progress"})


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What a sweep tries and how it scores: a grid over an experiment's config fields (by leaf name,
    as its flags), the seeds each candidate runs with, and the validation metric that picks the winner."""

    experiment: str
    preset: str
    metric: str | None  # dotted path into a selection run's metrics.json, e.g. "validation_best_error"
    lower_is_better: bool
    grid: Mapping[str, tuple[Any, ...]]  # field -> values tried (the candidates are their product)
    # in place of ``metric``: a way of evaluating a run -> its metric's path; each run is scored every way
    evaluations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # field -> value, for every candidate
    seeds: tuple[int, ...] = (42,)
    seed_flags: tuple[str, ...] = ("seed",)  # the fields each seed sets (a semi-supervised run: also label_seed)
    curve: str | None = None  # dotted path of the metric's curve by epoch, recorded beside the score
    run_flags: tuple[str, ...] = ()  # given to every run as they are (data, classifier folder)
    note: str = ""  # why these candidates

    @property
    def name(self) -> str:
        """``<experiment>__<preset>``: the record's file stem."""
        return f"{self.experiment}__{self.preset}"

    def candidates(self) -> list[dict[str, Any]]:
        """Every run's settings, fixed values first, in the grid's order (the last field varies fastest)."""
        names = list(self.grid)
        return [{**self.fixed, **dict(zip(names, values))}
                for values in itertools.product(*(self.grid[n] for n in names))]

    def metrics(self) -> dict[str | None, str]:
        """Way of evaluating -> metric path: ``evaluations``, or ``{None: metric}``."""
        return dict(self.evaluations) if self.evaluations else {None: self.metric}


def check_spec(spec: SweepSpec) -> None:
    """A one-line ValueError for a spec that cannot run: an unknown experiment, preset or field, an empty
    grid or seed list, a reserved field, or a metric that names the test split."""
    if not spec.seeds:
        raise ValueError("a sweep needs at least one seed")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise ValueError(f"seeds repeat: {list(spec.seeds)}")
    for name, values in spec.grid.items():
        if not values:
            raise ValueError(f"grid field {name} has no values")
    if (spec.metric is None) == (not spec.evaluations):
        raise ValueError("a sweep needs a metric or evaluations (ways of evaluating, each with its metric), one of them")
    for path in [*spec.metrics().values(), *([spec.curve] if spec.curve else [])]:
        if runs.TEST_WORD.search(path):
            raise ValueError(f"metric {path!r} names the test split: a selection run reads no test file and names "
                             f"its numbers by the validation split (e.g. validation_error for test_error)")
    module = experiment_module(spec.experiment)
    if spec.preset not in module.PRESETS:
        raise ValueError(f"{spec.experiment} has no preset {spec.preset!r}; known: {', '.join(module.PRESETS)}")
    known = flags.leaf_fields(module.Config())
    for name in [*spec.grid, *spec.fixed, *spec.seed_flags]:
        if name in _RESERVED:
            raise ValueError(f"a sweep sets {name} itself; it cannot be swept")
        if name not in known:
            raise ValueError(f"{spec.experiment} has no setting {name!r}; known: {', '.join(sorted(known))}")
    overlap = sorted(set(spec.grid) & set(spec.fixed) | set(spec.seed_flags) & (set(spec.grid) | set(spec.fixed)))
    if overlap:
        raise ValueError(f"{', '.join(overlap)} set twice (grid, fixed values and seed flags must differ)")


def experiment_module(name: str) -> Any:
    """The module of ``aejax.experiments`` that ``aejax run NAME`` runs (``cli.resolve_experiment``)."""
    from aejax.cli import resolve_experiment

    return importlib.import_module(f"aejax.experiments.{resolve_experiment(name)}")


# ------------------------------------------------------------------ command lines


def flag_words(name: str, value: Any) -> list[str]:
    """A field's value as command-line words: ``--x`` / ``--no-x`` for booleans, else ``--x VALUE``."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else ["--no-" + name.replace("_", "-")]
    if value is None:
        raise ValueError(f"{name}: a sweep cannot give the value None on a command line")
    return [flag, str(value)]


def run_argv(spec: SweepSpec, settings: Mapping[str, Any], seed: int) -> list[str]:
    """A candidate's run for one seed, without ``--out``: preset, protocol, seed flags and settings."""
    argv = ["--preset", spec.preset, "--validation", "--selection"]
    for name in spec.seed_flags:
        argv += flag_words(name, seed)
    for name, value in settings.items():
        argv += flag_words(name, value)
    return [*argv, *spec.run_flags]


def typed_settings(spec: SweepSpec, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as the experiment's parser reads them (``"1e-3"`` -> 0.001), which checks them too:
    a value it refuses exits with its one-line usage error."""
    module = experiment_module(spec.experiment)
    argv = run_argv(dataclasses.replace(spec, run_flags=()), settings, spec.seeds[0])
    config, _, _ = flags.parse(module.Config(), module.PRESETS, argv, "", runs.RunOptions(),
                               prog=f"aejax sweep {spec.experiment} (candidate {dict(settings)})")
    values = flags.as_flat_dict(config)
    return {name: values[name] for name in settings}


def settings_key(settings: Mapping[str, Any]) -> str:
    """A candidate's identity: its settings as canonical JSON."""
    return json.dumps(dict(settings), sort_keys=True, default=str)


def run_folder(workdir: pathlib.Path, spec: SweepSpec, settings: Mapping[str, Any], seed: int) -> pathlib.Path:
    """``<workdir>/<experiment>__<preset>/<hash of the settings>/seed<k>``."""
    digest = hashlib.sha1(settings_key(settings).encode()).hexdigest()[:10]
    return workdir / spec.name / digest / f"seed{seed}"


# ------------------------------------------------------------------ scores and the record


def lookup(metrics: Any, path: str) -> Any:
    """The value at a dotted ``path`` of ``metrics``; through a list, the rest of the path is looked up in
    each element (``train_history.loss``: the loss of every epoch). ValueError naming the missing part."""
    parts = path.split(".")
    value: Any = metrics
    for i, part in enumerate(parts):
        if isinstance(value, list):
            return [lookup(item, ".".join(parts[i:])) for item in value]
        if not isinstance(value, Mapping) or part not in value:
            where = ".".join(parts[:i]) or "metrics.json"
            held = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ValueError(f"{path!r}: {where} has no {part!r} (holds {held})")
        value = value[part]
    return value


def score_of(spec: SweepSpec, metrics: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """A finished run's score by ``metric`` (and its curve) as the record keeps it; ValueError unless the
    metric is a number and the run a selection run."""
    if not metrics.get("protocol", {}).get("selection"):
        raise ValueError("the run is not a selection run (its metrics.json does not say protocol.selection)")
    value = lookup(metrics, metric)
    if not _is_number(value):
        raise ValueError(f"metric {metric!r} is not a number: {str(value)[:80]}")
    result: dict[str, Any] = {"score": float(value), "seconds": metrics.get("seconds", {}).get("total")}
    if spec.curve:
        curve = lookup(metrics, spec.curve)
        if not isinstance(curve, list) or not all(_is_number(v) for v in curve):
            raise ValueError(f"curve {spec.curve!r} is not a list of numbers: {str(curve)[:80]}")
        result["curve"] = [float(v) for v in curve]
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summarize(spec: SweepSpec, candidates: list[dict[str, Any]], grid: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Each candidate's mean and sd over its seeds, the winner (the best mean among complete candidates;
    None until every run is in) and where the winner sits on the grid."""
    for candidate in candidates:
        scores = [candidate["runs"][str(seed)]["score"] for seed in spec.seeds if str(seed) in candidate["runs"]]
        candidate["mean"] = sum(scores) / len(scores) if scores else None
        candidate["sd"] = (math.sqrt(sum((s - candidate["mean"]) ** 2 for s in scores) / (len(scores) - 1))
                           if len(scores) > 1 else None)
    complete = all(str(seed) in c["runs"] for c in candidates for seed in spec.seeds)
    winner = None
    if complete:
        means = [c["mean"] for c in candidates]
        best = min(means) if spec.lower_is_better else max(means)
        winner = means.index(best)  # ties: the first in the grid's order
    return {"complete": complete, "winner": winner,
            "winner_at_grid_edge": _at_edge(grid, candidates[winner]["settings"]) if winner is not None else [],
            "winner_curve_best_at_last_epoch": _best_at_end(spec, candidates[winner]) if winner is not None else None}


def _at_edge(grid: Mapping[str, Sequence[Any]], settings: Mapping[str, Any]) -> list[str]:
    """The numeric grid fields (of more than one value) where ``settings`` takes the grid's smallest or
    largest value: the optimum may lie beyond the grid (for epochs: the budget's cap, not validation's)."""
    edges = []
    for name, values in grid.items():
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(values) > 1 and settings[name] in (min(numbers), max(numbers)):
            edges.append(name)
    return edges


def _best_at_end(spec: SweepSpec, candidate: Mapping[str, Any]) -> bool | None:
    """Whether the winner's mean curve is best at its last epoch (validation still improving), if recorded."""
    curves = [run["curve"] for run in candidate["runs"].values() if run.get("curve")]
    if not curves or len({len(c) for c in curves}) != 1:
        return None
    mean = [sum(values) / len(values) for values in zip(*curves)]
    best = min(mean) if spec.lower_is_better else max(mean)
    return mean[-1] == best


def new_record(spec: SweepSpec, settings: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """An empty record for ``spec`` (no run in yet)."""
    return {
        "experiment": spec.experiment, "preset": spec.preset, "metric": spec.metric,
        "evaluations": dict(spec.evaluations),
        "lower_is_better": spec.lower_is_better, "curve": spec.curve, "seeds": list(spec.seeds),
        "seed_flags": list(spec.seed_flags),
        "grid": {name: list(dict.fromkeys(s[name] for s in settings)) for name in spec.grid},  # typed values
        "fixed": {name: settings[0][name] for name in spec.fixed} if settings else {},
        "run_flags": list(spec.run_flags), "note": spec.note,
        "protocol": "validation split held out of the training set; every run a selection run (no test file read)",
        "command": command,
        "candidates": [{"settings": s, "evaluation": way, "metric": metric, "runs": {}}
                       for s in settings for way, metric in spec.metrics().items()],
        "complete": False, "winner": None,
    }


def merge_previous(record: dict[str, Any], previous: Mapping[str, Any] | None) -> None:
    """Copies into ``record`` the runs ``previous`` (the record on disk) holds for the same candidates,
    metric and run flags: a sweep started again does not repeat them."""
    if not previous or any(previous.get(k) != record[k] for k in ("curve", "run_flags", "preset")):
        return
    held = {(settings_key(c["settings"]), c.get("metric", previous.get("metric"))): c.get("runs", {})
            for c in previous.get("candidates", [])}
    for candidate in record["candidates"]:
        runs_held = held.get((settings_key(candidate["settings"]), candidate["metric"]), {})
        candidate["runs"].update({seed: run for seed, run in runs_held.items() if seed in map(str, record["seeds"])})


def write_record(path: pathlib.Path, record: Mapping[str, Any]) -> None:
    """The record as JSON, atomically (a sweep killed while writing keeps the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(partial, path)


# ------------------------------------------------------------------ running


def _holds(metrics_file: pathlib.Path, paths: Sequence[str]) -> bool:
    """Whether ``metrics_file`` exists and holds every dotted path of ``paths``."""
    if not metrics_file.is_file():
        return False
    metrics = json.loads(metrics_file.read_text())
    try:
        for path in paths:
            lookup(metrics, path)
    except ValueError:
        return False
    return True


def run_candidate(spec: SweepSpec, settings: Mapping[str, Any], seed: int, folder: pathlib.Path,
                  data_dir: pathlib.Path | None, needs: Sequence[str] = ()) -> dict[str, Any]:
    """One run (``python -m aejax.cli run ...`` in a process of its own, its output in ``<folder>.log``);
    its metrics.json, or ``{"error": last line}``. A folder that already holds metrics.json with every
    metric path of ``needs`` is read, not rerun; one written before a way of evaluating was added is
    run again (its new metrics.json replaces the old one when the run completes)."""
    metrics_file = folder / "metrics.json"
    if not _holds(metrics_file, needs):
        folder.parent.mkdir(parents=True, exist_ok=True)
        argv = [*run_argv(spec, settings, seed), "--out", str(folder), "--no-progress"]
        argv += [] if data_dir is None else ["--data-dir", str(data_dir)]
        log = folder.with_name(folder.name + ".log")
        with open(log, "w") as stream:
            code = subprocess.call([sys.executable, "-m", "aejax.cli", "run", spec.experiment, *argv],
                                   stdout=stream, stderr=subprocess.STDOUT)
        if code != 0:
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            return {"error": f"exit {code}: {lines[-1].strip()[:300] if lines else ''} (log: {log})"}
    return json.loads(metrics_file.read_text())


def sweep(spec: SweepSpec, record_path: pathlib.Path, workdir: pathlib.Path, *, jobs: int = 1,
          data_dir: pathlib.Path | None = None, command: str = "", echo: bool = True,
          settings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Runs every candidate's missing runs (``jobs`` at once), rewriting the record at ``record_path``
    after each; returns the record. A failed run is reported and left out (the record stays incomplete);
    a run whose metrics lack the metric stops the sweep (ValueError), as every run would.
    ``settings``: the candidates' ``typed_settings`` when the caller has parsed them already."""
    check_spec(spec)
    if settings is None:
        settings = [typed_settings(spec, c) for c in spec.candidates()]
    previous = json.loads(record_path.read_text()) if record_path.is_file() else None
    record = new_record(spec, settings, command)
    merge_previous(record, previous)
    # a run serves every candidate of its settings (one per way of evaluating it)
    todo = list(dict.fromkeys((settings_key(c["settings"]), seed) for c in record["candidates"]
                              for seed in spec.seeds if str(seed) not in c["runs"]))
    by_settings = {key: [c for c in record["candidates"] if settings_key(c["settings"]) == key] for key, _ in todo}
    record.update(summarize(spec, record["candidates"], record["grid"]))
    write_record(record_path, record)
    total, lock, failures, finished = len(todo), threading.Lock(), [], [0]

    def one(key: str, seed: int) -> None:
        candidates = by_settings[key]
        settings = candidates[0]["settings"]
        folder = run_folder(workdir, spec, settings, seed)
        result = run_candidate(spec, settings, seed, folder, data_dir, [c["metric"] for c in candidates])
        with lock:
            finished[0] += 1
            if "error" in result:
                failures.append(f"{settings} seed {seed}: {result['error']}")
                shown = [result["error"]]
            else:
                try:
                    scores = [score_of(spec, result, c["metric"]) for c in candidates]
                except ValueError as e:  # every run would miss it: stop the sweep
                    raise ValueError(f"{settings} seed {seed} ({folder}): {e}") from None
                shown = []
                for candidate, score in zip(candidates, scores):
                    candidate["runs"][str(seed)] = score
                    shown.append(f"{candidate['metric']} = {score['score']:.6g}")
                record.update(summarize(spec, record["candidates"], record["grid"]))
                write_record(record_path, record)
            if echo:
                print(f"[{finished[0]}/{total}] {settings} seed {seed}: {'; '.join(shown)}", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(one, key, seed) for key, seed in todo]:
            future.result()
    for line in failures:
        print(f"failed: {line}", file=sys.stderr)
    return record


def _done(record: Mapping[str, Any], spec: SweepSpec) -> int:
    return sum(len(c["runs"]) for c in record["candidates"])


# ------------------------------------------------------------------ the command line


def read_spec(path: pathlib.Path) -> SweepSpec:
    """A spec file (TOML): the ``SweepSpec`` fields, ``grid`` and ``fixed`` as tables; one-line errors."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"sweep spec not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"sweep spec {path} is not valid TOML: {e}") from None
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"sweep spec {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    missing = sorted(k for k in ("experiment", "preset", "lower_is_better", "grid") if k not in raw)
    if missing:
        raise ValueError(f"sweep spec {path}: missing {', '.join(missing)}")
    grid = raw["grid"]
    if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise ValueError(f"sweep spec {path}: grid must be a table of lists (field = [values])")
    return SweepSpec(**{"metric": None, **raw, "grid": {k: tuple(v) for k, v in grid.items()},
                        "seeds": tuple(raw.get("seeds", (42,))),
                        "seed_flags": tuple(raw.get("seed_flags", ("seed",))),
                        "run_flags": tuple(raw.get("run_flags", ()))})


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip().replace("-", "_"), value.strip()


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(prog="aejax sweep", description=__doc__.split("\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("experiment", nargs="?", help="the experiment (as aejax run names it); not with --spec")
    p.add_argument("--spec", type=pathlib.Path, help="a spec file (TOML) holding everything below but --jobs, "
                                                     "--workdir, --record and --data-dir")
    p.add_argument("--preset", help="the preset the candidates start from")
    p.add_argument("--grid", type=_assignment, action="append", default=[], metavar="NAME=V1,V2",
                   help="a field and the values tried (repeatable; the candidates are the product)")
    p.add_argument("--set", type=_assignment, action="append", default=[], metavar="NAME=VALUE",
                   help="a field's value for every candidate (repeatable)")
    p.add_argument("--seeds", type=_seeds, default=(42,), help="comma-separated seeds of every candidate (default 42)")
    p.add_argument("--seed-flags", default="seed", help="comma-separated fields each seed sets (default: seed)")
    p.add_argument("--metric", help="dotted path of the validation score in a run's metrics.json")
    p.add_argument("--evaluation", type=_assignment, action="append", default=[], metavar="NAME=PATH",
                   help="in place of --metric: a way of evaluating each run and its metric's path (repeatable); "
                        "the way is part of the candidate")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--lower-is-better", dest="lower_is_better", action="store_true", default=None)
    direction.add_argument("--higher-is-better", dest="lower_is_better", action="store_false")
    p.add_argument("--curve", help="dotted path of the metric's curve by epoch (recorded)")
    p.add_argument("--note", default="", help="why these candidates (recorded)")
    p.add_argument("--jobs", type=flags.positive_int, default=1, help="runs at once, each a process of its own")
    p.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/sweeps"),
                   help="the runs' folders (default runs/sweeps)")
    p.add_argument("--record", type=pathlib.Path,
                   help=f"the selection record (default {RECORDS}/<experiment>__<preset>.json)")
    p.add_argument("--data-dir", type=pathlib.Path, help="the data set's folder (not recorded: it does not change "
                                                         "the numbers)")
    p.add_argument("--list", action="store_true", help="print the runs' command lines and exit")
    return p


def spec_from_args(args: argparse.Namespace, run_flags: Sequence[str]) -> SweepSpec:
    """The spec the command line gives (``--spec``, or the flags); ValueError for a missing part."""
    if args.spec is not None:
        given = [name for name in ("experiment", "preset", "metric", "curve", "lower_is_better")
                 if getattr(args, name) is not None] + [name for name in ("grid", "set", "evaluation")
                                                        if getattr(args, name)]
        if given or run_flags:
            raise ValueError(f"--spec holds the sweep; do not also give {', '.join(given) or 'flags after --'}")
        return read_spec(args.spec)
    missing = [name for name in ("experiment", "preset") if getattr(args, name) is None]
    missing += ["--metric (or --evaluation)"] if args.metric is None and not args.evaluation else []
    missing += ["--lower-is-better or --higher-is-better"] if args.lower_is_better is None else []
    missing += ["--grid"] if not args.grid else []
    if missing:
        raise ValueError(f"a sweep needs {', '.join(missing)} (or --spec FILE)")
    grid: dict[str, tuple[str, ...]] = {}
    for name, values in args.grid:
        if name in grid:
            raise ValueError(f"--grid {name} given twice")
        grid[name] = tuple(v.strip() for v in values.split(","))
    return SweepSpec(experiment=args.experiment, preset=args.preset, metric=args.metric,
                     evaluations=dict(args.evaluation),
                     lower_is_better=args.lower_is_better, grid=grid, fixed=dict(args.set), seeds=args.seeds,
                     seed_flags=tuple(s.strip() for s in args.seed_flags.split(",") if s.strip()),
                     curve=args.curve, run_flags=tuple(run_flags), note=args.note)


# options of where and how a sweep runs: the record's command leaves them out (they do not change the numbers)
_MACHINE_OPTIONS = ("--workdir", "--record", "--data-dir", "--jobs")


def portable(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``_MACHINE_OPTIONS`` (as ``--x V`` or ``--x=V``)."""
    return flags.without_flags(argv, _MACHINE_OPTIONS)


def main(argv: list[str] | None = None) -> int:
    """``aejax sweep``: exit 0 when the record is complete, 1 when a run failed, 2 for a bad command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own, run_flags = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = parser()
    args = p.parse_args(own)
    try:
        spec = spec_from_args(args, run_flags)
        check_spec(spec)
    except ValueError as e:
        p.error(str(e).splitlines()[0])
    candidates = [typed_settings(spec, c) for c in spec.candidates()]  # a value the experiment refuses: exit 2
    if args.list:
        for settings in candidates:
            for seed in spec.seeds:
                print(shlex.join(["aejax", "run", spec.experiment, *run_argv(spec, settings, seed)]))
        return 0
    record_path = args.record or RECORDS / f"{spec.name}.json"
    command = shlex.join(["aejax", "sweep", *portable(own), *(["--", *run_flags] if run_flags else [])])
    try:
        record = sweep(spec, record_path, args.workdir, jobs=args.jobs, data_dir=args.data_dir, command=command,
                       settings=candidates)
    except ValueError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    winner = record["winner"]
    if winner is None:
        print(f"record {record_path}: incomplete ({_done(record, spec)} of "
              f"{len(record['candidates']) * len(spec.seeds)} scores in)")
        return 1
    best = record["candidates"][winner]
    way = f" evaluated by {best['evaluation']}" if best["evaluation"] is not None else ""
    print(f"record {record_path}: winner {winner} {best['settings']}{way}, {best['metric']} = {best['mean']:.6g}")
    return 0
