"""Reproduce the lecture: every experiment of sections 1-10 in order, then one report.

    aejax reproduce --quick          # minutes on a laptop CPU: data subsets, 1 epoch
    aejax reproduce                  # the lecture's epochs
    aejax reproduce --only s8_aae_uniform,s8_aae_uniform_corrected
    aejax reproduce --report-only --no-html --out docs/results   # the committed report

Each experiment writes its figures and metrics.json into ``<out>/<name>`` (staged: a
failed run keeps the previous result; an interrupted one resumes with the same
command). Experiments already completed with the same flags are skipped unless
``--force``. ``<out>/REPORT.md`` and ``<out>/REPORT.html`` (figures inlined) put, for
each section, the lecture's claim next to aejax's figures and measured numbers.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import html
import importlib
import json
import os
import pathlib
import platform
import sys
import time
import traceback
from typing import Any

from aejax import runs


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str  # folder under --out
    module: str  # the experiment, run as ``aejax.experiments.<module>.main(flags)``
    flags: tuple[str, ...]  # its preset and any further flags
    section: str
    claim: str  # what the lecture shows, in a sentence
    headline: tuple[tuple[str, str, str], ...]  # (label, metrics.json key path "a.b", format spec)
    figures: tuple[str, ...]
    uses_classifier: bool = False


def _exp(name, module, flags, section, claim, headline, figures, uses_classifier=False) -> Experiment:
    return Experiment(name, module, tuple(flags), section, claim, tuple(headline), tuple(figures), uses_classifier)


RECON = (("test BCE", "test_bce", ".4f"), ("test MSE", "test_mse", ".4f"))
ELBO = (("test negative ELBO (nats)", "test_negative_elbo_nats", ".1f"), ("IWAE NLL (nats)", "iwae_nll_nats", ".1f"))
PRIOR_MATCH = (("test codes inside the prior's support", "prior_match.inside_support", ".1%"),
               ("discriminator balanced accuracy (0.5 = chance)", "prior_match.discriminator_accuracy", ".3f"),
               ("test codes inside, encoder statistics recomputed", "prior_match_recomputed_bn.inside_support", ".1%"))
S10_FIGURES = ("error_by_epoch.png", "style_transfer.png")

EXPERIMENTS: tuple[Experiment, ...] = (
    _exp("s1_pca", "s1_pca", [], "1. PCA as the simplest autoencoder",
         "PCA(0.90) keeps 87 components (about 9x compression); it reconstructs and mildly denoises; "
         "only the 1s separate in the first two coordinates.",
         [("components kept", "pca_components", "d"), ("test MSE", "test_mse", ".4f"),
          ("PSNR noisy (dB)", "psnr_noisy_db", ".2f"), ("PSNR PCA-filtered (dB)", "psnr_filtered_db", ".2f")],
         ["reconstructions.png", "denoising.png", "latent_scatter.png"]),
    _exp("s2_latent2", "s2_conv_ae", ["--preset", "lecture_latent2"], "2. Convolutional autoencoder",
         "Latent 2: recognisable but blurry reconstructions; the 2-D codes cluster by digit.",
         [*RECON, ("PCA(2) test MSE", "pca2_test_mse", ".4f")],
         ["reconstructions.png", "latent_scatter.png"]),
    _exp("s2_latent24", "s2_conv_ae", ["--preset", "lecture"], "2. Convolutional autoencoder",
         "Latent 24: sharp reconstructions; it denoises the first 64 test digits (noise std 0.3).",
         [*RECON, ("PCA(24) test MSE", "pca24_test_mse", ".4f"), ("PSNR noisy (dB)", "psnr_noisy_db", ".2f"),
          ("PSNR AE (dB)", "psnr_ae_eval_db", ".2f"), ("PSNR PCA(0.90) (dB)", "psnr_pca90_db", ".2f")],
         ["reconstructions.png", "denoising.png"]),
    _exp("s2_denoising", "s2_conv_ae", ["--preset", "lecture_denoising"],
         "2. Convolutional autoencoder",
         "A denoising AE (noisy inputs, clean targets) removes the noise better than the plain one.",
         [*RECON, ("PSNR noisy (dB)", "psnr_noisy_db", ".2f"), ("PSNR AE (dB)", "psnr_ae_eval_db", ".2f")],
         ["denoising.png"]),
    _exp("s3_sparse_l1", "s3_sparse_ae", ["--preset", "lecture"], "3. Sparse autoencoder",
         "Latent 900 with an L1 penalty on activations (beta 0.01): mean activation about 0.10, "
         "class-specific activation maps.",
         [*RECON, ("mean activation", "mean_activation", ".3f"), ("PSNR denoised (dB)", "psnr_denoised_db", ".2f")],
         ["class_activation_maps.png", "activation_histograms.png", "denoising.png"]),
    _exp("s3_sparse_kl", "s3_sparse_ae", ["--preset", "lecture_kl"], "3. Sparse autoencoder",
         "KL sparsity towards a target rate 0.1 (per unit, over the batch).",
         [*RECON, ("mean activation", "mean_activation", ".3f")],
         ["class_activation_maps.png", "activation_histograms.png", "sparsity_costs.png"]),
    _exp("s4_interpolation", "s4_interpolation", [], "4. Interpolation with a plain autoencoder",
         "Decoding the straight line from a 7 to a 6 fades one digit into the other (not a smooth morph).",
         [*RECON, ("largest distance of a frame from both ends", "interpolation_max_distance_from_ends", ".3f")],
         ["interpolation.png", "interpolation.gif"]),
    _exp("s5_vae_kl_only", "s5_vae_kl_only", [], "5. Variational autoencoder",
         "KL alone: mu near 0, variances near 1, classes inseparable; the decoder learns nothing.",
         [("mean |mu|", "mu_mean_abs", ".3f"), ("mean variance", "variance_mean", ".3f"),
          ("probe accuracy from mu", "probe_accuracy_from_mu", ".1%")],
         ["histograms.png", "latent_scatter.png"]),
    _exp("s5_vae_latent2", "s5_vae", ["--preset", "lecture_latent2"], "5. Variational autoencoder",
         "BCE + 0.005 KL, latent 2: mu clusters by digit (4 and 9 overlap); a grid decodes to the digit map.",
         [*RECON, *ELBO], ["latent_scatter.png", "latent_grid.png", "reconstructions.png"]),
    _exp("s5_vae_latent24", "s5_vae", ["--preset", "lecture"], "5. Variational autoencoder",
         "Latent 24: smooth 7 -> 6 interpolation, denoising, blurrier reconstructions than the AE; "
         "vector arithmetic only partly transfers style.",
         [*RECON, *ELBO, ("active latent dimensions", "active_dims", "d")],
         ["interpolation.png", "interpolation.gif", "reconstructions.png", "denoising.png", "vector_arithmetic.png"]),
    _exp("s6_toy_conditional", "s6_toy_conditional", [], "6. Conditional autoencoder on toy 2-D data",
         "The plain AE maps points where there is nothing; conditioned on the label it follows both shapes.",
         [("plain AE test MSE", "plain_test_mse", ".4f"), ("conditional AE test MSE", "conditional_test_mse", ".4f"),
          ("plain / conditional", "mse_ratio_plain_over_conditional", ".2f")],
         ["toy_reconstructions.png"]),
    _exp("classifier", "classifier", [], "7. Conditional VAE (CVAE)",
         "(aejax's evaluation CNN, not in the lecture: it scores generated digits in sections 7 and 9.)",
         [("test accuracy", "test_accuracy", ".2%")], []),
    _exp("s7_cvae", "s7_cvae", [], "7. Conditional VAE (CVAE)",
         "Codes of all digits form one blob; a grid decoded with label 4 (or 9) draws only 4s (9s); "
         "a 2's posterior samples decoded with label 5 are 5s in the 2's style.",
         [*ELBO, ("generated digits classified as their label", "generation_accuracy.overall", ".1%"),
          ("style transfer classified as the target label", "style_transfer_accuracy.overall", ".1%")],
         ["latent_all.png", "grid_label4.png", "grid_label9.png", "style_transfer.png"], uses_classifier=True),
    _exp("s8_aae_uniform", "s8_aae", ["--preset", "lecture"], "8. Adversarial autoencoder",
         "Uniform prior on [-2.5, 2.5]^2, the lecture's discriminator (BatchNorm): the codes should fill the box.",
         [*PRIOR_MATCH, *RECON], ["latent_final.png", "latent_epochs.gif", "grid.png"]),
    _exp("s8_aae_uniform_corrected", "s8_aae", ["--preset", "recommended"], "8. Adversarial autoencoder",
         "The same with aejax's corrected discriminator (no BatchNorm, balanced loss, the generator term in the "
         "autoencoder's Adam): the codes' scale is matched too.",
         [*PRIOR_MATCH, *RECON], ["latent_final.png", "latent_epochs.gif", "grid.png"]),
    _exp("s8_aae_boxes", "s8_aae", ["--preset", "lecture_boxes"],
         "8. Adversarial autoencoder", "Ten uniform boxes as the prior: the codes gather in the boxes.",
         [*PRIOR_MATCH, *RECON], ["prior_samples.png", "latent_final.png"]),
    _exp("s8_aae_boxes_corrected", "s8_aae", ["--preset", "recommended_boxes"],
         "8. Adversarial autoencoder", "Ten boxes with the corrected discriminator, label-conditioned: digit k in box k "
         "(rates cosine-decayed over the run).",
         [*PRIOR_MATCH, *RECON], ["latent_final.png"]),
    _exp("s9_disentangled", "s9_disentangled", [], "9. Disentangling style and label",
         "(Text only in the lecture.) A label head and a style z; an adversary keeps the label out of z.",
         [("label head test accuracy", "label_head_test_accuracy", ".1%"),
          ("label leak: logistic probe on z (chance 10%)", "label_leak_logistic", ".1%"),
          ("label leak: 10-NN probe on z", "label_leak_knn", ".1%"),
          ("style transfer classified as the target label", "style_transfer_accuracy.overall", ".1%")],
         ["style_transfer.png", "style_by_label.png"], uses_classifier=True),
    _exp("s10_ssl_100", "s10_semi_supervised", ["--preset", "lecture", "--labels", "100"], "10. Semi-supervised AAE",
         "(Text only in the lecture.) Makhzani et al. (2015): 1.90% (+-0.10) test error with 100 labels.",
         [("test error", "test_error", ".2%")], S10_FIGURES),
    _exp("s10_ssl_1000", "s10_semi_supervised", ["--preset", "lecture", "--labels", "1000"], "10. Semi-supervised AAE",
         "With 1000 labels (the paper: 1.60% +-0.08).", [("test error", "test_error", ".2%")], S10_FIGURES),
    _exp("s10_ssl_100_shift_pseudo", "s10_semi_supervised",
         ["--preset", "recommended", "--labels", "100"],
         "10. Semi-supervised AAE", "Beyond the paper: shifted labelled images, pseudo-labels on confident "
         "unlabelled ones, cosine rates (100 labels).", [("test error", "test_error", ".2%")], S10_FIGURES),
    _exp("s10_ssl_1000_shift_pseudo", "s10_semi_supervised",
         ["--preset", "recommended", "--labels", "1000"],
         "10. Semi-supervised AAE", "The same with 1000 labels.", [("test error", "test_error", ".2%")], S10_FIGURES),
    _exp("s10_clusters16", "s10_semi_supervised", ["--preset", "clustering"], "10. Semi-supervised AAE",
         "Unsupervised clustering into 16 categories (the paper: 9.55% error +-0.09).",
         [("clustering error (majority label per cluster)", "clustering_error", ".2%")],
         ("clusters.png", "error_by_epoch.png")),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}
MANIFEST = "reproduce.json"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/reproduce"),
                        help="folder of the runs and the report")
    parser.add_argument("--quick", action="store_true",
                        help=f"every script's --quick: 1 epoch on {runs.QUICK_TRAIN_EXAMPLES} train / "
                             f"{runs.QUICK_TEST_EXAMPLES} test images")
    parser.add_argument("--only", default=None, help="comma-separated experiment names (see --list); default: all")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--force", action="store_true", help="rerun experiments already completed with the same flags")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write the report from the runs already in --out (any that have metrics.json)")
    parser.add_argument("--no-html", action="store_true", help="write REPORT.md only (the HTML inlines every figure)")
    parser.add_argument("--data-dir", type=pathlib.Path, default=None, help="folder with the four MNIST IDX files")
    parser.add_argument("--seed", type=int, default=42, help="seed of every experiment")
    parser.add_argument("--train-limit", type=_positive_int, default=None, help="first N training images only")
    parser.add_argument("--test-limit", type=_positive_int, default=None, help="first N test images only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown or not names:
            parser.error(f"unknown experiment(s) {', '.join(unknown) or repr(args.only)}; "
                         f"choose from {', '.join(BY_NAME)}")
        args.only = names
    try:
        runs.check_writable(args.out)
    except runs.UsageError as e:
        parser.error(str(e))
    return args


def experiment_argv(experiment: Experiment, args: argparse.Namespace) -> list[str]:
    """The script's command line (without --out, --data-dir and --no-progress, which do not change results)."""
    argv = [*experiment.flags, "--seed", str(args.seed)]
    argv += ["--quick"] if args.quick else []
    argv += [] if args.train_limit is None else ["--train-limit", str(args.train_limit)]
    argv += [] if args.test_limit is None else ["--test-limit", str(args.test_limit)]
    if experiment.uses_classifier:
        argv += ["--classifier", str((args.out / "classifier").absolute())]
    return argv


