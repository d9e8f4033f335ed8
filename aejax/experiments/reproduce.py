"""Reproduce the lecture: every experiment of sections 1-10 in order, then one report.

    aejax reproduce --quick          # minutes on a laptop CPU: data subsets, 1 epoch
    aejax reproduce                  # the lecture's epochs
    aejax reproduce --only s8_aae_uniform,s8_aae_uniform_corrected
    aejax reproduce --report-only --no-html --out docs/results   # the committed report

Each experiment writes its figures and metrics.json into ``<out>/<name>`` (staged: a
failed run keeps the previous result; an interrupted one resumes with the same
command). Experiments already completed with the same flags are skipped unless
``--force``. ``--jobs N`` runs N at once, each in a process of its own (its output in
``<out>/logs``). ``<out>/REPORT.md`` and ``<out>/REPORT.html`` (figures inlined) put, for
each section, the lecture's claim next to aejax's figures and measured numbers.

The entries are data (``aejax.report_entries``); this module chooses and runs their runs,
decides which are complete and keeps the manifest; ``aejax.report`` renders the report.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import os
import pathlib
import subprocess
import sys
import time
import traceback
from typing import Any

import jax

from aejax import flags, report, runs
from aejax.report_entries import BY_NAME, DEFAULT_SEED, ENTRIES, Entry

MANIFEST = "reproduce.json"


@dataclasses.dataclass(frozen=True)
class Options:
    """``aejax reproduce``'s options; ``aejax.flags`` makes a flag of each field."""

    out: pathlib.Path = flags.field(pathlib.Path("runs/reproduce"), "folder of the runs and the report")
    quick: bool = flags.field(False, f"every script's --quick: 1 epoch on {runs.QUICK_TRAIN_EXAMPLES} train / "
                                     f"{runs.QUICK_TEST_EXAMPLES} test images")
    only: str | None = flags.field(None, "comma-separated experiment names (see --list); none: all")
    list: bool = flags.field(False, "list the experiments and exit")
    force: bool = flags.field(False, "rerun experiments already completed with the same flags")
    report_only: bool = flags.field(False, "run nothing: write the report from the runs already in --out "
                                           "(any that have metrics.json)")
    html: bool = flags.field(True, "also write REPORT.html (it inlines every figure); --no-html: REPORT.md only")
    data_dir: pathlib.Path | None = flags.field(None, "folder with the four MNIST IDX files")
    seed: int = flags.field(DEFAULT_SEED, "seed of every experiment")
    train_limit: int | None = flags.field(None, "first N training images only", convert=flags.positive_int)
    test_limit: int | None = flags.field(None, "first N test images only", convert=flags.positive_int)
    progress: bool = flags.field(True, "progress bars (--no-progress: none)")
    selections: pathlib.Path = flags.field(pathlib.Path("docs/results/selections"),
                                           "folder of the selection records the report shows (aejax sweep)")
    jobs: int = flags.field(1, "runs at once, each in a process of its own writing <out>/logs/<run>.log (on a "
                               "machine with room for several); 1: one after another, in this process",
                            convert=flags.positive_int)

    def __post_init__(self):
        for name in ("train_limit", "test_limit", "jobs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value}")
        if self.only is not None:
            unknown = [n for n in self.names if n not in BY_NAME]
            if unknown or not self.names:
                raise ValueError(f"unknown experiment(s) {', '.join(unknown) or repr(self.only)}; "
                                 f"choose from {', '.join(BY_NAME)}")

    @property
    def names(self) -> tuple[str, ...] | None:
        """The entries ``--only`` selects; None: all."""
        return None if self.only is None else tuple(n.strip() for n in self.only.split(",") if n.strip())

    def selects(self, entry: Entry) -> bool:
        return self.names is None or entry.name in self.names


def parse_args(argv: list[str] | None) -> Options:
    """``aejax reproduce``'s command line; a bad value or an unwritable --out exits 2 with one line."""
    return flags.parse_options(Options(), argv, __doc__.split("\n")[0], prog="aejax reproduce",
                               check=lambda options: runs.check_writable(options.out))


@dataclasses.dataclass(frozen=True)
class Unit:
    """One run of an entry: its seed, folder (relative to --out) and command line."""

    entry: Entry
    seed: int
    folder: str
    argv: tuple[str, ...]


def units(entry: Entry, options: Options) -> list[Unit]:
    """The runs of an entry: one per seed, with the script's command line (without --out,
    --data-dir and --no-progress, which do not change results)."""
    result = []
    for seed in entry.seeds:
        argv = [*entry.argv, "--seed", str(seed)]
        argv += ["--label-seed", str(seed - DEFAULT_SEED)] if entry.label_seeds else []
        argv += ["--quick"] if options.quick else []
        argv += [] if options.train_limit is None else ["--train-limit", str(options.train_limit)]
        argv += [] if options.test_limit is None else ["--test-limit", str(options.test_limit)]
        # the report's own classifier, from the working directory as --out is: metrics.json records
        # it relative to the run folder
        argv += ["--classifier", str(options.out / "classifier")] if entry.uses_classifier else []
        folder = entry.name if len(entry.seeds) == 1 else f"{entry.name}/seed{seed}"
        result.append(Unit(entry, seed, folder, tuple(argv)))
    return result


