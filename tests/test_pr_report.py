"""The pull-request metrics report (`make diff`) and the workflow that posts it.

The report runs against real git + DVC repositories made here, two commits whose numbers differ,
so `dvc params diff` / `dvc metrics diff` are the real CLI's output, not a stand-in.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mcuvision.report import pr_compare, pr_images, pr_render, pr_report, pr_sources
from mcuvision.report.pr_compare import cell_changes, count_cells
from mcuvision.report.pr_guards import check_guards
from mcuvision.report.pr_render import MARKER, confusion_section

WORKFLOW = ROOT / ".github" / "workflows" / "metrics.yml"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
       "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


# --- a small project: metrics, params and confusion CSVs as the pipeline writes them ---------

GUARDS = {"max_int8_drop_points": 3.0, "max_w4w8_drop_points": 1.5, "min_agreement_with_float": 0.9}
PARAMS = {"seed": 127, "train": {"epochs": 30}, "evaluate": {"split": "test", "guards": GUARDS}}
EVALUATE = {
    "split": "test", "images": 10, "num_classes": 3,
    "float_keras": {"top1": 0.9},
    "float_onnx": {"top1": 0.9, "agreement_with_float": 1.0},
    "int8_tflite": {"top1": 0.9, "agreement_with_float": 0.95, "drop_points": 0.0},
    "int8_qdq_onnx": {"top1": 0.8, "agreement_with_float": 0.92, "drop_points": -1.0},
}
BOARD = {"display_name": "STM32H747I-DISCO", "fits_ram": True, "fits_flash": True,
         "ram_needed_kib": 238.33, "ram_budget_kib": 512.0, "ram_margin_kib": 273.67,
         "flash_needed_kib": 606.29, "flash_budget_kib": 2048.0, "flash_margin_kib": 1441.71}
PROFILE = {"board": "stm32h747i_disco", "boards": {"stm32h747i_disco": BOARD}}
# (actual, predicted, images): 9 of 10 right
CONFUSION = [("daisy", "daisy", 4), ("rose", "rose", 3), ("rose", "tulip", 1), ("tulip", "tulip", 2)]


def confusion_csv(cells) -> str:
    rows = [f"{a},{p}" for a, p, n in cells for _ in range(n)]
    return "actual,predicted\n" + "\n".join(rows) + "\n"


def write_numbers(repo: Path, params: dict, evaluate: dict, profile: dict, confusion: dict[str, list]) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics" / "evaluate.json").write_text(json.dumps(evaluate, indent=2), encoding="utf-8")
    (repo / "metrics" / "profile.json").write_text(json.dumps(profile, indent=2), encoding="utf-8")
    folder = repo / "reports" / "evaluate" / "confusion"
    folder.mkdir(parents=True, exist_ok=True)
    for name, cells in confusion.items():
        (folder / f"{name}.csv").write_text(confusion_csv(cells), encoding="utf-8")


def commit(repo: Path, message: str) -> str:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "commit.gpgsign=false", "commit", "-qm", message, cwd=repo)
    return sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict:
    """`changed`: commit 1 (all guards pass), then commit 2 that crosses some; `clean`: commit 1 only."""
    changed = tmp_path_factory.mktemp("report") / "changed"
    changed.mkdir()
    sh("git", "init", "-q", cwd=changed)
    sh("dvc", "init", "-q", cwd=changed)
    # DVC 3 takes top-level metrics without stages: what `dvc metrics diff` reads.
    (changed / "dvc.yaml").write_text("metrics:\n  - metrics/evaluate.json\n  - metrics/profile.json\n")
    write_numbers(changed, PARAMS, EVALUATE, PROFILE,
                  {"float_keras": CONFUSION, "int8_tflite": CONFUSION})
    first = commit(changed, "numbers before")
    clean = changed.parent / "clean"
    shutil.copytree(changed, clean)

    params = copy.deepcopy(PARAMS)
    params["train"]["epochs"] = 40
    evaluate = copy.deepcopy(EVALUATE)
    # int8 TFLite loses 10 points and agrees less with float: both guards crossed
    evaluate["int8_tflite"].update(top1=0.8, agreement_with_float=0.85, drop_points=-10.0)
    # a w4w8 model appears, within its limit against int8 QDQ
    evaluate["w4w8_qdq_onnx"] = {"top1": 0.8, "agreement_with_float": 0.92, "drop_points": -10.0,
                                 "drop_vs_int8_points": 0.0}
    profile = copy.deepcopy(PROFILE)
    profile["boards"]["stm32h747i_disco"].update(fits_ram=False, ram_needed_kib=530.5, ram_margin_kib=-18.5)
    int8_now = [("daisy", "daisy", 3), ("daisy", "rose", 1), ("rose", "rose", 3), ("rose", "tulip", 1),
                ("tulip", "tulip", 2)]
    write_numbers(changed, params, evaluate, profile,
                  {"float_keras": CONFUSION, "int8_tflite": int8_now, "w4w8_qdq_onnx": int8_now})
    commit(changed, "numbers after")
    return {"changed": changed, "first": first, "clean": clean}


def row(markdown: str, *cells: str) -> str:
    """The one table row holding all these cells, in order."""
    found = [line for line in markdown.splitlines()
             if line.startswith("|") and all(c in line for c in cells)
             and [line.index(c) for c in cells] == sorted(line.index(c) for c in cells)]
    assert len(found) == 1, f"expected one row with {cells}, found {found} in:\n{markdown}"
    return found[0]


def test_report_between_two_commits(repos, tmp_path, capsys):
    out = tmp_path / "report.md"
    code = pr_report.main(["--base", repos["first"], "--repo", str(repos["changed"]), "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0  # guards are reported, not enforced, without --fail-on-guard
    report = out.read_text(encoding="utf-8")
    assert printed == report
    assert report.splitlines()[0] == MARKER

    params = report.split("### Params")[1].split("### Metrics")[0]
    row(params, "params.yaml", "train.epochs", "30", "40")
    assert "evaluate.guards" not in params  # unchanged params stay out

    metrics = report.split("### Metrics")[1].split("### Confusion")[0]
    row(metrics, "metrics/evaluate.json", "int8_tflite.top1", "0.9", "0.8", "-0.1")
    row(metrics, "int8_tflite.drop_points", "0.0", "-10.0", "-10.0")
    row(metrics, "boards.stm32h747i_disco.fits_ram", "True", "False")
    row(metrics, "boards.stm32h747i_disco.ram_needed_kib", "238.33", "530.5")
    assert "int8_qdq_onnx.top1" not in metrics

    confusion = report.split("### Confusion matrices")[1]
    int8 = confusion.split("`int8_tflite`")[1].split("####")[0]
    assert "Correct: 9/10 → 8/10." in int8
    row(int8, "daisy → rose", "| 0 |", "| 1 |", "+1")
    row(int8, "daisy → daisy ✓", "| 4 |", "| 3 |", "-1")
    assert "rose → tulip" not in int8  # an unchanged cell is not listed
    assert "No cell changed." in confusion.split("`float_keras`")[1].split("####")[0]
    assert "Missing in BASE" in confusion.split("`w4w8_qdq_onnx`")[1]
    assert "int8_qdq_onnx" not in confusion  # no CSV on either side: no section

    guards = report.split("### Guards")[1].split("### Params")[0]
    assert "**3 guards crossed.**" in guards
    row(guards, "`int8_tflite` top-1 drop", "-10.00", "**crossed**")
    row(guards, "`int8_tflite` agreement with float", "0.8500", "0.9000", "**crossed**")
    row(guards, "STM32H747I-DISCO: RAM fits", "530.5 KiB", "-18.5 KiB", "512.0 KiB", "**crossed**")
    row(guards, "STM32H747I-DISCO: flash fits", "606.3 KiB", "| passed |")
    row(guards, "`int8_qdq_onnx` top-1 drop", "-1.00", "| passed |")
    row(guards, "`w4w8_qdq_onnx` top-1 drop", "+0.00 points vs int8 QDQ", "-1.50", "| passed |")


def test_module_command_exit_codes(repos):
    """What `make diff` runs, as a separate process in the project directory."""
    command = [sys.executable, "-m", "mcuvision.report.pr_report", "--base", repos["first"]]
    plain = sh(*command, cwd=repos["changed"])
    assert plain.stdout.startswith(MARKER + "\n") and "**crossed**" in plain.stdout
    strict = sh(*command, "--fail-on-guard", cwd=repos["changed"], check=False)
    assert strict.returncode == 1, strict.stderr
    assert strict.stdout == plain.stdout  # DVC's rows come in a varying order: the report sorts them
    assert "`int8_tflite` top-1 drop" in strict.stderr


def test_nothing_crossed_and_nothing_changed_exits_zero(repos):
    done = sh(sys.executable, "-m", "mcuvision.report.pr_report", "--base", "HEAD", "--fail-on-guard",
              cwd=repos["clean"], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All guards passed." in done.stdout and "**crossed**" not in done.stdout
    assert "No params changed." in done.stdout and "No metrics changed." in done.stdout
    assert done.stdout.count("No cell changed.") == 2  # float_keras and int8_tflite


def test_uncommitted_changes_are_the_workspace(repos, tmp_path, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(repos["clean"], repo)
    evaluate = copy.deepcopy(EVALUATE)
    evaluate["int8_qdq_onnx"].update(top1=0.7, drop_points=-20.0)
    (repo / "metrics" / "evaluate.json").write_text(json.dumps(evaluate), encoding="utf-8")
    assert pr_report.main(["--base", "HEAD", "--repo", str(repo), "--fail-on-guard"]) == 1
    report = capsys.readouterr().out
    assert "with uncommitted changes" in report
    row(report, "int8_qdq_onnx.top1", "0.8", "0.7")
    row(report, "`int8_qdq_onnx` top-1 drop", "-20.00", "**crossed**")


def test_clear_errors(repos, tmp_path, capsys):
    assert pr_report.main(["--base", "no-such-branch", "--repo", str(repos["clean"])]) == 2
    assert "unknown revision 'no-such-branch'" in capsys.readouterr().err
    plain = tmp_path / "plain"
    plain.mkdir()
    assert pr_report.main(["--base", "main", "--repo", str(plain)]) == 2
    assert "not inside a git repository" in capsys.readouterr().err
    sh("git", "init", "-q", cwd=plain)
    assert pr_report.main(["--base", "main", "--repo", str(plain)]) == 2
    assert "not a DVC project" in capsys.readouterr().err


def test_dvc_tables_are_sorted_and_empty_ones_dropped():
    header = "| Path | Metric | a | b |\n|------|--------|---|---|\n"
    table = header + "| m/z.json | x | 1 | 2 |\n| m/a.json | y | 1 | 2 |\n| m/a.json | b | 1 | 2 |\n"
    assert pr_sources.sorted_table(table).splitlines()[2:] == [
        "| m/a.json | b | 1 | 2 |", "| m/a.json | y | 1 | 2 |", "| m/z.json | x | 1 | 2 |"]
    assert pr_sources.table_rows(header) == 0 and pr_sources.table_rows(table) == 3


# --- a real change and a noise-sized one, image by image --------------------------------------

N_IMAGES = 60
LABELS = ["daisy", "rose", "tulip"]
BASE_WRONG = {"float_keras": set(range(48, 60)), "int8_tflite": set(range(47, 60))}  # 48 and 47 of 60 right


def predictions_csv(wrong: dict[str, set[int]]) -> str:
    """The evaluate stage's predictions.csv: format f misses exactly the images in wrong[f]."""
    header = "path,label," + ",".join(f"{f}_predicted,{f}_confidence" for f in wrong)
    rows = []
    for i in range(N_IMAGES):
        label, other = LABELS[i % 3], LABELS[(i + 1) % 3]
        rows.append(f"{label}/{i}.jpg,{label}," + ",".join(f"{other if i in wrong[f] else label},0.9" for f in wrong))
    return "\n".join([header, *rows]) + "\n"


