"""Per-layer speed of the lecture's AE: each layer's forward and backward, microseconds per image.

    python -m aejax.benchmarks.layer_speed --batch-sizes 64,512,4096

For each layer of the lecture's encoder and decoder (its input shape and kernel), one
compiled program computes the gradient of ``sum(layer(x) * r)`` with respect to the input
and the kernel; it is timed at each batch size (best of ``--rounds``) by three forms:

- ``aejax``: ``conv_kernels.conv2d`` / ``conv_transpose2x`` as ``"auto"`` resolves them on
  this backend (on a CPU the matmul kernels, wide layers over batch chunks);
- ``whole_batch``: the same CPU kernels on the whole batch at once (``patch_conv``,
  ``tap_conv``, ``conv_transpose_taps``), which shows what the chunks change;
- ``lax``: ``lax.conv_general_dilated`` / ``lax.conv_transpose``.

The decoder's BatchNorm + LeakyReLU on its widest activations (batch statistics, the
training form) is timed beside them. Where the time per image grows with the batch, that
layer's working set has left the caches: this is how the train step's loss of speed at large
batches is traced to layers. Results: ``benchmarks/results/layer_speed_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from aejax import conv_kernels, flags
from aejax.benchmarks.train_speed import RESULTS, _csv, device_name, host_name, write_results

FORMS = ("aejax", "whole_batch", "lax")
LayerFn = Callable[[jax.Array, jax.Array], jax.Array]


class Layer(NamedTuple):
    name: str
    input_shape: tuple[int, int, int]  # (H, W, C) of one image
    kernel_shape: tuple[int, ...]
    forms: dict[str, LayerFn]  # form name -> fn(x (B, H, W, C), kernel) -> y


def _conv(strides: tuple[int, int], padding: tuple[tuple[int, int], ...]) -> dict[str, LayerFn]:
    def whole(x, k):
        if k.shape[0] * k.shape[1] >= 25 and strides == (1, 1) and k.shape[3] <= k.shape[2]:
            return conv_kernels.tap_conv(x, k, padding)  # as conv2d picks it
        return conv_kernels.patch_conv(x, k, strides, padding)

    return {"aejax": lambda x, k: conv_kernels.conv2d(x, k, strides, padding),
            "whole_batch": whole,
            "lax": lambda x, k: conv_kernels.conv2d(x, k, strides, padding, "lax")}


def _conv_transpose() -> dict[str, LayerFn]:
    return {"aejax": lambda x, k: conv_kernels.conv_transpose2x(x, k),
            "whole_batch": conv_kernels.conv_transpose_taps,
            "lax": lambda x, k: conv_kernels.conv_transpose2x(x, k, "lax")}


def _batch_norm_leaky(x: jax.Array, scale: jax.Array) -> jax.Array:
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return jax.nn.leaky_relu((x - mean) * jax.lax.rsqrt(var + 1e-5) * scale, 0.2)


def ae_layers() -> list[Layer]:
    """The lecture AE's convolutions in order (``modules.Encoder`` / ``modules.Decoder``), then
    BatchNorm + LeakyReLU on the decoder's two widest activations."""
    layers = []
    size, channels = 28, 1
    for features in (32, 64, 128, 256):  # Conv(3x3, s2, p1)
        layers.append(Layer(f"encoder conv 3x3/2 {size}x{size}x{channels}->{features}", (size, size, channels),
                            (3, 3, channels, features), _conv((2, 2), ((1, 1), (1, 1)))))
        size, channels = (size + 1) // 2, features
    layers.append(Layer(f"encoder conv 1x1 {size}x{size}x{channels}->512", (size, size, channels),
                        (1, 1, channels, 512), _conv((1, 1), ((0, 0), (0, 0)))))
    size, channels = 1, 512
    for features in (256, 128, 64, 32, 32):  # ConvTranspose(3x3, s2, p1, op1)
        layers.append(Layer(f"decoder conv-transpose {size}x{size}x{channels}->{features}", (size, size, channels),
                            (3, 3, channels, features), _conv_transpose()))
        size, channels = 2 * size, features
    layers.append(Layer(f"decoder conv 7x7 {size}x{size}x{channels}->1", (size, size, channels),
                        (7, 7, channels, 1), _conv((1, 1), ((1, 1), (1, 1)))))
    norm = {"aejax": _batch_norm_leaky}  # one form: no kernel choice
    layers += [Layer(f"decoder BatchNorm+LeakyReLU {s}x{s}x32", (s, s, 32), (32,), norm) for s in (16, 32)]
    return layers


