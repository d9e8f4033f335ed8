"""The reproduction report as Markdown and HTML: per entry its claim, command, protocol and
measured numbers (mean +- sd over seeds), from the runs' metrics.json.

``aejax.experiments.reproduce`` decides which runs are complete; this module only reads
their numbers (``entry_report``) and renders them (``render_markdown``, ``render_html``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import os
import pathlib
import statistics
from typing import Any, Sequence

from aejax import flags
from aejax.report_entries import Entry, Source

TITLE = "aejax reproduces the autoencoder lecture"
SPLIT_PARTS = ("data", "compile", "train", "classifier", "evaluation", "figures")  # metrics.json's ``seconds``
HIDDEN_FLAGS = ("--classifier", "--seed", "--label-seed")  # shown apart (seeds) or machine-specific (folders)


def lookup(metrics: dict[str, Any], path: str) -> Any:
    """The value at the key path ``"a.b"`` of ``metrics``; None where any part is missing."""
    value: Any = metrics
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def format_value(value: Any, spec: str) -> str:
    """``value`` in format ``spec``: "n/a" for None, lists item by item ("none" when empty)."""
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return "none" if not value else ", ".join(format_value(v, spec) for v in value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def summarize(values: list[Any], spec: str) -> str:
    """One number per seed -> ``mean +- sd (n seeds: a, b, c)``; one run -> its value."""
    if len(values) == 1:
        return format_value(values[0], spec)
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values):  # lists or missing values: each seed's, side by side
        return " / ".join(format_value(v, spec) for v in values)
    mean, sd = statistics.fmean(numbers), statistics.stdev(numbers)
    return (f"{format_value(mean, spec)} +- {format_value(sd, spec)} ({len(numbers)} seeds: "
            f"{', '.join(format_value(v, spec) for v in numbers)})")


def shown_command(module: str, argv: Sequence[str], seeds: Sequence[int]) -> str:
    """A run's command line as the report shows it: the seeds after it, no seed flags, no classifier folder."""
    shown = flags.without_flags(argv, HIDDEN_FLAGS)
    listed = f"  (seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""
    return f"aejax run {module} {' '.join(shown)}{listed}".strip()


def protocol_text(metrics: dict[str, Any]) -> str:
    """Which images trained, chose and scored the run, from its metrics.json."""
    protocol = metrics.get("protocol") or {}
    sizes = protocol.get("split_sizes") or {}
    watched = {k: v for k, v in protocol.items() if k not in ("validation", "split_sizes")}
    if watched:  # what the run followed or chose on, in its own words
        return protocol_text({**metrics, "protocol": {"validation": protocol.get("validation"),
                                                      "split_sizes": sizes}}) + "; " + ", ".join(
            f"{k.replace('_', ' ')}: {v}" for k, v in sorted(watched.items()))
    if protocol.get("validation"):
        return (f"validation protocol: trained on {sizes.get('train', '?'):,} images; "
                f"{sizes.get('validation', '?'):,} held out to follow and choose; "
                f"{sizes.get('test', '?'):,} test images read once, at the end")
    if sizes:
        return (f"the lecture's protocol: trained on all {sizes.get('train', '?'):,} training images, "
                f"scored on {sizes.get('test', '?'):,} test images")
    return "the lecture's protocol: trained on all training images"


def wall_time_split(seconds: list[dict[str, float]]) -> str | None:
    """The runs' summed ``seconds`` parts, then evaluation and figures as a share of the total:
    "data 1 s, compile 40 s, train 900 s, evaluation 60 s, figures 2 s; evaluation and figures
    6.4% of 963 s". None unless every run recorded a total."""
    if not seconds or any(not s or s.get("total") is None for s in seconds):
        return None
    total = sum(s["total"] for s in seconds)
    parts = [f"{name} {sum(s.get(name) or 0 for s in seconds):.0f} s" for name in SPLIT_PARTS
             if any(name in s for s in seconds)]
    late = sum((s.get("evaluation") or 0) + (s.get("figures") or 0) for s in seconds)
    return f"{', '.join(parts)}; evaluation and figures {100 * late / total:.1f}% of {total:.0f} s"