def scored_evaluate(int8_right: int, b: int, c: int, p_value: float) -> dict:
    """metrics/evaluate.json for N_IMAGES images with int8 TFLite's paired test against float."""
    evaluate = copy.deepcopy(EVALUATE)
    for name in ("float_keras", "float_onnx", "int8_qdq_onnx"):
        evaluate[name]["n"] = N_IMAGES
    agreement = (N_IMAGES - b - c) / N_IMAGES
    evaluate["int8_tflite"] = {"top1": int8_right / N_IMAGES, "n": N_IMAGES,
                               "drop_points": 100 * (int8_right - 48) / N_IMAGES, "agreement_with_float": agreement,
                               "mcnemar_vs_float": {"b": b, "c": c, "p_value": p_value}}
    evaluate["int8_qdq_onnx"].update(drop_points=0.0, agreement_with_float=1.0)
    return evaluate


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict:
    """One BASE commit, then two workspaces: `noise` (int8 TFLite swaps 3 images, its drop vs float
    crosses the 3-point limit by chance) and `real` (int8 TFLite loses 15 more images)."""
    base = tmp_path_factory.mktemp("verdicts") / "base"
    base.mkdir()
    sh("git", "init", "-q", cwd=base)
    sh("dvc", "init", "-q", cwd=base)
    (base / "dvc.yaml").write_text("metrics:\n  - metrics/evaluate.json\n")
    write_numbers(base, PARAMS, scored_evaluate(47, 1, 0, 1.0), PROFILE, {})
    (base / "reports" / "evaluate" / "predictions.csv").write_text(predictions_csv(BASE_WRONG), encoding="utf-8")
    first = commit(base, "base")
    out = {"first": first}
    # noise: int8 now misses 45 and 46 and gets 50 right (b=2, c=1 against BASE); against float it has
    # lost 4 and gained 1 on these 60 images (-5 points, McNemar p = 0.375), beyond the limit of 3.
    # real: int8 also misses images 0-14 (b=15, c=0 against BASE; -26.7 points vs float, p = 2**-15).
    cases = {"noise": (BASE_WRONG["int8_tflite"] - {50} | {45, 46}, scored_evaluate(45, 4, 1, 0.375)),
             "real": (BASE_WRONG["int8_tflite"] | set(range(15)), scored_evaluate(32, 16, 0, 2 * 0.5 ** 16))}
    for name, (int8_wrong, evaluate) in cases.items():
        repo = base.parent / name
        shutil.copytree(base, repo)
        write_numbers(repo, PARAMS, evaluate, PROFILE, {})
        (repo / "reports" / "evaluate" / "predictions.csv").write_text(
            predictions_csv({**BASE_WRONG, "int8_tflite": int8_wrong}), encoding="utf-8")
        commit(repo, name)
        out[name] = repo
    return out