def _read_manifest(out: pathlib.Path) -> dict[str, Any]:
    path = out / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs reruns


def _write_manifest(out: pathlib.Path, manifest: dict[str, Any]) -> None:
    temporary = out / f".{MANIFEST}.{os.getpid()}"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, out / MANIFEST)  # atomic: never half a manifest


def is_complete(out: pathlib.Path, experiment: Experiment, argv: list[str], manifest: dict[str, Any]) -> bool:
    entry = manifest.get(experiment.name, {})
    return entry.get("status") == "done" and entry.get("argv") == argv and (out / experiment.name / "metrics.json").is_file()


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the selected experiments in order; returns the manifest (status, flags, wall time of each)."""
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(args.out)
    selected = [e for e in EXPERIMENTS if args.only is None or e.name in args.only]
    for number, experiment in enumerate(selected, 1):
        argv = experiment_argv(experiment, args)
        label = f"[{number}/{len(selected)}] {experiment.name}"
        if not args.force and is_complete(args.out, experiment, argv, manifest):
            print(f"{label}: complete, skipped (--force reruns it)", flush=True)
            continue
        print(f"{label}: aejax run {experiment.module} {' '.join(argv)}", flush=True)
        full_argv = [*argv, "--out", str(args.out / experiment.name), "--no-progress" if args.no_progress else None]
        full_argv += [] if args.data_dir is None else ["--data-dir", str(args.data_dir)]
        started = time.perf_counter()
        try:
            importlib.import_module(f"aejax.experiments.{experiment.module}").main([a for a in full_argv if a])
            entry = {"status": "done"}
        except SystemExit as e:  # argparse's usage errors inside a script: a bug in this table
            entry = {"status": "failed", "error": f"exit {e.code}"}
        except Exception as e:  # one failure must not stop the others; the report shows it
            entry = {"status": "failed", "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            traceback.print_exc()
        entry.update(argv=argv, wall_seconds=time.perf_counter() - started,
                     finished=datetime.datetime.now().isoformat(timespec="seconds"))
        manifest[experiment.name] = entry
        _write_manifest(args.out, manifest)
        print(f"{label}: {entry['status']} in {entry['wall_seconds']:.0f} s"
              + (f" ({entry['error']})" if "error" in entry else ""), flush=True)
    return manifest


def _lookup(metrics: dict[str, Any], path: str) -> Any:
    value: Any = metrics
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _format(value: Any, spec: str) -> str:
    if value is None:
        return "n/a"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


@dataclasses.dataclass
class ReportEntry:
    experiment: Experiment
    status: str  # done | failed | not run
    command: str
    numbers: list[tuple[str, str]]  # (label, formatted value)
    figures: list[str]  # paths relative to the report
    wall_seconds: float | None
    wall_label: str  # "wall time" (measured by the runner) or "training time" (the script's own)
    device: str | None
    error: str | None = None


def collect(out: pathlib.Path, manifest: dict[str, Any], args: argparse.Namespace) -> list[ReportEntry]:
    """One entry per experiment, from its metrics.json and the manifest."""
    entries = []
    for experiment in EXPERIMENTS:
        info = manifest.get(experiment.name)
        folder = out / experiment.name
        metrics_path = folder / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        status = "not run" if info is None else info["status"]
        outside = status == "not run" and bool(metrics)  # completed, but not by this runner
        if outside:
            status = "done"
            command = "run outside the runner: its settings are in metrics.json"
        else:
            command = "aejax run " + experiment.module + " " + " ".join(
                info["argv"] if info else experiment_argv(experiment, args))
        wall, wall_label = (((metrics.get("seconds") or {}).get("train", metrics.get("train_seconds")), "training time") if outside
                            else (None if info is None else info.get("wall_seconds"), "wall time"))
        entries.append(ReportEntry(
            experiment, status, command.strip(),
            [(label, _format(_lookup(metrics, key), spec)) for label, key, spec in experiment.headline] if metrics else [],
            [f"{experiment.name}/{f}" for f in experiment.figures if (folder / f).is_file()],
            wall, wall_label, metrics.get("device"), None if info is None else info.get("error")))
    return entries


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the table cell


def render_markdown(entries: list[ReportEntry], header: dict[str, str]) -> str:
    lines = ["# aejax reproduces the autoencoder lecture", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()] + [""]
    lines += ["| experiment | status | headline | time |", "|---|---|---|---|"]
    for e in entries:
        first = "; ".join(f"{label} {value}" for label, value in e.numbers[:2])
        wall = "" if e.wall_seconds is None else f"{e.wall_seconds:.0f} s"
        lines.append(f"| [{e.experiment.name}](#{e.experiment.name}) | {e.status} | {_cell(first)} | {wall} |")
    section = None
    for e in entries:
        if e.experiment.section != section:
            section = e.experiment.section
            lines += ["", f"## {section}"]
        command = f"`{e.command}`" if e.command.startswith("aejax") else f"*{e.command}*"
        lines += ["", f"### {e.experiment.name}", "", f"**Lecture:** {e.experiment.claim}", "", command, ""]
        if e.status != "done":
            lines += [f"**{e.status}**" + (f": {e.error}" if e.error else ""), ""]
        if e.numbers:
            lines += ["| measured | value |", "|---|---|"] + [f"| {_cell(label)} | {value} |" for label, value in e.numbers]
            lines += [f"| {e.wall_label} | {'n/a' if e.wall_seconds is None else f'{e.wall_seconds:.0f} s'} |",
                      f"| device | {e.device or 'n/a'} |", ""]
        lines += [f"![{e.experiment.name}: {pathlib.Path(f).stem}]({f})" for f in e.figures]
    return "\n".join(lines) + "\n"


def render_html(entries: list[ReportEntry], header: dict[str, str], out: pathlib.Path) -> str:
    """The report as one HTML file, PNG figures inlined (base64), GIFs linked."""
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>aejax: the autoencoder lecture, reproduced</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%;margin:4px}"
             ".failed{color:#b00}code{background:#f4f4f4}</style></head><body>",
             "<h1>aejax reproduces the autoencoder lecture</h1><ul>"]
    parts += [f"<li>{esc(k)}: {esc(v)}</li>" for k, v in header.items()] + ["</ul>"]
    section = None
    for e in entries:
        if e.experiment.section != section:
            section = e.experiment.section
            parts.append(f"<h2>{esc(section)}</h2>")
        parts += [f"<h3 id='{esc(e.experiment.name)}'>{esc(e.experiment.name)}</h3>",
                  f"<p><b>Lecture:</b> {esc(e.experiment.claim)}</p><p><code>{esc(e.command)}</code></p>"]
        if e.status != "done":
            parts.append(f"<p class='failed'><b>{esc(e.status)}</b>{': ' + esc(e.error) if e.error else ''}</p>")
        if e.numbers:
            wall = "n/a" if e.wall_seconds is None else f"{e.wall_seconds:.0f} s"
            rows = [*e.numbers, (e.wall_label, wall), ("device", e.device or "n/a")]
            parts.append("<table>" + "".join(f"<tr><td>{esc(a)}</td><td>{esc(b)}</td></tr>" for a, b in rows) + "</table>")
        for figure in e.figures:
            if figure.endswith(".png"):
                encoded = base64.b64encode((out / figure).read_bytes()).decode()
                parts.append(f"<img alt='{esc(figure)}' src='data:image/png;base64,{encoded}'>")
            else:
                parts.append(f"<p><a href='{esc(figure)}'>{esc(figure)}</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(out: pathlib.Path, manifest: dict[str, Any], args: argparse.Namespace) -> pathlib.Path:
    """REPORT.md and REPORT.html in ``out`` (each written atomically)."""
    entries = collect(out, manifest, args)
    import jax  # late: ``--help`` and usage errors need no JAX

    mode = ("quick (data subsets, 1 epoch: checks the pipeline, not the lecture's numbers)" if args.quick
            else "full (the lecture's epochs and data)")
    header = {
        "mode": f"report of the runs found in {args.out}" if args.report_only else mode,
        "command": " ".join(["aejax reproduce", *args.command_line]),
        "device": (f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind} (host {platform.node()})"
                   if not args.report_only else "each run's own (below)"),
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "total time": f"{sum(e.wall_seconds or 0 for e in entries):.0f} s (the runner's wall time, else the "
                      f"scripts' training time)",
        "complete": f"{sum(e.status == 'done' for e in entries)} of {len(entries)} experiments",
    }
    pages = [("REPORT.md", render_markdown(entries, header))]
    pages += [] if args.no_html else [("REPORT.html", render_html(entries, header, out))]
    for name, text in pages:
        temporary = out / f".{name}.{os.getpid()}"
        temporary.write_text(text)
        os.replace(temporary, out / name)
    return out / "REPORT.md"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.list:
        for e in EXPERIMENTS:
            print(f"{e.name:28s} {e.section}: aejax run {e.module} {' '.join(e.flags)}")
        return {}
    manifest = _read_manifest(args.out) if args.report_only else run_all(args)
    report = write_report(args.out, manifest, args)
    failed = [name for name, entry in manifest.items() if entry["status"] != "done"
              and (args.only is None or name in args.only)]
    print(f"report: {report}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return {"report": str(report), "failed": failed, "manifest": manifest}


if __name__ == "__main__":
    result = main()
    raise SystemExit(1 if result.get("failed") else 0)
