"""Render the measured tables in README.md and docs/*.md from their CSVs under benchmarks/results/.

    .venv/bin/python benchmarks/render_docs.py           # rewrite the tables that differ from their CSV
    .venv/bin/python benchmarks/render_docs.py --check   # list the stale pages, exit 1 if there is one

A rendered table sits between two marker comments, and everything between them is replaced:

    <!-- table: benchmarks/results/train_speed.csv where=measurement:latest -->
    ...
    <!-- end table -->

`view=NAME` picks one of a CSV's views (below; default: the CSV's own), `where=COLUMN:VALUE` keeps the
rows whose COLUMN is VALUE. Each view chooses the columns, their headers and formats; a column empty in
every kept row is left out. A cell `=FILE.csv:KEY:COLUMN` is the COLUMN of the row KEY (first column) of
another CSV of benchmarks/results/, so a figure is typed once. Top-1 cells carry their 95% Wilson score
interval, computed here from the figure and its image count. Standard library only: the docs test
imports this module.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!-- table: (?P<csv>\S+)(?P<options>(?: \w+=\S+)*) -->\n(?P<body>.*?)<!-- end table -->",
                    re.DOTALL)
FENCE = re.compile(r"(^```.*?^```[^\n]*$)", re.DOTALL | re.MULTILINE)
Z95 = 1.959963984540054

Rows = list[dict[str, str]]


# --- reading -------------------------------------------------------------------------------------------

def read_csv(name: str, _seen: tuple[str, ...] = ()) -> Rows:
    """The rows of benchmarks/results/NAME, with `=FILE.csv:KEY:COLUMN` cells resolved."""
    if name in _seen:
        raise ValueError(f"a circle of references: {' -> '.join((*_seen, name))}")
    path = RESULTS / name
    if not path.is_file():
        raise FileNotFoundError(f"benchmarks/results/{name} does not exist")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for column, value in row.items():
            if value and value.startswith("="):
                row[column] = lookup(value[1:], (*_seen, name))
    return rows


def lookup(reference: str, seen: tuple[str, ...]) -> str:
    """`FILE.csv:KEY:COLUMN`: the cell of another CSV."""
    try:
        name, key, column = reference.split(":")
    except ValueError:
        raise ValueError(f"{reference!r} is not FILE.csv:KEY:COLUMN") from None
    rows = read_csv(name, seen)
    first = next(iter(rows[0])) if rows else None
    for row in rows:
        if row[first] == key:
            if column not in row:
                raise ValueError(f"{name} has no column {column!r}")
            return row[column]
    raise ValueError(f"{name} has no row {key!r}")


# --- cells -------------------------------------------------------------------------------------------

def wilson(percent: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval, in percent, of a proportion given in percent over n trials."""
    p, z2 = percent / 100, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100 * (centre - half), 100 * (centre + half)


def pct(value: str) -> str:
    return f"{float(value):.2f}%" if value else ""


def top1(value: str, n: str, bold: bool = False) -> str:
    """`84.57% (81.3-87.3, n=551)`: the figure with its 95% interval."""
    if not value:
        return ""
    figure = f"**{pct(value)}**" if bold else pct(value)
    if not n:
        return figure
    low, high = wilson(float(value), int(n))
    return f"{figure} ({low:.1f}-{high:.1f}, n={n})"


def count(value: str) -> str:
    return f"{int(value):,}" if value else ""


def kib(value: str) -> str:
    return f"{int(value):,} B ({int(value) / 1024:.2f} KiB)" if value else ""


def seconds(value: str) -> str:
    return f"{value} s" if value else ""


def joined(*values: str, sep: str = " / ") -> str:
    return sep.join(v or "-" for v in values) if any(values) else ""


# --- views -------------------------------------------------------------------------------------------

