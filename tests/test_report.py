"""The report's rendering: numbers formatted from metrics.json, mean +- sd over seeds,
commands without machine paths, Markdown tables that stay tables, HTML with figures inlined."""

import base64

from aejax import report
from aejax.report_entries import Choice, Entry, Headline

ENTRY = Entry(name="s0_demo", module="s1_pca", section="0. Demo", claim="Codes fill the box <fully>.",
              headline=(Headline("mean |mu|", "mu.mean", ".3f"), Headline("codes inside", "inside", ".1%")),
              figures=("grid.png", "walk.gif"), preset="lecture", flags=("--validation",),
              note="A note.", chooses=Choice("the recipe of the `recommended` preset"))


def test_summarize_gives_mean_and_sd_with_each_seed():
    assert report.summarize([0.1, 0.2, 0.3], ".1%") == "20.0% +- 10.0% (3 seeds: 10.0%, 20.0%, 30.0%)"
    assert report.summarize([0.5], ".2f") == "0.50"
    assert report.summarize([[1], []], "") == "1 / none"  # lists side by side
    assert report.summarize([None], ".2f") == "n/a"
    assert report.summarize([0.5, None], ".2f") == "0.50 / n/a"  # a missing seed: no mean


def test_lookup_follows_key_paths_and_gives_none_for_a_missing_part():
    metrics = {"a": {"b": 0.0}, "c": 1}
    assert report.lookup(metrics, "a.b") == 0.0 and report.lookup(metrics, "c") == 1
    assert report.lookup(metrics, "a.x") is None and report.lookup(metrics, "c.b") is None


def test_shown_command_drops_seed_and_classifier_flags_and_lists_the_seeds():
    argv = ("--preset", "lecture", "--seed", "43", "--label-seed", "1", "--classifier", "/x/classifier", "--quick")
    assert (report.shown_command("s7_cvae", argv, [42, 43])
            == "aejax run s7_cvae --preset lecture --quick  (seeds 42, 43)")
    assert report.shown_command("s1_pca", ("--seed", "42"), [42]) == "aejax run s1_pca"


def test_protocol_text_says_which_images_trained_chose_and_scored():
    validation = {"protocol": {"validation": True, "split_sizes": {"train": 50000, "validation": 10000, "test": 10000}}}
    assert report.protocol_text(validation) == ("validation protocol: trained on 50,000 images; 10,000 held out to "
                                                "follow and choose; 10,000 test images read once, at the end")
    lecture = {"protocol": {"validation": False, "split_sizes": {"train": 512, "test": 256}, "stop_watch": "test"}}
    assert report.protocol_text(lecture) == ("the lecture's protocol: trained on all 512 training images, scored on "
                                             "256 test images; stop watch: test")


def test_wall_time_split_sums_the_runs_and_gives_evaluations_share():
    runs = [{"data": 1.0, "compile": 10.0, "train": 80.0, "evaluation": 8.0, "figures": 1.0, "total": 100.0},
            {"data": 1.0, "compile": 10.0, "train": 60.0, "evaluation": 28.0, "figures": 1.0, "total": 100.0}]
    assert report.wall_time_split(runs) == ("data 2 s, compile 20 s, train 140 s, evaluation 36 s, figures 2 s; "
                                            "evaluation and figures 19.0% of 200 s")
    assert report.wall_time_split([runs[0], {"train": 5.0}]) is None  # a run with no total: no split
    assert report.wall_time_split([]) is None
    assert "train 80 s, classifier 4 s, evaluation 8 s" in report.wall_time_split([{**runs[0], "classifier": 4.0}])


def test_entry_report_takes_the_training_time_where_a_run_recorded_no_total():
    metrics = [{"mu": {"mean": 0.1}, "inside": 0.5, "seconds": {"total": 10.0}},
               {"mu": {"mean": 0.3}, "inside": 0.7, "seconds": {"train": 4.0}}]
    entry = report.entry_report(ENTRY, "done", "aejax run s1_pca", metrics, [])
    assert entry.wall_label == "training time (all runs)" and entry.wall_seconds is None  # the first has no "train"
    assert entry.numbers[0] == ("mean |mu|", "0.200 +- 0.141 (2 seeds: 0.100, 0.300)")
    assert report.entry_report(ENTRY, "not run", "c", [], []).numbers == []


def _reports():
    metrics = [{"mu": {"mean": 0.25}, "inside": 0.5, "seconds": {"train": 9.0, "total": 12.0}, "device": "cpu: cpu",
                "protocol": {"validation": True, "split_sizes": {"train": 50, "validation": 10, "test": 20}}}]
    done = report.entry_report(ENTRY, "done", "aejax run s1_pca --preset lecture --validation", metrics,
                               ["s0_demo/grid.png", "s0_demo/walk.gif"])
    failed = report.entry_report(Entry(name="s0_failed", module="s1_pca", section="0. Demo", claim="c",
                                       headline=ENTRY.headline), "failed", "aejax run s1_pca", [], [], "ValueError: x")
    return [done, failed]


def test_markdown_holds_claim_command_numbers_and_figures_with_bars_escaped():
    text = report.render_markdown(_reports(), {"mode": "quick"})
    assert text.startswith(f"# {report.TITLE}\n\n- mode: quick\n")
    assert "| [s0_demo](#s0_demo) | done | mean \\|mu\\| 0.250 | 12 s |" in text  # a bare | would split the cell
    assert "**Claim:** Codes fill the box <fully>." in text
    assert "`aejax run s1_pca --preset lecture --validation`" in text
    assert "*Chooses:* the recipe of the `recommended` preset." in text and "*Note:* A note." in text
    assert "*Protocol:* validation protocol: trained on 50 images" in text
    assert ("| codes inside | 50.0% |\n| wall time (all runs) | 12 s |\n| wall time split (all runs) | train 9 s; "
            "evaluation and figures 0.0% of 12 s |\n| device | cpu: cpu |") in text
    assert "![s0_demo: grid](s0_demo/grid.png)" in text
    assert "**failed**: ValueError: x" in text and text.count("## 0. Demo") == 1


