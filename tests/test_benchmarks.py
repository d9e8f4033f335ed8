"""The speed benchmark: its runs write whole result files with every requested row, its
FLOP and peak arithmetic, its flags, and the lecture's PyTorch models it times."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import conv_kernels
from aejax.benchmarks import layer_speed, train_speed
from aejax.modules import Decoder, Encoder

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ROW_HEADER = "| family | batch | impl | images/s |"


def _table_rows(table: str) -> list[list[str]]:
    """The Markdown table's data rows, split into cells."""
    lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(ROW_HEADER)]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


@pytest.mark.slow
def test_quick_run_writes_json_and_markdown_under_benchmarks_results_by_default(mnist_dir, tmp_path, monkeypatch,
                                                                               capsys):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # the default folder is relative to where it is run
    assert train_speed.main(["--quick", "--data-dir", str(mnist_dir)]) == 0
    results = tmp_path / "benchmarks" / "results"
    [json_file] = results.glob("train_speed_*_quick.json")
    assert sorted(p.name for p in results.iterdir()) == [json_file.name, json_file.with_suffix(".md").name]
    report = json.loads(json_file.read_text())
    assert report["command"] == f"aejax bench --quick --data-dir {mnist_dir}"
    [result] = report["results"]
    assert (result["family"], result["batch_size"], result["steps_per_round"]) == ("ae", 64, 3)  # the --quick preset
    assert set(result["impls"]) == {"aejax", "torch_eager"}
    for value in result["impls"].values():
        assert len(value["round_seconds"]) == 2 and all(seconds > 0 for seconds in value["round_seconds"])
        assert 0 < value["images_per_s"] < math.inf
    # both memories measured: the compiled buffers and the PyTorch step's own process's RSS growth
    # (the lecture's model, its Adam state and batch-64 activations: tens to hundreds of MB)
    assert 10 < result["impls"]["aejax"]["memory_mb"] < 2000
    assert 10 < result["impls"]["torch_eager"]["memory_mb"] < 2000
    # the lecture's conv AE at batch 64: about 6 GFLOP per training step (forward and backward)
    assert 1e9 < result["flops_per_step"] < 1e11
    table = json_file.with_suffix(".md").read_text()
    assert [row[:3] for row in _table_rows(table)] == [["ae", "64", "aejax"], ["ae", "64", "torch_eager"]]
    # conftest sets this flag for every test: the table records the XLA flags the run had
    assert "--xla_backend_optimization_level=0" in table
    assert ROW_HEADER in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_of_every_family_writes_a_row_for_each_family_and_implementation(mnist_dir, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    # each row measured in this process: the fresh process per row is the quick run's test
    monkeypatch.setattr(train_speed, "measure_row_in_fresh_process", train_speed._measure_row)
    flags = ["--families", "ae,vae,cvae,aae", "--impls", "aejax,torch_eager", "--batch-sizes", "8",
             "--steps", "1", "--rounds", "1", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--name", "all",
             "--no-torch-memory"]
    assert train_speed.main(flags) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.json", "all.md"]  # no .partial left behind
    report = json.loads((tmp_path / "all.json").read_text())
    assert [(r["family"], r["batch_size"]) for r in report["results"]] == [
        ("ae", 8), ("vae", 8), ("cvae", 8), ("aae", 8)]
    for result in report["results"]:
        assert set(result["impls"]) == {"aejax", "torch_eager"}
        assert all(0 < value["images_per_s"] < math.inf for value in result["impls"].values())
        assert result["flops_per_step"] > 0
        assert set(result["speedup"]) == {"torch_eager"} and result["speedup"]["torch_eager"] > 0
    rows = _table_rows((tmp_path / "all.md").read_text())
    assert [row[:3] for row in rows] == [[family, "8", impl] for family in train_speed.FAMILIES
                                         for impl in ("aejax", "torch_eager")]
    assert all(float(row[3]) > 0 for row in rows)  # images/s as printed
    # --no-torch-memory: PyTorch's memory column left unmeasured, aejax's still from XLA
    assert [row[6] == "-" for row in rows] == [impl == "torch_eager" for _ in train_speed.FAMILIES
                                               for impl in ("aejax", "torch_eager")]


def test_steps_per_round_cover_the_requested_images_at_every_batch_size():
    assert [train_speed.steps_per_round(batch, 20, 8192) for batch in (64, 512, 4096, 10_000)] == [128, 16, 2, 1]
    assert train_speed.steps_per_round(100, 20, 250) == 3  # rounded up: at least the images asked for
    assert train_speed.steps_per_round(64, 20, None) == 20


@pytest.mark.slow
def test_the_pytorch_memory_probe_grows_with_the_batch(mnist):
    """A fresh process per measurement: the AE's activations at batch 256 need far more memory than at 8."""
    pytest.importorskip("torch")
    images, labels = mnist["train"].images[:512], mnist["train"].labels[:512]
    small, large = (train_speed.torch_peak_rss_growth("ae", batch, False, images, labels, 1, 0) for batch in (8, 256))
    assert 0 < small < large
    assert large - small > 50 * 2 ** 20  # batch 256's activations and their gradients: well over 50 MB


@pytest.mark.slow
def test_flops_count_every_batch_chunk(mnist):
    """Past CPU_BATCH_CHUNK images the decoder's wide layers loop over chunks, whose body XLA's
    cost analysis counts once: the step's count must still grow with the batch (FLOPs are per
    image, but for the optimizer's few per step)."""
    chunk = conv_kernels.CPU_BATCH_CHUNK
    images, labels = mnist["train"].images[:4 * chunk], mnist["train"].labels[:4 * chunk]
    counts = {}
    for batch in (chunk, 3 * chunk):
        runner = train_speed.AejaxRunner("ae", images, labels, batch, 1, 0)
        counts[batch] = runner._step_flops(runner._indices()[0])
    assert counts[3 * chunk] == pytest.approx(3 * counts[chunk], rel=0.01)


@pytest.mark.slow
def test_benchmark_times_the_subpixel_decoder_beside_the_default(mnist):
    """The AE with the replaced transposed-convolution form in the same interleaved run:
    a different program with more FLOPs, while the result keeps the default's count."""
    images, labels = mnist["train"].images[:64], mnist["train"].labels[:64]
    result = train_speed.benchmark("ae", 16, ("aejax", "aejax_subpixel"), 2, 1, images, labels, 0, lambda text: None)
    assert set(result["impls"]) == {"aejax", "aejax_subpixel"}
    assert set(result["speedup"]) == {"aejax_subpixel"}
    default = train_speed.AejaxRunner("ae", images, labels, 16, 2, 0)
    subpixel = train_speed.AejaxRunner("ae", images, labels, 16, 2, 0, "subpixel")
    default.compile(), subpixel.compile()
    # the sub-pixel form multiplies zero blocks: 16 instead of 9 multiply-adds per pixel and channel pair
    assert subpixel.flops_per_step > 1.2 * default.flops_per_step
    assert result["flops_per_step"] == pytest.approx(default.flops_per_step)
    with pytest.raises(ValueError, match="benchmarked for the AE only, not 'vae'"):
        train_speed.aejax_model("vae", "subpixel")


def test_flops_are_counted_from_the_compiled_program():
    # (2, 3) @ (3, 4): 2 x 4 outputs, each 3 multiplies and 3 adds
    compiled = jax.jit(jnp.matmul).lower(jnp.zeros((2, 3)), jnp.zeros((3, 4))).compile()
    assert train_speed.compiled_flops(compiled) == 48


@pytest.mark.parametrize("cpu_flags, flops_per_cycle", [({"avx512f", "avx2"}, 64), ({"avx2"}, 32), ({"sse4_2"}, 16)])
def test_cpu_peak_is_cores_times_clock_times_vector_fmas(cpu_flags, flops_per_cycle):
    # 2 cores at 1000 MHz; lanes x 2 FLOPs per FMA x 2 FMA units: 16 x 4, 8 x 4, 4 x 4
    assert train_speed.cpu_peak_flops(2, 1000.0, cpu_flags) == 2 * 1e9 * flops_per_cycle


def test_peak_share_in_the_table_is_achieved_over_nominal_peak():
    assert train_speed.peak_percent(16e9, 64e9) == 25.0
    assert train_speed.peak_percent(16e9, None) is None
    assert train_speed.peak_percent(float("nan"), 64e9) is None
    value = {"images_per_s": 1000.0, "step_ms": 64.0, "compile_s": 2.0, "memory_mb": float("nan"),
             "achieved_flops": 16e9}
    report = {"device": "cpu-2core", "command": "aejax bench", "versions": {"jax": "x", "torch": "y"}, "host": "h",
              "xla_flags": "", "peak_flops": 64e9, "peak_source": "by hand",
              "results": [{"family": "ae", "batch_size": 64, "impls": {"aejax": value, "torch_eager": value},
                           "speedup": {"torch_eager": 1.5}}]}
    rows = _table_rows(train_speed.markdown(report))
    # images/s, step ms, compile s, memory MB (unknown), GFLOP/s, % peak, speed-up
    assert rows == [["ae", "64", "aejax", "1000", "64.0", "2.0", "-", "16.0", "25.0", "-"],
                    ["ae", "64", "torch_eager", "1000", "64.0", "2.0", "-", "16.0", "25.0", "1.50x"]]
    assert "Partial" not in train_speed.markdown({**report, "rows_planned": 1})
    # a run stopped after its first (family, batch) row says so above its table
    assert "**Partial: 1 of 3 (family, batch) rows" in train_speed.markdown({**report, "rows_planned": 3})


@pytest.mark.parametrize("flags, message", [
    (["--families", "gan"], r"argument --families: invalid values \['gan'\]; choose from \('ae', 'vae', 'cvae', 'aae'\)"),
    (["--batch-sizes", "0"], r"argument --batch-sizes: invalid values \[0\]"),
    (["--batch-sizes", "64,x"], "argument --batch-sizes: expected a comma-separated list, got '64,x'"),
    (["--impls", "tf"], r"argument --impls: invalid values \['tf'\]; choose from"),
    (["--steps", "-1"], "argument --steps: expected a positive integer, got -1"),
    (["--rounds", "two"], "argument --rounds: expected a positive integer, got 'two'"),
    (["--round-images", "0"], "argument --round-images: expected a positive integer, got 0"),
    (["--name", "../x"], r"--name must be a plain file stem \(letters, digits, \. _ -\), got '\.\./x'"),
    (["--impls", "aejax,aejax_subpixel", "--families", "ae,vae"], "--impls aejax_subpixel needs --families ae"),
])
def test_benchmark_rejects_bad_flags_with_a_usage_error(flags, message, capsys):
    with pytest.raises(SystemExit, match="^2$"):
        train_speed.main(flags)
    [error] = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert error.startswith("aejax bench: error: ")
    assert re.search(message, error), error


def test_a_missing_data_folder_is_a_usage_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-mnist"
    with pytest.raises(SystemExit, match="^2$"):
        train_speed.main(["--quick", "--data-dir", str(missing), "--out", str(tmp_path / "out")])
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _python(code_or_module: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_module], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.mark.slow
def test_importing_the_benchmark_does_not_import_torch():
    code = ("import sys, aejax, aejax.benchmarks, aejax.benchmarks.train_speed; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = _python(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_repository_root_entry_point_runs_the_packaged_benchmark():
    result = _python(["-m", "benchmarks.train_speed", "--steps", "0"])
    assert result.returncode == 2
    assert "python -m benchmarks.train_speed: error: argument --steps: expected a positive integer, got 0" \
        in result.stderr


# --- the lecture's PyTorch models ----------------------------------------------------------------

@pytest.mark.slow
def test_lecture_torch_models_have_the_lecture_parameter_counts():
    torch = pytest.importorskip("torch")
    from aejax.benchmarks import torch_lecture

    counts = {family: [sum(p.numel() for p in module.parameters()) for module in torch_lecture.make_step(family)[1]]
              for family in torch_lecture.FAMILIES}
    # the lecture's printed summaries at latent 24: encoder 570,584, decoder 1,591,841
    assert counts["ae"] == [570_584, 1_591_841]
    # latent 2: Linear(2048, 2 x 2) in the encoder (20 x 2049 fewer), Linear(2, 512) in the decoder
    # (22 x 512 fewer); the CVAE's decoder takes 10 one-hot inputs more (10 x 512)
    assert counts["vae"] == [529_604, 1_580_577]
    assert counts["cvae"] == [529_604, 1_585_697]
    # the AAE: encoder Linear(2048, 2), and SPEC's discriminator of 134,657
    assert counts["aae"] == [525_506, 1_580_577, 134_657]
    step, _ = torch_lecture.make_step("aae")
    assert torch.isfinite(step(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"family must be one of \('ae', 'vae', 'cvae', 'aae'\), got 'gan'"):
        torch_lecture.make_step("gan")


@pytest.mark.slow
def test_lecture_loader_gives_the_lecture_tensors():
    torch = pytest.importorskip("torch")
    from aejax.benchmarks import torch_lecture

    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    loader = torch_lecture.lecture_loader(images, np.array([7, 8, 9]), batch_size=3)
    batch, labels = next(iter(loader))
    assert batch.shape == (3, 1, 28, 28) and batch.dtype == torch.float32
    # shuffled: each image found again beside its label, scaled to [0, 1] as ToTensor does
    for image, label in zip(batch, labels):
        np.testing.assert_allclose(image[0].numpy(), images[int(label) - 7] / 255.0, rtol=1e-6)


def test_layer_speed_layers_are_the_lecture_autoencoders():
    """The benchmarked layers' kernels are the Encoder's and Decoder's, in order, and each input is the
    previous convolution's output (the decoder's first from its Dense, 1x1x512)."""
    x = jnp.zeros((2, 28, 28, 1))
    # shapes only: nothing compiles
    encoder = jax.eval_shape(lambda key: Encoder(24).init(key, x, False), jax.random.key(0))["params"]
    decoder = jax.eval_shape(lambda key: Decoder().init(key, jnp.zeros((2, 24)), False), jax.random.key(1))["params"]
    kernels = [v["kernel"].shape for tree in (encoder, decoder) for v in tree.values()  # in creation order
               if "kernel" in v and v["kernel"].ndim == 4]
    layers = layer_speed.ae_layers()
    convs = [layer for layer in layers if len(layer.kernel_shape) == 4]
    assert [layer.kernel_shape for layer in convs] == kernels
    for layer, following in zip(convs, convs[1:]):
        if layer.name.startswith("encoder conv 1x1"):
            continue  # flatten and Dense in between
        out = jax.eval_shape(layer.forms["aejax"], jnp.zeros((1, *layer.input_shape)), jnp.zeros(layer.kernel_shape))
        assert out.shape[1:] == following.input_shape


@pytest.mark.slow
def test_layer_speed_forms_compute_the_same_layer(tmp_path):
    """Every form of a layer gives the same output on a batch the CPU kernels split into chunks."""
    rng = np.random.default_rng(0)
    for layer in layer_speed.ae_layers():
        if len(layer.forms) < 2 or layer.input_shape[0] < 16:
            continue
        x = jnp.asarray(rng.normal(size=(conv_kernels.CPU_BATCH_CHUNK + 2, *layer.input_shape)), jnp.float32)
        k = jnp.asarray(rng.normal(size=layer.kernel_shape) * 0.1, jnp.float32)
        outputs = {form: fn(x, k) for form, fn in layer.forms.items()}
        for form, y in outputs.items():
            chex.assert_trees_all_close(y, outputs["lax"], atol=1e-4, rtol=1e-4, custom_message=f"{layer.name} {form}")
    assert layer_speed.main(["--batch-sizes", "2", "--rounds", "1", "--forms", "aejax,lax", "--out", str(tmp_path)]) == 0
    [report] = [json.loads(p.read_text()) for p in tmp_path.glob("layer_speed_*.json")]
    convs = [layer for layer in layer_speed.ae_layers() if len(layer.forms) > 1]
    assert len(report["results"]) == 2 * len(convs) + 2  # two forms per convolution, one per BatchNorm row
    assert all(row["us_per_image"]["2"] > 0 for row in report["results"])
    table = next(tmp_path.glob("layer_speed_*.md")).read_text()
    assert "| all layers above | aejax |" in table and "| all layers above | lax |" in table
