"""Training speed, side by side: aejax against the lecture's PyTorch, per model family and batch size.

For each family (AE, VAE, CVAE, AAE) and batch size, in a fresh process of its own and
interleaved round by round (A, B, C, A, B, C, ...), it trains a fixed number of steps with

- ``aejax``: the data set on the device, ``steps`` training steps as one compiled
  ``lax.scan`` program (``train.make_train_chunk``), state donated;
- ``torch_eager``: the lecture's loop, its item-by-item ``DataLoader`` included;
- ``torch_compiled``: the same step under ``torch.compile``, the data already on the device;
- ``aejax_subpixel`` (AE only): aejax with the decoder's transposed convolutions as
  sub-pixel 2x2 convolutions, the form the CPU default replaced (``conv_transpose_impl``);

and prints images/s, step time, compile time, memory (aejax: its compiled program's
buffers; PyTorch on a CPU: the peak RSS growth of a fresh process training that step;
on a GPU: the peak CUDA allocation), and the achieved FLOP/s (FLOPs from XLA's cost analysis of
one aejax step) next to the device's nominal peak, with aejax's speed-up over each PyTorch variant. Results go to
``benchmarks/results/train_speed_<device>.json`` and ``.md`` under the current directory
(``--out`` names another folder).

    aejax bench --quick                               # AE at batch 64, a few steps (CI-sized)
    aejax bench                                       # every family at batch 64, 512 and 4096
    python -m benchmarks.train_speed --quick          # the same, from the repository root

torch is imported only when a PyTorch variant runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np

from aejax import aae, autoencoder, conv_kernels, data, flags, priors, vae
from aejax import train as train_lib

FAMILIES = ("ae", "vae", "cvae", "aae")
IMPLS = ("aejax", "torch_eager", "torch_compiled", "aejax_subpixel")
DEFAULT_IMPLS = IMPLS[:3]
# relative to the current directory: run from the repository root, results land beside the
# committed ones; an installed package has no folder of its own to write into
RESULTS = pathlib.Path("benchmarks") / "results"
DEFAULT_PROG = "aejax bench"


def aejax_model(family: str, conv_transpose_impl: str = "auto") -> train_lib.Model:
    """The lecture's settings, as ``aejax.benchmarks.torch_lecture.make_step`` has them."""
    if conv_transpose_impl != "auto" and family != "ae":
        raise ValueError(f"another transposed-convolution form is benchmarked for the AE only, not {family!r}")
    if family == "ae":
        return autoencoder.make_model(autoencoder.AEConfig(latent_dim=24, conv_transpose_impl=conv_transpose_impl))
    if family == "vae":
        return vae.make_model(vae.VAEConfig(latent_dim=2))
    if family == "cvae":
        return vae.make_model(vae.VAEConfig(latent_dim=2, learning_rate=1e-2, num_classes=10))
    if family == "aae":
        return aae.make_model(aae.AAEConfig(), priors.uniform_box())
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def nominal_peak_flops() -> tuple[float | None, str]:
    """The default device's nominal fp32 peak (FLOP/s) and how it was obtained."""
    device = jax.devices()[0]
    kind = device.device_kind
    if device.platform == "gpu":
        # dense fp32 (non-tensor-core) peak; TF32 tensor cores reach ~7x more
        for name, peak in (("H200", 67e12), ("H100", 67e12), ("A100", 19.5e12)):
            if name in kind:
                return peak, f"{name} fp32 datasheet"
        return None, "unknown GPU"
    try:
        cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
        mhz = max(float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", cpuinfo))
        flags = set(re.search(r"flags\s*:\s*(.*)", cpuinfo).group(1).split())
    except (OSError, ValueError, AttributeError):
        return None, "unknown CPU"
    cores = len(os.sched_getaffinity(0))
    source = f"{cores} cores x {mhz:.0f} MHz x {cpu_flops_per_cycle(flags)} FLOP/cycle (nominal)"
    return cpu_peak_flops(cores, mhz, flags), source


def cpu_flops_per_cycle(cpu_flags: set[str]) -> int:
    """fp32 FLOPs one core can issue per cycle, from its vector width (``/proc/cpuinfo`` flags)."""
    lanes = 16 if "avx512f" in cpu_flags else 8 if "avx2" in cpu_flags else 4
    # two FMA units per core, each FMA two FLOPs per lane
    return lanes * 2 * 2


def cpu_peak_flops(cores: int, mhz: float, cpu_flags: set[str]) -> float:
    """Nominal fp32 FLOP/s of ``cores`` cores at ``mhz``."""
    return cores * mhz * 1e6 * cpu_flops_per_cycle(cpu_flags)


def compiled_flops(compiled: jax.stages.Compiled) -> float:
    """The FLOPs XLA's cost analysis counts for one call of ``compiled`` (NaN where it has none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per device program
        analysis = analysis[0] if analysis else None
    return float((analysis or {}).get("flops", float("nan")))


def peak_percent(achieved_flops: float, peak_flops: float | None) -> float | None:
    """``achieved_flops`` as a percentage of the nominal peak; None where either is unknown."""
    if not peak_flops or not np.isfinite(achieved_flops):
        return None
    return 100 * achieved_flops / peak_flops


class Runner:
    """One implementation of one (family, batch size): ``compile()`` once, then ``run(steps)`` -> seconds."""

    name: str
    compile_seconds: float = float("nan")
    memory_bytes: float = float("nan")

    def compile(self) -> None: ...

    def run(self) -> float: ...


class AejaxRunner(Runner):
    def __init__(self, family: str, images: np.ndarray, labels: np.ndarray, batch_size: int, steps: int, seed: int,
                 conv_transpose_impl: str = "auto"):
        self.name = "aejax" if conv_transpose_impl == "auto" else f"aejax_{conv_transpose_impl}"
        self.model = aejax_model(family, conv_transpose_impl)
        self.dataset = data.device_dataset(data.Split(images, labels))
        self.state = train_lib.create_train_state(self.model, jax.random.key(seed))
        self.key = jax.random.key(seed + 1)
        self.batch_size, self.steps = batch_size, steps
        self.chunk = train_lib.make_train_chunk(self.model.phases)

    def _indices(self) -> jax.Array:
        self.key, key = jax.random.split(self.key)
        full, _ = data.epoch_indices(key, len(self.dataset["label"]), self.batch_size, drop_last=True)
        return full[: self.steps]

    def compile(self) -> None:
        indices = self._indices()
        started = time.perf_counter()
        self.compiled = self.chunk.lower(self.state, self.dataset, indices).compile()
        self.compile_seconds = time.perf_counter() - started
        memory = self.compiled.memory_analysis()
        if memory is not None:
            self.memory_bytes = float(memory.temp_size_in_bytes + memory.argument_size_in_bytes
                                      + memory.output_size_in_bytes - memory.alias_size_in_bytes)
        self.flops_per_step = self._step_flops(indices[0])
        self.run()  # the first run pays for allocation, not compilation

    def _step_flops(self, batch: jax.Array) -> float:
        """One train step's FLOPs at this batch size, extrapolated from two batches of at most
        ``CPU_BATCH_CHUNK`` images: XLA's cost analysis counts a loop's body once, so a step
        whose layers run over batch chunks would be under-counted. Every FLOP of a step is
        per image or per step (the optimizer's), so two sizes fix the line exactly."""
        step = train_lib.make_train_step(self.model.phases)
        def count(n: int) -> float:
            return compiled_flops(step.lower(self.state, self.dataset, batch[:n]).compile())
        small = conv_kernels.CPU_BATCH_CHUNK
        if len(batch) <= small:
            return count(len(batch))
        low, high = count(small // 2), count(small)
        return high + (high - low) / (small - small // 2) * (len(batch) - small)

    def run(self) -> float:
        indices = self._indices()
        jax.block_until_ready(indices)
        started = time.perf_counter()
        self.state, metrics = self.compiled(self.state, self.dataset, indices)
        jax.block_until_ready(metrics)
        return time.perf_counter() - started


class TorchRunner(Runner):
    def __init__(self, family: str, images: np.ndarray, labels: np.ndarray, batch_size: int, steps: int, seed: int,
                 compiled: bool):
        import torch

        from aejax.benchmarks import torch_lecture

        self.torch, self.steps, self.batch_size = torch, steps, batch_size
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(seed)
        step, self.modules = torch_lecture.make_step(family, self.device)
        self.compiled = compiled
        self.name = "torch_compiled" if compiled else "torch_eager"
        if compiled:
            # a fresh compiler cache per runner: otherwise each new optimizer recompiles the shared
            # ``Optimizer.step`` wrapper until Dynamo's recompile limit leaves it uncompiled for later rows
            torch._dynamo.reset()
            self.step = torch.compile(step)
            self.images = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1).to(self.device)
            self.labels = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        else:
            self.step = step
            self.loader = torch_lecture.lecture_loader(images, labels, batch_size)
            self.batches = iter(self.loader)

    def _sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _next_batch(self):
        if self.compiled:
            index = self.torch.randint(0, len(self.labels), (self.batch_size,), device=self.device)
            return self.images[index], self.labels[index]
        try:
            images, labels = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            images, labels = next(self.batches)
        if len(labels) < self.batch_size:  # a short last batch: start the next epoch
            return self._next_batch()
        return images.to(self.device), labels.to(self.device)

    def compile(self) -> None:
        if self.device == "cuda":  # the peak of this step alone, not of the process's earlier runners
            self.torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        self.step(*self._next_batch())
        self._sync()
        first = time.perf_counter() - started
        second = self._time_steps(1)
        self.compile_seconds = max(first - second, 0.0) if self.compiled else 0.0
        if self.device == "cuda":
            self.memory_bytes = float(self.torch.cuda.max_memory_allocated())

    def _time_steps(self, steps: int) -> float:
        self._sync()
        started = time.perf_counter()
        for _ in range(steps):
            loss = self.step(*self._next_batch())
        loss.item()  # waits for the device
        self._sync()
        return time.perf_counter() - started

    def run(self) -> float:
        return self._time_steps(self.steps)


def _rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident set size now (``VmRSS``) or its peak (``VmHWM``), from Linux ``/proc``.

    ``VmHWM`` rather than ``getrusage``'s ``ru_maxrss``: the latter carries the parent's peak
    into a forked-and-exec'd child.
    """
    status = pathlib.Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s*(\d+) kB", status, re.MULTILINE).group(1)) * 1024


def torch_memory_probe(arrays: str, family: str, batch_size: int, compiled: bool, steps: int, seed: int) -> None:
    """Child-process side of ``torch_peak_rss_growth``: prints {"peak_rss_growth", "baseline_rss", "peak_rss"}."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with np.load(arrays) as loaded:
        images, labels = loaded["images"], loaded["labels"]
    baseline = _rss_bytes()  # interpreter, jax and torch imported, the data loaded
    runner = TorchRunner(family, images, labels, batch_size, steps, seed, compiled)
    runner.compile()
    runner.run()
    peak = _rss_bytes("VmHWM")
    print(json.dumps({"peak_rss_growth": peak - baseline, "baseline_rss": baseline, "peak_rss": peak}))


def torch_peak_rss_growth(family: str, batch_size: int, compiled: bool, images: np.ndarray, labels: np.ndarray,
                          steps: int, seed: int) -> float:
    """Bytes a CPU PyTorch step needs: the peak RSS of a fresh process that builds it and trains
    ``steps`` + 2 steps, less its RSS before the model was built.

    A fresh process because RSS is per process and the allocator keeps freed pages: measured in
    the benchmark's own process, one implementation's pages would hide another's.
    """
    if sys.platform != "linux":
        return float("nan")
    with tempfile.TemporaryDirectory() as folder:
        arrays = os.path.join(folder, "data.npz")
        np.savez(arrays, images=images, labels=labels)
        code = ("from aejax.benchmarks import train_speed; "
                f"train_speed.torch_memory_probe({arrays!r}, {family!r}, {batch_size}, {compiled}, {steps}, {seed})")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the PyTorch memory probe of {family} at batch {batch_size} failed: {last}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_growth"])


def steps_per_round(batch_size: int, steps: int, round_images: int | None) -> int:
    """``steps``, or with ``round_images`` the steps that cover that many images (at least 1)."""
    return steps if round_images is None else max(1, -(-round_images // batch_size))


def benchmark(family: str, batch_size: int, impls: tuple[str, ...], steps: int, rounds: int,
              images: np.ndarray, labels: np.ndarray, seed: int, log: Callable[[str], None],
              torch_memory: bool = True) -> dict[str, Any]:
    """Compiles every implementation, then times ``rounds`` interleaved rounds of ``steps`` steps each.

    With ``torch_memory`` each PyTorch variant on a CPU is also run in a fresh process for its
    peak RSS growth (``torch_peak_rss_growth``), after the timed rounds.
    """
    needed = batch_size * steps
    if len(labels) < needed:  # repeat the data: speed does not depend on which images
        reps = -(-needed // len(labels))
        images, labels = np.concatenate([images] * reps), np.concatenate([labels] * reps)
    runners: list[Runner] = []
    for impl in impls:
        if impl.startswith("aejax"):
            runners.append(AejaxRunner(family, images, labels, batch_size, steps, seed,
                                       "auto" if impl == "aejax" else impl.removeprefix("aejax_")))
        else:
            runners.append(TorchRunner(family, images, labels, batch_size, steps, seed, impl == "torch_compiled"))
        runners[-1].compile()
        log(f"  {family} batch {batch_size}: {impl} ready (compile {runners[-1].compile_seconds:.1f} s)")
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(rounds):
        for runner in runners:
            times[runner.name].append(runner.run())
    # the default aejax program's FLOPs (the count of the lecture's model as aejax computes it)
    for runner in runners:
        if torch_memory and isinstance(runner, TorchRunner) and runner.device == "cpu":
            runner.memory_bytes = torch_peak_rss_growth(family, batch_size, runner.compiled, images, labels, steps,
                                                        seed)
    flops = next((r.flops_per_step for r in sorted(runners, key=lambda r: r.name != "aejax")
                  if isinstance(r, AejaxRunner)), float("nan"))
    result = {"family": family, "batch_size": batch_size, "steps_per_round": steps, "rounds": rounds,
              "flops_per_step": flops, "impls": {}}
    for runner in runners:
        seconds = statistics.median(times[runner.name]) / steps
        result["impls"][runner.name] = {
            "step_ms": 1e3 * seconds, "images_per_s": batch_size / seconds,
            "round_seconds": times[runner.name], "compile_s": runner.compile_seconds,
            "memory_mb": runner.memory_bytes / 2 ** 20, "achieved_flops": flops / seconds,
        }
    if "aejax" in result["impls"]:
        ours = result["impls"]["aejax"]["images_per_s"]
        result["speedup"] = {name: ours / value["images_per_s"] for name, value in result["impls"].items()
                             if name != "aejax"}
    return result


def machine() -> dict[str, Any]:
    """What this process runs on: device name, nominal peak and where it came from, versions."""
    versions = {"jax": jax.__version__}
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    peak, peak_source = nominal_peak_flops()
    return {"device": device_name(), "versions": versions, "peak_flops": peak, "peak_source": peak_source}


def _log_to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _measure_row(family: str, batch_size: int, impls: tuple[str, ...], steps: int, rounds: int,
                 images: np.ndarray, labels: np.ndarray, seed: int, torch_memory: bool) -> dict[str, Any]:
    """Child-process side of ``measure_row_in_fresh_process``."""
    if any(not impl.startswith("aejax") for impl in impls):
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
    result = benchmark(family, batch_size, impls, steps, rounds, images, labels, seed, _log_to_stderr, torch_memory)
    return {"machine": machine(), "result": result}


def measure_row_in_fresh_process(family: str, batch_size: int, impls: tuple[str, ...], steps: int, rounds: int,
                                 images: np.ndarray, labels: np.ndarray, seed: int,
                                 torch_memory: bool = True) -> dict[str, Any]:
    """``benchmark`` of one row in a fresh (spawned) process -> {"machine": ``machine()``, "result": ...}.

    A process per row, so that no row inherits another's allocator pages, thread pools or
    PyTorch compiler workers. The parent never starts a JAX backend, so on a GPU each row's
    process has the whole card.
    """
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_measure_row, family, batch_size, impls, steps, rounds, images, labels, seed,
                           torch_memory).result()


def host_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one), else the machine type."""
    try:
        match = re.search(r"model name\s*:\s*(.*)", pathlib.Path("/proc/cpuinfo").read_text())
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or platform.machine()


def device_name() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        cores = len(os.sched_getaffinity(0))
        return f"cpu-{cores}core"
    return re.sub(r"[^A-Za-z0-9]+", "-", device.device_kind).strip("-").lower()


def markdown(report: dict[str, Any]) -> str:
    peak = report["peak_flops"]
    lines = [f"# Training speed: aejax vs the lecture's PyTorch ({report['device']})", "",
             f"Command: `{report['command']}`. jax {report['versions']['jax']}, torch {report['versions'].get('torch', '(not run)')}, "
             f"{report['host']}, XLA_FLAGS `{report.get('xla_flags') or '(none)'}`. Nominal peak: "
             + (f"{peak / 1e9:.0f} GFLOP/s ({report['peak_source']})" if peak else "unknown") + ".",
             *([f"**Partial: {len(report['results'])} of {report['rows_planned']} (family, batch) rows; the run "
                "stopped before the rest.**", ""] if len(report["results"]) < report.get("rows_planned", 0) else []),
             "Each row: median over interleaved rounds; speed-up = aejax images/s over the other's. "
             "Memory: aejax, its compiled training program's buffers (XLA's memory analysis); PyTorch on a CPU, "
             "the peak RSS growth of a fresh process training the step; on a GPU, the peak CUDA allocation.", "",
             "| family | batch | impl | images/s | step ms | compile s | memory MB | GFLOP/s | % peak | aejax speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for result in report["results"]:
        for name, value in result["impls"].items():
            speedup = result.get("speedup", {}).get(name)
            measured = np.isfinite(value["achieved_flops"])
            percent = peak_percent(value["achieved_flops"], peak)
            share = f"{percent:.1f}" if percent is not None else "-"
            gflops = f"{value['achieved_flops'] / 1e9:.1f}" if measured else "-"
            memory = f"{value['memory_mb']:.0f}" if np.isfinite(value["memory_mb"]) else "-"
            lines.append(f"| {result['family']} | {result['batch_size']} | {name} | {value['images_per_s']:.0f} | "
                         f"{value['step_ms']:.1f} | {value['compile_s']:.1f} | {memory} | "
                         f"{gflops} | {share} | "
                         + (f"{speedup:.2f}x" if speedup else "-") + " |")
    return "\n".join(lines) + "\n"


def _csv(kind: Callable[[str], Any], allowed: tuple | None = None):
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
        bad = [v for v in values if (allowed is not None and v not in allowed) or (kind is int and v <= 0)]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"invalid values {bad or text!r}" + (f"; choose from {allowed}" if allowed else ""))
        return values
    return parse


def main(argv: list[str] | None = None, prog: str = DEFAULT_PROG) -> int:
    """Runs the benchmark with command-line flags ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    ``prog`` is the command as the user typed it: usage lines and the recorded command name it.
    """
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--families", type=_csv(str, FAMILIES), default=FAMILIES, help="comma-separated families")
    parser.add_argument("--batch-sizes", type=_csv(int), default=(64, 512, 4096), help="comma-separated batch sizes")
    parser.add_argument("--impls", type=_csv(str, IMPLS), default=DEFAULT_IMPLS,
                        help=f"comma-separated implementations of {IMPLS} (aejax_subpixel: AE only)")
    parser.add_argument("--steps", type=flags.positive_int, default=20, help="training steps per timed round")
    parser.add_argument("--round-images", type=flags.positive_int, default=None,
                        help="images per timed round: each batch size gets the steps that cover them (overrides --steps)")
    parser.add_argument("--rounds", type=flags.positive_int, default=3, help="interleaved rounds per implementation")
    parser.add_argument("--no-torch-memory", action="store_true",
                        help="skip the fresh process per PyTorch variant that measures its peak RSS on a CPU")
    parser.add_argument("--data-dir", type=pathlib.Path, default=None, help="MNIST IDX folder (else $AEJAX_DATA_DIR)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="folder for the JSON and Markdown results (a relative path is from the current directory)")
    parser.add_argument("--name", default=None,
                        help="results file stem (default train_speed_<device>, _quick for --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of models and batches")
    parser.add_argument("--quick", action="store_true",
                        help="AE at batch 64, aejax and eager PyTorch, 3 steps x 2 rounds (minutes on a CPU)")
    args = parser.parse_args(argv)
    if args.quick:
        args.families, args.batch_sizes, args.impls, args.steps, args.rounds = ("ae",), (64,), ("aejax", "torch_eager"), 3, 2
        args.round_images = None
    if "aejax_subpixel" in args.impls and set(args.families) != {"ae"}:
        parser.error("--impls aejax_subpixel needs --families ae (the other configs have no such switch)")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        parser.error(f"--name must be a plain file stem (letters, digits, . _ -), got {args.name!r}")
    if not os.access(next(p for p in [args.out.absolute(), *args.out.absolute().parents] if p.exists()), os.W_OK):
        parser.error(f"output folder {args.out} is not writable")
    try:
        splits = data.load_mnist(args.data_dir)
    except (data.DataError, ValueError, OSError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    images, labels = splits["train"]
    report = {"host": host_name(), "command": " ".join([prog, *(sys.argv[1:] if argv is None else argv)]),
              "xla_flags": os.environ.get("XLA_FLAGS", ""),  # flags change XLA:CPU's speed: part of the setting
              "rows_planned": len(args.families) * len(args.batch_sizes), "results": []}
    for family in args.families:
        for batch_size in args.batch_sizes:
            row = measure_row_in_fresh_process(family, batch_size, args.impls,
                                               steps_per_round(batch_size, args.steps, args.round_images),
                                               args.rounds, images, labels, args.seed, not args.no_torch_memory)
            report = {**report, **row["machine"], "results": [*report["results"], row["result"]]}
            stem = args.out / (args.name or f"train_speed_{report['device']}{'_quick' if args.quick else ''}")
            write_results(stem, report)  # after every row: a run stopped early keeps the rows it measured
    print(markdown(report))
    return 0


def write_results(stem: pathlib.Path, report: dict[str, Any],
                  render: Callable[[dict[str, Any]], str] = markdown) -> None:
    """``<stem>.json`` and ``<stem>.md`` (``render``'s table), each replaced whole: no half-written file."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(report, indent=1)), (".md", render(report))):
        partial = stem.with_name(stem.name + suffix + ".partial")
        partial.write_text(text)
        os.replace(partial, stem.with_name(stem.name + suffix))


if __name__ == "__main__":
    sys.exit(main(prog="python -m aejax.benchmarks.train_speed"))