def time_layer(fn: LayerFn, input_shape: tuple[int, ...], kernel_shape: tuple[int, ...], batch_size: int,
               rounds: int, seed: int = 0) -> float:
    """Best-of-``rounds`` seconds of one compiled forward + backward of ``fn`` on a batch."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch_size, *input_shape)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal(kernel_shape) * 0.1, jnp.float32)
    out_shape = jax.eval_shape(fn, x, kernel).shape
    r = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
    grad = jax.jit(jax.grad(lambda x, k, r: jnp.sum(fn(x, k) * r), argnums=(0, 1)))
    jax.block_until_ready(grad(x, kernel, r))  # compile
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(grad(x, kernel, r))
        best = min(best, time.perf_counter() - start)
    return best


def markdown(report: dict[str, Any]) -> str:
    sizes = report["batch_sizes"]
    lines = [f"# Layer speed: the lecture AE's layers, forward + backward ({report['device']})", "",
             f"Command: `{report['command']}`. jax {report['jax']}, {report['host']}. Each cell: microseconds per "
             "image, best of the rounds (see `aejax/benchmarks/layer_speed.py` for the forms).", "",
             "| layer | form | " + " | ".join(f"batch {b}" for b in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for row in report["results"]:
        lines.append(f"| {row['layer']} | {row['form']} | "
                     + " | ".join(f"{row['us_per_image'][str(b)]:.1f}" for b in sizes) + " |")
    # per form: its convolutions plus the BatchNorm rows (one form of those serves all)
    norm = [row for row in report["results"] if row["layer"].startswith("decoder BatchNorm")]
    for form in dict.fromkeys(row["form"] for row in report["results"] if row not in norm):
        rows = [row for row in report["results"] if row["form"] == form and row not in norm] + norm
        lines.append(f"| all layers above | {form} | "
                     + " | ".join(f"{sum(row['us_per_image'][str(b)] for row in rows):.1f}" for b in sizes) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, prog: str = "python -m aejax.benchmarks.layer_speed") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch-sizes", type=_csv(int), default=(64, 512, 4096), help="comma-separated batch sizes")
    parser.add_argument("--forms", type=_csv(str, FORMS), default=FORMS, help=f"comma-separated forms of {FORMS}")
    parser.add_argument("--rounds", type=flags.positive_int, default=5, help="timed calls per layer, form and batch size")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="folder for the JSON and Markdown results")
    parser.add_argument("--name", default=None, help="results file stem (default layer_speed_<device>)")
    args = parser.parse_args(argv)
    if not os.access(next(p for p in [args.out.absolute(), *args.out.absolute().parents] if p.exists()), os.W_OK):
        parser.error(f"output folder {args.out} is not writable")
    report: dict[str, Any] = {"device": device_name(), "host": host_name(), "jax": jax.__version__,
                              "command": " ".join([prog, *(sys.argv[1:] if argv is None else argv)]),
                              "batch_sizes": list(args.batch_sizes), "results": []}
    stem = args.out / (args.name or f"layer_speed_{report['device']}")
    for layer in ae_layers():
        for form, fn in layer.forms.items():
            if form not in args.forms:
                continue
            per_image = {str(b): 1e6 * time_layer(fn, layer.input_shape, layer.kernel_shape, b, args.rounds) / b
                         for b in args.batch_sizes}
            report["results"].append({"layer": layer.name, "form": form, "us_per_image": per_image})
            print(f"{layer.name} | {form} | " + " | ".join(f"{v:.1f}" for v in per_image.values()),
                  file=sys.stderr, flush=True)
        write_results(stem, report, markdown)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