def _read_manifest(out: pathlib.Path) -> dict[str, Any]:
    path = out / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs the failures' messages


def _write_manifest(out: pathlib.Path, manifest: dict[str, Any]) -> None:
    temporary = out / f".{MANIFEST}.{os.getpid()}"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, out / MANIFEST)  # atomic: never half a manifest


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def expected_settings(unit: Unit, out: pathlib.Path) -> dict[str, Any]:
    """The settings a run of ``unit`` in ``<out>/<unit folder>`` records (its config's command-line
    fields, paths relative to that folder, and the options that change numbers), from its command
    line and the experiment's own parser."""
    module = importlib.import_module(f"aejax.experiments.{unit.entry.module}")
    config, options, _ = runs.parse(module.Config(), module.PRESETS, [*unit.argv, "--out", "."],
                                    module.__doc__, unit.entry.module, quick=getattr(module, "QUICK", None))
    on_command_line = {name for name, (_, field, _) in flags.leaf_fields(config).items()
                       if field.metadata.get("cli", True)}
    recorded = runs.recorded_settings(config, out / unit.folder)
    settings = {k: v for k, v in recorded.items() if k in on_command_line}
    # the preset is only a name for fields compared one by one
    settings.update(quick=options.quick, train_limit=options.train_limit, test_limit=options.test_limit)
    return _json_ready(settings)


def is_complete(out: pathlib.Path, unit: Unit) -> bool:
    """Whether ``<out>/<unit folder>/metrics.json`` holds a run of this command line with every headline number.

    Settings a run did not record take their default (a field added since keeps old runs
    valid where its default is what they ran); a headline number it lacks makes it rerun.
    """
    path = out / unit.folder / "metrics.json"
    if not path.is_file():
        return False
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    recorded = metrics.get("settings", {})
    module = importlib.import_module(f"aejax.experiments.{unit.entry.module}")
    defaults = _json_ready(runs.recorded_settings(module.Config(), out / unit.folder))
    for name, value in expected_settings(unit, out).items():
        if name == "classifier" and not unit.entry.uses_classifier:  # a folder it never read
            continue
        if recorded.get(name, defaults.get(name)) != value:
            return False
    return all(report.lookup(metrics, row.key) is not None for row in unit.entry.headline)


def _run_argv(unit: Unit, options: Options) -> list[str]:
    """The script's full command line for ``unit``: its own, plus the output folder and the options
    that do not change results."""
    argv = [*unit.argv, "--out", str(options.out / unit.folder)]
    argv += [] if options.progress else ["--no-progress"]
    return argv + ([] if options.data_dir is None else ["--data-dir", str(options.data_dir)])


def _run_here(unit: Unit, options: Options) -> dict[str, Any]:
    """Runs ``unit`` in this process; its status entry. Its compiled programs are dropped
    afterwards: each keeps memory mappings, and a long series of runs in one process would
    otherwise reach the kernel's limit on them (vm.max_map_count), where XLA crashes."""
    try:
        importlib.import_module(f"aejax.experiments.{unit.entry.module}").main(_run_argv(unit, options))
        return {"status": "done"}
    except SystemExit as e:  # argparse's usage errors inside a script: a bug in this table
        return {"status": "failed", "error": f"exit {e.code}"}
    except Exception as e:  # one failure must not stop the others; the report shows it
        traceback.print_exc()
        return {"status": "failed", "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    finally:
        jax.clear_caches()


def log_path(out: pathlib.Path, unit: Unit) -> pathlib.Path:
    """Where a run started with ``--jobs`` > 1 writes its output: ``<out>/logs/<unit folder, / as ->.log``."""
    return out / "logs" / f"{unit.folder.replace('/', '-')}.log"


def _start(unit: Unit, options: Options) -> subprocess.Popen:
    """Starts ``unit`` as ``python -m aejax.cli run <script> ...``, its output into ``log_path``."""
    log = log_path(options.out, unit)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "aejax.cli", "run", unit.entry.module,
                                 *_run_argv(unit, options)], stdout=stream, stderr=subprocess.STDOUT)