def curve_figures(row: dict) -> dict:
    """Best validation top-1, its epoch and the figures at epochs 25/50/100 of an accuracy run: from its
    per-epoch curve in flowers_fast_128.csv when it has one, else from its own cells."""
    if not row["curve"]:
        return {"best": row["best_val_top1"], "epoch": row["best_epoch"], "at": ("", "", "")}
    curves = read_csv("flowers_fast_128.csv")
    values = [float(r[f"{row['curve']}_val_top1"]) for r in curves if r[f"{row['curve']}_val_top1"]]
    best = max(values)

    def at(epoch: int) -> str:
        return f"{100 * values[epoch - 1]:.2f}" if len(values) >= epoch else ""

    return {"best": f"{100 * best:.2f}", "epoch": str(values.index(best) + 1), "at": (at(25), at(50), at(100))}


def accuracy_runs(rows: Rows) -> tuple[list[str], list[list[str]]]:
    header = ["run", "profile: recipe", "split (train / val / test images)", "best validation top-1 (epoch)",
              "int8 TFLite / QDQ on validation", "held-out test top-1: float / int8 TFLite / int8 QDQ",
              "validation top-1 at epoch 25 / 50 / 100", "minutes", "CPU"]
    body = []
    for row in rows:
        figures = curve_figures(row)
        best = top1(figures["best"], row["n_val"])
        if best and figures["epoch"]:
            best += f", epoch {figures['epoch']}"
        if row["note"] == "unfinished":
            best += f" (stopped at epoch {row['epochs_run']} of {row['epoch_budget']})"
        test = ""
        if row["test_float"] or row["test_int8_tflite"]:
            int8 = joined(pct(row["test_int8_tflite"]), pct(row["test_int8_qdq"]))
            test = f"{top1(row['test_float'], row['n_test'])} / {int8}"
        split = f"{row['split']}, near-duplicates {row['near_duplicates']}" if row["near_duplicates"] else row["split"]
        sizes = " / ".join(count(row[k]) or "-" for k in ("n_train", "n_val", "n_test"))
        minutes = row["wall_min"] + (f" ({row['wall_of']})" if row["wall_of"] not in ("", "training") else "")
        body.append([f"`{row['run']}`", f"`{row['profile']}`: {row['recipe']}" if row["profile"] != "seed card"
                     else f"seed card ({row['dataset']}): {row['recipe']}",
                     f"{split} ({sizes})" + (f", {row['res']}x{row['res']}" if row["res"] != "128" else ""),
                     best, joined(pct(row["val_int8_tflite"]), pct(row["val_int8_qdq"])), test,
                     joined(*(pct(v) for v in figures["at"])), minutes, row["cpu"]])
    return header, body


HEADLINE_RUNS = {"seed card (ST)": ("seed-card-128", None), "`thorough`": ("thorough-st", "thorough-701515"),
                 "`fast`": ("fast-st", "fast-701515")}


def accuracy_headline(rows: Rows) -> tuple[list[str], list[list[str]]]:
    """The README's comparison with the seed card: one column per recipe, ST's protocol then a held-out test."""
    by_run = {row["run"]: row for row in rows}
    columns = [(name, by_run[st], by_run.get(test)) for name, (st, test) in HEADLINE_RUNS.items()]
    none = "none (no test set)"

    def training(st: dict, test: dict | None) -> str:
        minutes = " / ".join(f"{r['wall_min']} min" for r in (st, test) if r and r["wall_min"])
        return ", ".join(x for x in (f"{st['epoch_budget']} epochs" if st["profile"] != "seed card"
                                     else f"up to {st['epoch_budget']} epochs", minutes, st["cpu"]) if x)

    body = [
        ["data", *(st["dataset"] for _, st, _ in columns)],
        ["best validation top-1, ST's 80/20 protocol, float",
         *(top1(curve_figures(st)["best"], st["n_val"], bold=True) for _, st, _ in columns)],
        ["the same split, int8 TFLite", *(pct(st["val_int8_tflite"]) for _, st, _ in columns)],
        ["held-out test top-1 (70/15/15), float",
         *(top1(test["test_float"], test["n_test"], bold=True) if test else none for _, _, test in columns)],
        ["the same test split, int8 TFLite",
         *(pct(test["test_int8_tflite"]) if test else none for _, _, test in columns)],
        ["training (minutes: 80/20 run / 70/15/15 run)", *(training(st, test) for _, st, test in columns)],
    ]
    return ["", *(name for name, _, _ in columns)], body