@dataclasses.dataclass(frozen=True)
class EntryReport:
    """What the report shows of one entry."""

    entry: Entry
    status: str  # done | partial (k of n runs) | failed | not run
    command: str
    numbers: list[tuple[str, str]]  # (label, formatted value or mean +- sd)
    figures: list[str]  # paths relative to the report
    wall_seconds: float | None  # all of the entry's runs
    wall_label: str  # what ``wall_seconds`` measured
    device: str | None
    protocol: str
    error: str | None = None
    time_split: str | None = None  # ``wall_time_split`` of the entry's runs
    selections: tuple[SelectionTable, ...] = ()  # the tables of the records its settings come from


@dataclasses.dataclass(frozen=True)
class SelectionTable:
    """A selection record as the report shows it: one row per candidate, the winner marked."""

    name: str  # ``<experiment>__<preset>``
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...]  # status, the winner, where it sits on the grid, the command


def sources_text(sources: Sequence[Source]) -> str:
    """An entry's sources in a line: "kind: what; ..."."""
    return "; ".join(f"{source.kind}: {source.what}" for source in sources)


def selection_table(name: str, record: dict[str, Any] | None) -> SelectionTable:
    """The table of the selection record ``name`` (None: not yet swept): the grid's varying fields,
    the way of evaluating where there are several, the metric's mean +- sd over seeds."""
    if record is None:
        return SelectionTable(name, (), (), (f"no selection record yet (docs/results/selections/{name}.json): "
                                             f"run `aejax sweep --spec sweeps/{name}.toml`",))
    varying = [field for field, values in record["grid"].items() if len(values) > 1]
    ways = bool(record.get("evaluations"))
    columns = (*varying, *(["evaluation"] if ways else []), "validation score: mean +- sd (seeds)", "")
    rows = []
    for index, candidate in enumerate(record["candidates"]):
        runs = candidate.get("runs", {})
        scores = [runs[str(seed)]["score"] for seed in record["seeds"] if str(seed) in runs]
        score = summarize(scores, ".4g") if scores else "not run"
        if scores and len(scores) < len(record["seeds"]):
            score += f" ({len(scores)} of {len(record['seeds'])} seeds)"
        rows.append((*(str(candidate["settings"][field]) for field in varying),
                     *([str(candidate.get("evaluation"))] if ways else []), score,
                     "winner" if index == record.get("winner") else ""))
    metric = ("; ".join(f"{way}: `{path}`" for way, path in record["evaluations"].items()) if ways
              else f"`{record['metric']}`")
    direction = "lower" if record["lower_is_better"] else "higher"
    fixed = ", ".join(f"{k} {v}" for k, v in {**record.get("fixed", {}),
                                               **{f: vs[0] for f, vs in record["grid"].items() if len(vs) == 1}}.items())
    done = sum(len(c.get("runs", {})) for c in record["candidates"])
    notes = [f"preset `{record['preset']}`" + (f" with {fixed}" if fixed else "") + f"; score {metric}, {direction} "
             f"is better, on the validation split (selection runs: no test file read)",
             "complete" if record.get("complete") else f"incomplete: {done} of "
             f"{len(record['candidates']) * len(record['seeds'])} scores in, no winner yet"]
    edges = record.get("winner_at_grid_edge") or []
    if edges:
        notes.append(f"the winner takes the grid's edge in {', '.join(edges)}: the best may lie beyond the grid")
    if "epochs" in edges and record.get("winner_curve_best_at_last_epoch") is not False:
        notes.append("the epoch count is the grid's cap, the CPU budget's, not validation's")
    notes.append(f"`{record['command']}`")
    return SelectionTable(name, columns, tuple(rows), tuple(notes))