def report_of(repo: Path, base: str, *args: str) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", "mcuvision.report.pr_report", "--base", base, "--fail-on-guard", *args, cwd=repo,
              check=False)


def test_a_noise_sized_change_is_within_noise_and_does_not_fail(verdicts):
    done = report_of(verdicts["noise"], verdicts["first"])
    assert done.returncode == 0, done.stdout + done.stderr
    images = done.stdout.split("### BASE → workspace, image by image")[1].split("###")[0]
    row(images, "Int8 TFLite (LiteRT)", "| 60 |", "78.3 → 76.7", "| 2 |", "| 1 |", "| 1 |", "within noise")
    row(images, "Float (Keras)", "80.0 → 80.0", "no image changed")
    guards = done.stdout.split("### Guards")[1].split("###")[0]
    row(guards, "`int8_tflite` top-1 drop", "-5.00", "p=0.375 (b=4, c=1)", "| within noise |")
    assert "No guard crossed. 1 within noise" in guards and "**crossed**" not in guards


def test_a_real_change_is_beyond_chance_and_fails(verdicts):
    done = report_of(verdicts["real"], verdicts["first"])
    assert done.returncode == 1, done.stdout + done.stderr
    images = done.stdout.split("### BASE → workspace, image by image")[1].split("###")[0]
    row(images, "Int8 TFLite (LiteRT)", "78.3 → 53.3", "| 15 |", "| 0 |", f"| {2 * 0.5 ** 15:.3g} |",
        "**beyond chance**")
    row(done.stdout.split("### Guards")[1], "`int8_tflite` top-1 drop", "-26.67", "**crossed**")
    assert "`int8_tflite` top-1 drop" in done.stderr
    # The significance level is the caller's: at 1e-6 the same change is called noise, at 1 any crossed limit fails.
    assert report_of(verdicts["real"], verdicts["first"], "--alpha", "1e-6").returncode == 0
    assert report_of(verdicts["noise"], verdicts["first"], "--alpha", "1").returncode == 1