PROFILES = {  # profile: (what it is for, the accuracy runs that measured it)
    "default": ("`make run` on the embedded sample, tests, a first look", ("default-stratified",)),
    "fast": ("**your own images on a CPU**", ("fast-st", "fast-701515")),
    "thorough": ("your own images on a CPU when accuracy matters more than the hour",
                 ("thorough-st", "thorough-701515")),
    "st": ("ST's exact recipe, to reproduce the seed card on a GPU", ("st-st",)),
    "long": ("an ST-like recipe kept for comparison with earlier runs", ()),
}


def accuracy_profiles(rows: Rows) -> tuple[list[str], list[list[str]]]:
    """The README's "which profile" table: what each is for, its minutes and accuracy on the flower photos."""
    by_run = {row["run"]: row for row in rows}
    body = []
    for profile, (purpose, runs) in PROFILES.items():
        minutes, accuracy, cpus = [], [], []
        for run in runs:
            row = by_run[run]
            figures = curve_figures(row)
            if row["note"] == "unfinished":
                accuracy.append(f"not run to the end: {pct(figures['best'])} best validation at epoch "
                                f"{row['epochs_run']} of {row['epoch_budget']}")
            elif row["test_float"]:
                if len(runs) == 1 and figures["best"]:  # no ST-protocol run beside it
                    accuracy.append(f"{pct(figures['best'])} validation")
                accuracy.append(f"{pct(row['test_float'])} held-out test ({row['split']})")
            else:
                accuracy.append(f"{pct(figures['best'])} best validation ({row['split']})")
            if row["wall_min"]:
                minutes.append(row["wall_min"] + ("" if row["wall_of"] == "training" else f" ({row['wall_of']})"))
            if row["cpu"] not in cpus:
                cpus.append(row["cpu"])
        body.append([f"`{profile}`", purpose, " / ".join(minutes) or "-", "; ".join(accuracy) or "not measured",
                     "; ".join(cpus) or "-"])
    return ["profile", "for", "training minutes (flowers, 128; per run)", "accuracy (flowers, 128)", "CPU"], body


def train_speed(rows: Rows) -> tuple[list[str], list[list[str]]]:
    header = ["setting", "training images/s", "ratio", "epoch time", "ratio", "first-epoch extra", "training wall",
              "ratio"]
    return header, [[r["setting"], r["images_per_s"], r["images_per_s_ratio"], seconds(r["epoch_s"]), r["epoch_ratio"],
                     seconds(r["first_epoch_extra_s"]), seconds(r["training_wall_s"]), r["training_wall_ratio"]]
                    for r in rows]


def step_speed(rows: Rows) -> tuple[list[str], list[list[str]]]:
    return (["lever", "training images/s", "ratio", "per round", "first epoch"],
            [[r["lever"], r["images_per_s"] or r["note"], r["ratio"], joined(r["round_1"], r["round_2"]),
              seconds(r["first_epoch_s"])] for r in rows])


def validate_speed(rows: Rows) -> tuple[list[str], list[list[str]]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["measurement"], r["code"]), []).append(r)
    return (["measurement", "code", "images/s (per round)", "machine"],
            [[m, code, " and ".join(f"{int(r['images_per_s']):,}" for r in group), group[0]["machine"]]
             for (m, code), group in groups.items()])


def pipeline_speed(rows: Rows) -> tuple[list[str], list[list[str]]]:
    def time(r: dict) -> str:
        low = float(r["seconds_low"])
        text = f"{r['seconds_low']}-{r['seconds_high']} s" if r["seconds_high"] else f"{r['seconds_low']} s"
        return text + (f" ({int(low // 60)} min {int(low % 60)} s)" if low >= 60 else "")
    return (["what", "time", "training images/s", "CPU"],
            [[r["what"], time(r), r["images_per_s"], r["cpu"]] for r in rows])


