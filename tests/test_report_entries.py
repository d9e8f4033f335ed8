"""The report's entries as data: each names an experiment and preset that exist, well-formed
metric keys and formats, claims without hand-written measurements, choices made on validation."""

import importlib
import re

import pytest

from aejax import flags
from aejax.report_entries import BY_NAME, ENTRIES, Entry, Headline

# Decimal numbers a claim or note may hold: the lecture's settings and claims (aejax/SPEC) and
# the papers' published results, never a number aejax measured (the headline rows show those).
LECTURE_AND_PAPER_NUMBERS = {
    "0.90",  # PCA(0.90)
    "0.01", "0.10", "0.1",  # sparse AE: beta, the lecture's mean activation, the KL target rate
    "0.3", "0.005", "2.5",  # noise std, the VAE's KL weight, the AAE's box
    "89.8",  # pythae's VAE on binarized MNIST
    "1.90", "1.60", "0.08", "9.55", "0.09", "4.10", "0.13",  # Makhzani et al. (2015)
}


def test_every_section_has_an_entry_and_names_are_unique():
    assert {e.section.split(".")[0] for e in ENTRIES} == {str(n) for n in range(1, 11)}
    assert len(BY_NAME) == len(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_each_entry_runs_an_experiment_with_a_preset_it_has(entry):
    module = importlib.import_module(f"aejax.experiments.{entry.module}")
    assert callable(module.main) and hasattr(module, "Config")
    assert entry.preset is None or entry.preset in module.PRESETS
    # the preset and the seeds have fields of their own
    assert "--preset" not in entry.flags and "--seed" not in entry.flags
    if entry.uses_classifier:
        assert "classifier" in flags.as_flat_dict(module.Config()), "scores images: needs a --classifier folder"
        assert ENTRIES.index(entry) > ENTRIES.index(BY_NAME["classifier"])  # the report's classifier is made first


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_headline_rows_are_key_paths_with_formats_that_format_numbers(entry):
    assert entry.headline and all(isinstance(row, Headline) for row in entry.headline)
    for row in entry.headline:
        assert re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", row.key), row.key
        assert row.label and format(7, row.spec)  # a bad spec raises here


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_claims_and_notes_hold_no_measured_number(entry):
    for text in (entry.claim, entry.note, entry.chooses.what if entry.chooses else ""):
        assert set(re.findall(r"\d+\.\d+", text)) <= LECTURE_AND_PAPER_NUMBERS, text


def test_a_claim_quoting_a_measurement_is_caught():
    entry = Entry(name="x", module="s1_pca", section="1. x", claim="lowest at the last (11.2%)",
                  headline=(Headline("a", "a", ".2f"),))
    assert not set(re.findall(r"\d+\.\d+", entry.claim)) <= LECTURE_AND_PAPER_NUMBERS


def test_entries_that_choose_run_on_validation_and_report_validation_numbers():
    choosing = [e for e in ENTRIES if e.chooses]
    assert {e.name for e in choosing} >= {"s5_choice_lecture", "s8_choice_lecture", "s9_choice_lecture",
                                          "s10_choice_epochs"}
    for entry in choosing:
        assert entry.chooses.split == "validation" and "--validation" in entry.argv, entry.name
        assert all(row.key.startswith("validation") for row in entry.headline), entry.name


def test_headline_claims_run_over_three_seeds_and_label_seeds_need_seeds():
    for name in ("s7_cvae", "s8_aae_uniform_corrected", "s9_disentangled", "s10_ssl_100", "s10_clusters16"):
        assert len(BY_NAME[name].seeds) >= 3, name
    assert all(len(e.seeds) > 1 for e in ENTRIES if e.label_seeds)


def test_argv_puts_the_preset_before_the_other_flags():
    assert BY_NAME["s5_choice_lecture"].argv == ("--preset", "lecture", "--validation")
    assert BY_NAME["s1_pca"].argv == ()
    with pytest.raises(ValueError, match="headline"):
        Entry(name="x", module="s1_pca", section="1. x", claim="c", headline=())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_preset_beyond_the_lecture_takes_its_settings_from_a_selection_record_with_a_spec(entry):
    """An entry of a preset that sets more than the protocol names the record that chose it, and that record's spec exists
    (``sweeps/<experiment>__<preset>.toml``) and sweeps that preset."""
    import pathlib
    import tomllib

    import importlib

    presets = importlib.import_module(f"aejax.experiments.{entry.module}").PRESETS
    # the protocol's own switches (the validation split; section 6's schedule watching it) choose nothing
    beyond_protocol = set(presets[entry.preset or "lecture"]) - {"validation", "plateau_split"}
    if beyond_protocol and not (entry.preset or "lecture").startswith("lecture"):
        assert entry.selections, entry.name
    for name in entry.selections:
        spec = tomllib.loads((pathlib.Path(__file__).parent.parent / "sweeps" / f"{name}.toml").read_text())
        assert f"{spec['experiment']}__{spec['preset']}" == name
        assert spec["experiment"] == entry.module


def test_an_entry_needs_a_source():
    with pytest.raises(ValueError, match="source of its settings"):
        Entry(name="x", module="s1_pca", section="1. x", claim="c", headline=(Headline("a", "a", ".2f"),), sources=())