def test_the_workspace_accuracy_carries_intervals(verdicts):
    repo = verdicts["noise"]
    evaluate = json.loads((repo / "metrics" / "evaluate.json").read_text())
    evaluate["float_keras"].update(top1=18 / 45, top1_low=0.270249, top1_high=0.545481, n=45)
    text = "\n".join(pr_render.accuracy_section(evaluate))
    row(text, "Float (Keras)", "| 40.0 (27.0-54.5), n=45 |")
    row(text, "Int8 TFLite (LiteRT)", "| -5.00 |", "p=0.375 (b=4, c=1)")


def test_images_are_matched_by_path_and_label():
    base = "path,label,int8_tflite_predicted\na.jpg,rose,rose\nb.jpg,rose,rose\nc.jpg,tulip,tulip\n"
    # b.jpg was relabelled (a different test case), c.jpg left the split, d.jpg is new: only a.jpg is shared.
    now = "path,label,int8_tflite_predicted\na.jpg,rose,tulip\nb.jpg,daisy,rose\nd.jpg,rose,rose\n"
    (change,) = pr_compare.image_changes(base, now)
    assert (change.images, change.base_correct, change.now_correct, change.b, change.c) == (1, 1, 0, 1, 0)
    assert change.verdict(0.05) == "within noise"
    missing = "\n".join(pr_render.image_section(None, now))
    assert "Not available: no `reports/evaluate/predictions.csv` in BASE" in missing
    assert "is not readable" in "\n".join(pr_render.image_section("a,b\n1,2\n", now))