def w4w8(rows: Rows) -> tuple[list[str], list[list[str]]]:
    header = ["search", "model", "scored on (images)", "weights in int4", "weights: int4/int8 vs int8",
              "what the search saw: top-1 int4/int8 vs int8, or points lost and the check",
              "test top-1: int4/int8 vs int8 QDQ", "McNemar vs int8 (lost, gained, p)", "evaluations",
              "minutes (all stages)"]
    body = []
    for r in rows:
        mcnemar = f"{r['lost_vs_int8']}, {r['gained_vs_int8']}, p = {r['mcnemar_p']}" if r["mcnemar_p"] else ""
        search = (f"{pct(r['search_top1_w4w8'])} vs {pct(r['search_top1_int8'])}" if r["search_top1_w4w8"] else
                  f"at most {r['search_lost_points']} points lost; check: drop {r['check_drop_points']} points "
                  f"(n={r['check_n']})" if r["search_lost_points"] else "")
        body.append([f"`{r['run']}`", r["model"], f"{r['search_scored_on']} ({count(r['search_images'])})",
                     f"{r['int4_share_pct']}%",
                     f"{count(r['weights_w4w8_bytes'])} B vs {count(r['weights_int8_bytes'])} B",
                     search, f"{top1(r['test_top1_w4w8'], r['test_n'])} vs {pct(r['test_top1_int8'])}", mcnemar,
                     r["evaluations"], r["experiment_min"]])
    return header, body


def calibration(rows: Rows) -> tuple[list[str], list[list[str]]]:
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["calibration_images"], []).append(pct(r["int8_tflite_val_top1"]))
    return (["calibration images", "int8 TFLite validation top-1 (per draw)"],
            [[images, " / ".join(values)] for images, values in groups.items()])


def board_latency(rows: Rows) -> tuple[list[str], list[list[str]]]:
    return (["model", "tool", "published ms", "estimated ms (fitted)", "leave-one-out", "architecture held out",
             "one coefficient (board file)"],
            [[r["model"], r["tool"], r["published_ms"], f"{r['fitted_ms']} ({r['fitted_error_pct']}%)",
              f"{r['leave_one_out_error_pct']}%", f"{r['architecture_out_error_pct']}%",
              f"{r['one_coefficient_ms']} ({r['one_coefficient_error_pct']}%)"] for r in rows])


def latency_checks(rows: Rows) -> tuple[list[str], list[list[str]]]:
    def covered(r: dict) -> str:
        if not r["bar_pct"]:
            return r["covered"]
        return f"{'yes' if r['covered'] == 'yes' else '**no**'} (±{r['bar_pct']}%)"
    return (["board", "model", "tool", "published ms", "estimated ms", "error", "inside the board's bar"],
            [[r["board"], r["model"] + (f" ({r['note']})" if r["note"] else ""), r["tool"], r["published_ms"],
              r["estimated_ms"], f"{r['error_pct']}%", covered(r)] for r in rows])


def energy(rows: Rows) -> tuple[list[str], list[list[str]]]:
    body = []
    for r in rows:
        time = f"{r['estimated_ms']} ({r['time_error']})"
        if not r["uj"]:
            body.append([r["board"], time, "not estimated: " + r["source"], "", "", "", ""])
            continue
        body.append([r["board"], time, f"{count(r['uj'])} ({count(r['uj_low'])}-{count(r['uj_high'])})",
                     f"{r['mw_low']}-{r['mw_high']}", f"{count(r['per_charge_low'])}-{count(r['per_charge_high'])}",
                     f"{r['per_hour_for_a_year_low']}-{r['per_hour_for_a_year_high']}", r["source"].split(" ")[0]])
    return (["board", "time ms (error bar)", "energy µJ (interval)", "mW (datasheet)", "inferences per charge",
             "per hour for a year", "datasheet"], body)


def profile_figures(rows: Rows) -> tuple[list[str], list[list[str]]]:
    return (["figure", "value", "how"],
            [[r["figure"], kib(r["value"]) if r["unit"] == "bytes" else count(r["value"]), r["how"]] for r in rows])