def _last_line(path: pathlib.Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_all(options: Options) -> dict[str, Any]:
    """Runs the selected entries' incomplete runs (``options.jobs`` at once); returns the manifest
    (failures, wall times)."""
    options.out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(options.out)
    selected = [u for e in ENTRIES if options.selects(e) for u in units(e, options)]
    labels = {u.folder: f"[{number}/{len(selected)}] {u.folder}" for number, u in enumerate(selected, 1)}
    pending = []
    for unit in selected:
        if not options.force and is_complete(options.out, unit):
            print(f"{labels[unit.folder]}: complete, skipped (--force reruns it)", flush=True)
        else:
            pending.append(unit)

    def finish(unit: Unit, entry: dict[str, Any], started: float) -> None:
        entry.update(argv=list(unit.argv), wall_seconds=time.perf_counter() - started,
                     finished=datetime.datetime.now().isoformat(timespec="seconds"))
        manifest[unit.folder] = entry
        _write_manifest(options.out, manifest)
        print(f"{labels[unit.folder]}: {entry['status']} in {entry['wall_seconds']:.0f} s"
              + (f" ({entry['error']})" if "error" in entry else ""), flush=True)

    running: dict[str, tuple[Unit, subprocess.Popen, float]] = {}
    while pending or running:
        while pending and len(running) < options.jobs:
            unit = pending.pop(0)
            print(f"{labels[unit.folder]}: aejax run {unit.entry.module} {' '.join(unit.argv)}", flush=True)
            if options.jobs == 1:
                started = time.perf_counter()
                finish(unit, _run_here(unit, options), started)
            else:
                running[unit.folder] = (unit, _start(unit, options), time.perf_counter())
        for folder, (unit, process, started) in list(running.items()):
            if process.poll() is not None:
                del running[folder]
                entry = {"status": "done"} if process.returncode == 0 else {
                    "status": "failed",
                    "error": f"exit {process.returncode}: {_last_line(log_path(options.out, unit))[:300]}"}
                finish(unit, entry, started)
        if running:
            time.sleep(0.5)
    return manifest


def read_selection(folder: pathlib.Path, name: str) -> dict[str, Any] | None:
    """The selection record ``<folder>/<name>.json``; None if there is none (a corrupt one: ValueError)."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"selection record {path} is not valid JSON: {e}") from None


def collect(out: pathlib.Path, manifest: dict[str, Any], options: Options) -> list[report.EntryReport]:
    """One report per entry, from its complete runs' metrics.json and the manifest's failures."""
    reports = []
    for entry in ENTRIES:
        entry_units = units(entry, options)
        done = [u for u in entry_units if is_complete(out, u)]
        metrics = [json.loads((out / u.folder / "metrics.json").read_text()) for u in done]
        errors = [manifest[u.folder]["error"] for u in entry_units
                  if u not in done and manifest.get(u.folder, {}).get("status") == "failed"]
        status = ("done" if len(done) == len(entry_units) else "failed" if errors
                  else f"partial ({len(done)} of {len(entry_units)} runs)" if done else "not run")
        command = report.shown_command(entry.module, entry_units[0].argv, [u.seed for u in entry_units])
        figures = [f"{done[0].folder}/{f}" for f in entry.figures if done and (out / done[0].folder / f).is_file()]
        records = {name: read_selection(options.selections, name) for name in entry.selections}
        reports.append(report.entry_report(entry, status, command, metrics, figures, errors[0] if errors else None,
                                           records))
    return reports


def write_report(out: pathlib.Path, manifest: dict[str, Any], options: Options,
                 command_line: list[str]) -> pathlib.Path:
    """REPORT.md and (unless --no-html) REPORT.html in ``out``, each written atomically."""
    reports = collect(out, manifest, options)
    mode = ("quick (data subsets, 1 epoch: checks the pipeline, not the lecture's numbers)" if options.quick
            else "full (the lecture's epochs and data)")
    head = report.header(mode=f"report of the runs found in {options.out}" if options.report_only else mode,
                         command=" ".join(["aejax reproduce", *command_line]),
                         device="each run's own (below)" if options.report_only else runs.device_name(),
                         reports=reports)
    pages = {"REPORT.md": report.render_markdown(reports, head)}
    if options.html:
        pages["REPORT.html"] = report.render_html(reports, head, out)
    report.write_pages(out, pages)
    return out / "REPORT.md"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    command_line = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(command_line)
    if options.list:
        for e in ENTRIES:
            seeds = f"  (seeds {', '.join(map(str, e.seeds))})" if len(e.seeds) > 1 else ""
            print(f"{e.name:30s} {e.section}: aejax run {e.module} {' '.join(e.argv)}{seeds}")
        return {}
    if options.report_only and not options.out.is_dir():
        raise runs.UsageError(f"--report-only: {options.out} is not a folder of runs")
    manifest = _read_manifest(options.out) if options.report_only else run_all(options)
    path = write_report(options.out, manifest, options, command_line)
    failed = [name for name, entry in manifest.items()
              if entry["status"] != "done" and (options.names is None or name.split("/")[0] in options.names)]
    print(f"report: {path}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return {"report": str(path), "failed": failed, "manifest": manifest}


if __name__ == "__main__":
    result = main()
    raise SystemExit(1 if result.get("failed") else 0)