def entry_report(entry: Entry, status: str, command: str, metrics: list[dict[str, Any]],
                 figures: list[str], error: str | None = None,
                 records: dict[str, dict[str, Any] | None] | None = None) -> EntryReport:
    """An entry's report from its complete runs' metrics.json (in seed order; may be empty) and the
    selection records its settings come from (name -> record, None where there is none)."""
    records = records or {}
    # a run that recorded no total gives its training time, and the report says so
    walls = [(m.get("seconds") or {}).get("total") for m in metrics]
    wall_label = "wall time (all runs)"
    if None in walls:
        walls = [(m.get("seconds") or {}).get("train", m.get("train_seconds")) for m in metrics]
        wall_label = "training time (all runs)"
    numbers = [(row.label, summarize([lookup(m, row.key) for m in metrics], row.spec))
               for row in entry.headline] if metrics else []
    return EntryReport(entry, status, command, numbers, figures,
                       sum(walls) if walls and None not in walls else None, wall_label,
                       metrics[0].get("device") if metrics else None, protocol_text(metrics[0]) if metrics else "",
                       error, wall_time_split([m.get("seconds") for m in metrics]),
                       tuple(selection_table(name, records.get(name)) for name in entry.selections))


def header(*, mode: str, command: str, device: str, reports: list[EntryReport]) -> dict[str, str]:
    """The report's opening lines: how it was made, its total time, its protocol and completeness."""
    return {
        "mode": mode,
        "command": command,
        "device": device,
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "total time": f"{sum(r.wall_seconds or 0 for r in reports):.0f} s (each run's wall time from its "
                      f"metrics.json, its training time where it recorded no total)",
        "protocol": "every setting comes from a selection record (a sweep scored on a validation split held out of "
                    "the training set, no test file read; its table is under the entries it serves), from training "
                    "images (cluster labels, probes), from the lecture's fixed settings, or from the CPU budget "
                    "(epoch counts no validation curve chose); each entry names its sources; the test set is read "
                    "once per run",
        "selections": _selections_status(reports),
        "complete": f"{sum(r.status == 'done' for r in reports)} of {len(reports)} entries",
    }


def _selections_status(reports: list[EntryReport]) -> str:
    tables = {table.name: table for r in reports for table in r.selections}
    complete = sum(table.notes[1:2] == ("complete",) for table in tables.values())
    return f"{complete} of {len(tables)} selection records complete"


def _selection_markdown(table: SelectionTable) -> list[str]:
    lines = [f"*Selection record* `{table.name}`: " + "; ".join(table.notes), ""]
    if table.rows:
        lines += ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in table.rows] + [""]
    return lines


def _selection_html(table: SelectionTable) -> str:
    esc = html.escape
    notes = f"<p><i>Selection record</i> <code>{esc(table.name)}</code>: {esc('; '.join(table.notes))}</p>"
    if not table.rows:
        return notes
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"{notes}<table><tr>{head}</tr>{body}</table>"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the table cell


def _rows(report: EntryReport) -> list[tuple[str, str]]:
    """The measured table of an entry: its headline numbers, then time and device."""
    wall = "n/a" if report.wall_seconds is None else f"{report.wall_seconds:.0f} s"
    split = [("wall time split (all runs)", report.time_split)] if report.time_split else []
    return [*report.numbers, (report.wall_label, wall), *split, ("device", report.device or "n/a")]