VIEWS: dict[str, dict[str, Callable[[Rows], tuple[list[str], list[list[str]]]]]] = {
    "accuracy_flowers.csv": {"runs": accuracy_runs, "headline": accuracy_headline, "profiles": accuracy_profiles},
    "train_speed.csv": {"train_speed": train_speed},
    "step_speed.csv": {"step_speed": step_speed},
    "validate_speed.csv": {"validate_speed": validate_speed},
    "pipeline_speed.csv": {"pipeline_speed": pipeline_speed},
    "test_suite.csv": {"pipeline_speed": pipeline_speed},
    "w4w8_flowers.csv": {"w4w8": w4w8},
    "calibration_images.csv": {"calibration": calibration},
    "board_latency_h747.csv": {"board_latency": board_latency},
    "board_latency_mp157.csv": {"board_latency": board_latency},
    "board_latency_checks.csv": {"checks": latency_checks},
    "energy_lc_v1_128.csv": {"energy": energy},
    "profile_lc_v1_128.csv": {"profile": profile_figures},
}


# --- pages -------------------------------------------------------------------------------------------

def table(header: list[str], body: list[list[str]]) -> list[str]:
    """A GitHub Markdown table, leaving out the columns empty in every row."""
    keep = [i for i in range(len(header)) if not body or any(row[i] for row in body)]
    lines = ["| " + " | ".join(header[i] for i in keep) + " |", "|" + "|".join("---" for _ in keep) + "|"]
    return lines + ["| " + " | ".join(row[i].replace("|", "\\|") for i in keep) + " |" for row in body]


def render_block(csv_path: str, options: str, page: Path) -> str:
    """The text between one pair of markers: the table, then the line naming its data."""
    opts = dict(option.split("=", 1) for option in options.split())
    unknown = set(opts) - {"view", "where"}
    if unknown:
        raise ValueError(f"unknown marker option {sorted(unknown)[0]!r} (view=, where=)")
    prefix = "benchmarks/results/"
    if not csv_path.startswith(prefix):
        raise ValueError(f"{csv_path}: tables render from {prefix}")
    name = csv_path[len(prefix):]
    views = VIEWS.get(name)
    if views is None:
        raise ValueError(f"{csv_path}: no view for this CSV in benchmarks/render_docs.py")
    view = opts.get("view", next(iter(views)))
    if view not in views:
        raise ValueError(f"{csv_path}: no view {view!r} (known: {', '.join(views)})")
    rows = read_csv(name)
    if "where" in opts:
        column, _, value = opts["where"].partition(":")
        if rows and column not in rows[0]:
            raise ValueError(f"{csv_path}: no column {column!r} for where=")
        rows = [row for row in rows if row[column] == value]
        if not rows:
            raise ValueError(f"{csv_path}: no row with {column} = {value!r}")
    header, body = views[view](rows)
    link = Path(*[".."] * len(page.relative_to(ROOT).parent.parts), csv_path).as_posix()
    source = f"Data: [`{csv_path}`]({link})"
    machines = {row.get("machine") or row.get("cpu") for row in rows} - {None, ""}
    if len(machines) == 1 and not {"CPU", "machine"} & set(header):
        source = f"Machine: {machines.pop()}. " + source
    return "\n".join([*table(header, body), "", source + ".", ""])


def render_page(page: Path, text: str | None = None) -> str:
    """The page's text with every marked table rendered from its CSV."""
    text = page.read_text(encoding="utf-8") if text is None else text

    def replace(match: re.Match) -> str:
        try:
            body = render_block(match["csv"], match["options"], page)
        except (ValueError, FileNotFoundError, KeyError) as error:
            raise ValueError(f"{page.relative_to(ROOT)}: {error}") from None
        return f"<!-- table: {match['csv']}{match['options']} -->\n{body}<!-- end table -->"

    # Markers inside fenced code blocks are examples, not tables: render only between the fences.
    parts = FENCE.split(text)
    return "".join(part if i % 2 else MARKER.sub(replace, part) for i, part in enumerate(parts))


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def stale_pages() -> list[Path]:
    return [page for page in pages() if render_page(page) != page.read_text(encoding="utf-8")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; list the stale pages, exit 1 if any")
    args = parser.parse_args()
    try:
        stale = stale_pages()
    except ValueError as error:
        print(f"render_docs: {error}", file=sys.stderr)
        return 2
    for page in stale:
        if args.check:
            print(f"stale: {page.relative_to(ROOT)}")
        else:
            page.write_text(render_page(page), encoding="utf-8")
            print(f"rendered: {page.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