# --- guards and confusion as data ------------------------------------------------------------

def results(guards) -> dict[str, str]:
    return {g.name: g.result for g in guards}


def test_guard_limits_are_inclusive_and_w4w8_is_held_to_int8():
    evaluate = copy.deepcopy(EVALUATE)
    evaluate["int8_tflite"].update(drop_points=-3.0, agreement_with_float=0.9)  # exactly at the limits
    evaluate["int8_qdq_onnx"].update(drop_points=-3.01, agreement_with_float=0.8999)
    # far below float, but only 1.6 points below int8 QDQ: its own limit is 1.5
    evaluate["w4w8_qdq_onnx"] = {"drop_points": -4.61, "drop_vs_int8_points": -1.6, "agreement_with_float": 0.95}
    got = results(check_guards(PARAMS, evaluate, PROFILE))
    assert got["`int8_tflite` top-1 drop"] == "passed"
    assert got["`int8_tflite` agreement with float"] == "passed"
    assert got["`int8_qdq_onnx` top-1 drop"] == "**crossed**"
    assert got["`int8_qdq_onnx` agreement with float"] == "**crossed**"
    assert got["`w4w8_qdq_onnx` top-1 drop"] == "**crossed**"
    evaluate["w4w8_qdq_onnx"]["drop_vs_int8_points"] = -1.4
    assert results(check_guards(PARAMS, evaluate, PROFILE))["`w4w8_qdq_onnx` top-1 drop"] == "passed"