def render_markdown(reports: list[EntryReport], head: dict[str, str]) -> str:
    """REPORT.md: the header, a summary table, then per section each entry with its figures."""
    lines = [f"# {TITLE}", ""]
    lines += [f"- {k}: {v}" for k, v in head.items()] + [""]
    lines += ["| entry | status | headline | time |", "|---|---|---|---|"]
    for r in reports:
        first = "; ".join(f"{label} {value}" for label, value in r.numbers[:1])
        wall = "" if r.wall_seconds is None else f"{r.wall_seconds:.0f} s"
        lines.append(f"| [{r.entry.name}](#{r.entry.name}) | {r.status} | {_cell(first)} | {wall} |")
    section = None
    for r in reports:
        if r.entry.section != section:
            section = r.entry.section
            lines += ["", f"## {section}"]
        lines += ["", f"### {r.entry.name}", "", f"**Claim:** {r.entry.claim}", "", f"`{r.command}`", ""]
        lines += [f"*Protocol:* {r.protocol}.", ""] if r.protocol else []
        lines += [f"*Note:* {r.entry.note}", ""] if r.entry.note else []
        lines += [f"*Chooses:* {r.entry.chooses.what}.", ""] if r.entry.chooses else []
        lines += [f"*Settings from:* {sources_text(r.entry.sources)}.", ""]
        if r.status != "done":
            lines += [f"**{r.status}**" + (f": {r.error}" if r.error else ""), ""]
        if r.numbers:
            lines += ["| measured | value |", "|---|---|"]
            lines += [f"| {_cell(label)} | {_cell(value)} |" for label, value in _rows(r)] + [""]
        for table in r.selections:
            lines += _selection_markdown(table)
        lines += [f"![{r.entry.name}: {pathlib.Path(f).stem}]({f})" for f in r.figures]
    return "\n".join(lines) + "\n"


def render_html(reports: list[EntryReport], head: dict[str, str], out: pathlib.Path) -> str:
    """REPORT.html: the same as one file, PNG figures (read from ``out``) inlined as base64, GIFs linked."""
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>aejax: the autoencoder lecture, reproduced"
             "</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%;margin:4px}"
             ".failed{color:#b00}code{background:#f4f4f4}</style></head><body>",
             f"<h1>{TITLE}</h1><ul>"]
    parts += [f"<li>{esc(k)}: {esc(v)}</li>" for k, v in head.items()] + ["</ul>"]
    section = None
    for r in reports:
        if r.entry.section != section:
            section = r.entry.section
            parts.append(f"<h2>{esc(section)}</h2>")
        parts += [f"<h3 id='{esc(r.entry.name)}'>{esc(r.entry.name)}</h3>",
                  f"<p><b>Claim:</b> {esc(r.entry.claim)}</p><p><code>{esc(r.command)}</code></p>"]
        parts += [f"<p><i>Protocol:</i> {esc(r.protocol)}.</p>"] if r.protocol else []
        parts += [f"<p><i>Note:</i> {esc(r.entry.note)}</p>"] if r.entry.note else []
        parts += [f"<p><i>Chooses:</i> {esc(r.entry.chooses.what)}.</p>"] if r.entry.chooses else []
        parts.append(f"<p><i>Settings from:</i> {esc(sources_text(r.entry.sources))}.</p>")
        if r.status != "done":
            parts.append(f"<p class='failed'><b>{esc(r.status)}</b>{': ' + esc(r.error) if r.error else ''}</p>")
        if r.numbers:
            parts.append("<table>" + "".join(f"<tr><td>{esc(a)}</td><td>{esc(b)}</td></tr>" for a, b in _rows(r))
                         + "</table>")
        parts += [_selection_html(table) for table in r.selections]
        for figure in r.figures:
            if figure.endswith(".png"):
                encoded = base64.b64encode((out / figure).read_bytes()).decode()
                parts.append(f"<img alt='{esc(figure)}' src='data:image/png;base64,{encoded}'>")
            else:
                parts.append(f"<p><a href='{esc(figure)}'>{esc(figure)}</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_pages(out: pathlib.Path, pages: dict[str, str]) -> None:
    """Writes each page (file name -> text) into ``out``, atomically: never half a report."""
    for name, text in pages.items():
        temporary = out / f".{name}.{os.getpid()}"
        temporary.write_text(text)
        os.replace(temporary, out / name)