def test_html_escapes_text_inlines_pngs_and_links_gifs(tmp_path):
    (tmp_path / "s0_demo").mkdir()
    (tmp_path / "s0_demo" / "grid.png").write_bytes(b"\x89PNG-bytes")
    page = report.render_html(_reports(), {"mode": "quick"}, tmp_path)
    assert "Codes fill the box &lt;fully&gt;." in page and "<fully>" not in page
    assert "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode() in page
    assert "<a href='s0_demo/walk.gif'>" in page and "class='failed'" in page


def test_write_pages_replaces_each_page_whole(tmp_path):
    (tmp_path / "REPORT.md").write_text("old")
    report.write_pages(tmp_path, {"REPORT.md": "new\n", "REPORT.html": "<p>\n"})
    assert (tmp_path / "REPORT.md").read_text() == "new\n" and (tmp_path / "REPORT.html").read_text() == "<p>\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["REPORT.html", "REPORT.md"]  # no temporary left


def _record(**changes) -> dict:
    record = {"experiment": "s8_aae", "preset": "recommended", "metric": "validation_mse", "evaluations": {},
              "lower_is_better": True, "seeds": [42, 43], "grid": {"epochs": [10, 20], "lr": [0.1]},
              "fixed": {"discriminator_norm": "none"}, "command": "aejax sweep --spec sweeps/s8_aae__recommended.toml",
              "candidates": [{"settings": {"epochs": 10, "lr": 0.1}, "evaluation": None,
                              "runs": {"42": {"score": 0.2}, "43": {"score": 0.4}}},
                             {"settings": {"epochs": 20, "lr": 0.1}, "evaluation": None,
                              "runs": {"42": {"score": 0.1}, "43": {"score": 0.1}}}],
              "complete": True, "winner": 1, "winner_at_grid_edge": ["epochs"],
              "winner_curve_best_at_last_epoch": True}
    record.update(changes)
    return record


def test_a_selection_table_shows_each_candidate_and_marks_the_winner():
    table = report.selection_table("s8_aae__recommended", _record())
    assert table.columns == ("epochs", "validation score: mean +- sd (seeds)", "")  # lr has one value: not a column
    assert table.rows == (("10", "0.3 +- 0.1414 (2 seeds: 0.2, 0.4)", ""), ("20", "0.1 +- 0 (2 seeds: 0.1, 0.1)",
                                                                          "winner"))
    assert "with discriminator_norm none, lr 0.1" in table.notes[0] and "lower is better" in table.notes[0]
    assert table.notes[1] == "complete"
    assert any("budget's, not validation's" in note for note in table.notes)
    assert table.notes[-1] == "`aejax sweep --spec sweeps/s8_aae__recommended.toml`"


def test_an_incomplete_record_names_no_winner_and_says_how_far_it_got():
    record = _record(complete=False, winner=None, winner_at_grid_edge=[])
    del record["candidates"][1]["runs"]["43"]
    del record["candidates"][0]["runs"]["42"], record["candidates"][0]["runs"]["43"]
    table = report.selection_table("s8_aae__recommended", record)
    assert table.rows == (("10", "not run", ""), ("20", "0.1 (1 of 2 seeds)", ""))
    assert table.notes[1] == "incomplete: 1 of 4 scores in, no winner yet"
    missing = report.selection_table("s5_vae__binarized", None)
    assert missing.rows == () and "aejax sweep --spec sweeps/s5_vae__binarized.toml" in missing.notes[0]


def test_a_record_with_ways_of_evaluating_shows_the_way_of_each_candidate():
    record = _record(metric=None, evaluations={"running": "a.b", "recomputed": "c.d"})
    record["candidates"][0]["evaluation"], record["candidates"][1]["evaluation"] = "running", "recomputed"
    table = report.selection_table("x", record)
    assert table.columns[1] == "evaluation" and [row[1] for row in table.rows] == ["running", "recomputed"]
    assert "running: `a.b`; recomputed: `c.d`" in table.notes[0]


def test_entries_render_their_sources_and_selection_tables(tmp_path):
    from aejax.report_entries import Source
    entry = Entry(name="s0_demo", module="s8_aae", section="0. Demo", claim="c",
                  headline=(Headline("x", "x", ".2f"),),
                  sources=(Source("selection", "s8_aae__recommended"), Source("budget", "10 epochs")))
    result = report.entry_report(entry, "done", "aejax run s8_aae", [{"x": 1.0}], [],
                                 records={"s8_aae__recommended": _record()})
    head = report.header(mode="m", command="c", device="d", reports=[result])
    assert head["selections"] == "1 of 1 selection records complete"
    markdown = report.render_markdown([result], head)
    assert "*Settings from:* selection: s8_aae__recommended; budget: 10 epochs." in markdown
    assert "| 20 | 0.1 +- 0 (2 seeds: 0.1, 0.1) | winner |" in markdown
    page = report.render_html([result], head, tmp_path)
    assert "<td>winner</td>" in page and "Settings from:</i> selection: s8_aae__recommended" in page