def test_agreement_below_its_limit_is_noise_on_few_images_and_crossed_on_many():
    evaluate = copy.deepcopy(EVALUATE)
    evaluate["int8_tflite"].update(agreement_with_float=0.85, n=20)    # 17 of 20: P(X <= 17 | 20, 0.9) = 0.32
    assert results(check_guards(PARAMS, evaluate, PROFILE))["`int8_tflite` agreement with float"] == "within noise"
    evaluate["int8_tflite"]["n"] = 1000                                 # 850 of 1000: p ~ 1e-7
    assert results(check_guards(PARAMS, evaluate, PROFILE))["`int8_tflite` agreement with float"] == "**crossed**"


@pytest.mark.parametrize("params, evaluate, profile, expected", [
    (None, None, None, {"accuracy guards", "board fit"}),
    ({"evaluate": {}}, EVALUATE, PROFILE, {"accuracy guards"}),
    (PARAMS, {"int8_tflite": EVALUATE["int8_tflite"]}, PROFILE, {"`int8_qdq_onnx`"}),
    (PARAMS, {**EVALUATE, "int8_tflite": {"top1": 0.9, "drop_points": float("nan")}}, PROFILE,
     {"`int8_tflite` top-1 drop", "`int8_tflite` agreement with float"}),
    (PARAMS, EVALUATE, {"board": "nucleo", "boards": PROFILE["boards"]}, {"board fit"}),
    (PARAMS, EVALUATE, {"board": "stm32h747i_disco", "boards": {"stm32h747i_disco": {"display_name": "H7"}}},
     {"H7: RAM fits", "H7: flash fits"}),
])
def test_missing_numbers_are_not_available_not_a_crash(params, evaluate, profile, expected):
    guards = check_guards(params, evaluate, profile)
    unavailable = {g.name for g in guards if g.crossed is None}
    assert unavailable == expected
    assert all("not available" in g.value for g in guards if g.crossed is None)
    assert "not available." in "\n".join(pr_render.guards_section(guards))


def test_confusion_listing_is_capped_for_many_classes():
    classes = [f"class_{i:03d}" for i in range(101)]
    base = [(c, c, 10) for c in classes]
    # class i loses i % 7 images to its neighbour: many changed cells of different sizes
    now = []
    for i, c in enumerate(classes):
        moved = i % 7
        now.append((c, c, 10 - moved))
        if moved:
            now.append((c, classes[(i + 1) % 101], moved))
    changes = cell_changes(count_cells(confusion_csv(base)), count_cells(confusion_csv(now)))
    assert all(abs(a.delta) >= abs(b.delta) for a, b in zip(changes, changes[1:]))
    text = "\n".join(confusion_section({"float_keras": confusion_csv(base)},
                                       {"float_keras": confusion_csv(now)}, limit=15))
    listed = [line for line in text.splitlines() if line.startswith("| class_")]
    assert len(listed) == 15
    assert all(line.endswith("| -6 |") or line.endswith("| +6 |") for line in listed)
    assert f"…and {len(changes) - 15} more changed cells" in text
    assert "Correct: 1010/1010 → " in text


def test_confusion_sides_missing_or_unreadable():
    csv = confusion_csv(CONFUSION)
    text = "\n".join(confusion_section({"int8_tflite": csv, "float_onnx": "a,b\n1,2\n"},
                                       {"int8_tflite": None, "float_onnx": csv}))
    assert "Missing in the workspace: nothing to compare (BASE: 9/10 correct)." in text
    assert "is not readable" in text
    none = "\n".join(confusion_section({}, {}))
    assert "Not available: no `reports/evaluate/confusion/<format>.csv`" in none
    assert count_cells(csv) == Counter({("daisy", "daisy"): 4, ("rose", "rose"): 3,
                                        ("rose", "tulip"): 1, ("tulip", "tulip"): 2})


