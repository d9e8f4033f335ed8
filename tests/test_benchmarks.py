"""The speed benchmark's quick run: both implementations timed, results written whole, bad flags refused."""

import json
import os

import pytest

from benchmarks import torch_lecture, train_speed


def test_quick_benchmark_writes_a_side_by_side_table(tmp_path, mnist_dir, capsys):
    assert train_speed.main(["--quick", "--steps", "2", "--data-dir", str(mnist_dir), "--out", str(tmp_path)]) == 0
    [json_file] = tmp_path.glob("train_speed_*_quick.json")
    report = json.loads(json_file.read_text())
    [result] = report["results"]
    assert (result["family"], result["batch_size"]) == ("ae", 64)
    impls = result["impls"]
    assert set(impls) == {"aejax", "torch_eager"}
    for value in impls.values():
        assert value["images_per_s"] > 0 and len(value["round_seconds"]) == 2
        assert abs(value["images_per_s"] * value["step_ms"] / 1e3 - 64) < 1e-6 * 64
    assert result["flops_per_step"] > 1e9  # the lecture's conv AE: a few GFLOP per step of 64
    assert result["speedup"]["torch_eager"] == pytest.approx(
        impls["aejax"]["images_per_s"] / impls["torch_eager"]["images_per_s"])
    table = json_file.with_suffix(".md").read_text()
    assert "| ae | 64 | aejax |" in table and "| ae | 64 | torch_eager |" in table
    assert report["xla_flags"] == os.environ.get("XLA_FLAGS", "")  # recorded: they change XLA:CPU's speed
    assert f"XLA_FLAGS `{report['xla_flags'] or '(none)'}`" in table
    assert not list(tmp_path.glob("*.partial"))
    assert "torch_eager" in capsys.readouterr().out


def test_benchmark_times_the_subpixel_decoder_beside_the_default(mnist):
    """The AE with the replaced transposed-convolution form, in the same interleaved run:
    a different program (its FLOPs differ), the ratio reported, the default's FLOPs kept."""
    images, labels = mnist["train"].images[:64], mnist["train"].labels[:64]
    result = train_speed.benchmark("ae", 16, ("aejax", "aejax_subpixel"), 2, 1, images, labels, 0, lambda text: None)
    assert set(result["impls"]) == {"aejax", "aejax_subpixel"}
    assert result["speedup"]["aejax_subpixel"] == pytest.approx(
        result["impls"]["aejax"]["images_per_s"] / result["impls"]["aejax_subpixel"]["images_per_s"])
    default = train_speed.AejaxRunner("ae", images, labels, 16, 2, 0)
    subpixel = train_speed.AejaxRunner("ae", images, labels, 16, 2, 0, "subpixel")
    default.compile(), subpixel.compile()
    # the sub-pixel form multiplies zero blocks: 16 instead of 9 multiply-adds per pixel and channel pair
    assert subpixel.flops_per_step > 1.2 * default.flops_per_step
    assert result["flops_per_step"] == pytest.approx(default.flops_per_step)
    with pytest.raises(ValueError, match="AE only"):
        train_speed.aejax_model("vae", "subpixel")


@pytest.mark.parametrize("flags", [["--families", "gan"], ["--batch-sizes", "0"], ["--impls", "tf"], ["--steps", "-1"],
                                   ["--name", "../x"], ["--impls", "aejax,aejax_subpixel", "--families", "ae,vae"]])
def test_benchmark_rejects_bad_flags(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_speed.main(flags)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_lecture_torch_models_have_the_lecture_parameter_counts():
    import torch

    counts = {}
    for family in torch_lecture.FAMILIES:
        _, modules = torch_lecture.make_step(family)
        counts[family] = [sum(p.numel() for p in m.parameters()) for m in modules]
    # encoder latent 24 / decoder latent 24; the AAE's discriminator at latent 2 is SPEC's 134,657
    assert counts["aae"][2] == 134_657
    assert counts["ae"][0] - counts["vae"][0] == 2049 * (24 - 4)  # Linear(2048, latent): 24 vs 2 x 2
    assert counts["cvae"][1] - counts["vae"][1] == 10 * 512  # CDecoder's extra one-hot inputs
    with pytest.raises(ValueError, match="family"):
        torch_lecture.make_step("gan")
    step, _ = torch_lecture.make_step("aae")
    assert torch.isfinite(step(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)))