# --- the workflow that posts the report ------------------------------------------------------

def load_workflow(path: Path = WORKFLOW) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def validate(path: Path) -> subprocess.CompletedProcess:
    # The schema is vendored in check-jsonschema: no network needed.
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.github-workflows", str(path)], capture_output=True, text=True, env=ENV)


def test_workflow_matches_the_github_actions_schema(tmp_path):
    done = validate(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    # The same check rejects a job with no runner: it can fail.
    broken = load_workflow()
    del broken["jobs"]["report"]["runs-on"]
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert validate(tmp_path / "broken.yml").returncode != 0


def test_workflow_comments_the_report_on_pull_requests():
    workflow = load_workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    steps = workflow["jobs"]["report"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    runs = [s.get("run", "") for s in steps]
    assert any("make run" in r for r in runs)
    assert any("dvc pull" in r for r in runs)
    diff = next(s for s in steps if "make diff" in s.get("run", ""))
    assert "BASE=\"origin/$BASE_REF\"" in diff["run"] and diff["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert any(s.get("uses", "").startswith("iterative/setup-cml@") for s in steps)
    comment = next(s for s in steps if "cml comment update" in s.get("run", ""))
    assert "--publish" in comment["run"] and '"$REPORT"' in comment["run"]
    assert comment["env"]["REPO_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert "head.repo.full_name == github.repository" in comment["if"]  # forks: summary + artifact
    report = workflow["jobs"]["report"]["env"]["REPORT"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    # the pictures the report links travel with it (pr_images.images_folder)
    assert f"{Path(report).stem}_images/" in upload["with"]["path"].split()
    assert report in upload["with"]["path"].split()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_diff_runs_the_report_module():
    dry = subprocess.run(["make", "-n", "diff", "BASE=origin/main", "OUTPUT=out.md", "DIFF_ARGS=--fail-on-guard"],
                         cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "python -m mcuvision.report.pr_report --base origin/main --output out.md --fail-on-guard" in dry.stdout


def png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_pictures(repo: Path, colour: tuple[int, int, int], accuracies: list[float]) -> None:
    (repo / "reports" / "evaluate").mkdir(parents=True, exist_ok=True)
    (repo / "reports" / "evaluate" / "confusion_int8_tflite.png").write_bytes(png(colour))
    for kind in ("eval", "train"):
        folder = repo / "dvclive" / "train" / "plots" / "metrics" / kind
        folder.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{i}\t{a}\n" for i, a in enumerate(accuracies))
        (folder / "accuracy.tsv").write_text("step\taccuracy\n" + rows, encoding="utf-8")


def test_report_with_output_links_pictures_that_exist(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/evaluate.json\n")
    write_numbers(repo, PARAMS, EVALUATE, PROFILE, {"int8_tflite": CONFUSION})
    write_pictures(repo, (255, 0, 0), [0.3, 0.5])
    base = commit(repo, "base")
    write_pictures(repo, (0, 0, 255), [0.4, 0.6, 0.7])
    out = tmp_path / "elsewhere" / "report.md"
    assert pr_report.main(["--base", base, "--repo", str(repo), "--output", str(out)]) == 0
    report = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert set(links) == {"report_images/confusion_int8_tflite_base.png",
                          "report_images/confusion_int8_tflite_head.png", "report_images/training_curves.png"}
    for link in links:
        assert (out.parent / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    assert (out.parent / links[0]).read_bytes() != (out.parent / links[1]).read_bytes()  # base's from git
    assert (out.parent / "report_images/confusion_int8_tflite_base.png").read_bytes() == png((255, 0, 0))
    assert pr_images.tsv_series(b"step\taccuracy\n0\t0.25\n1\t0.5\n") == [0.25, 0.5]
