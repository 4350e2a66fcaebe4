"""The README and docs/ cannot rot: tables match their CSVs, links resolve, the code map, the make
targets, the console scripts and the pipeline diagram match the project. Text only: no TensorFlow."""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import render_docs  # noqa: E402

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text without its fenced code blocks and inline code spans."""
    return INLINE.sub("", FENCED.sub("", text))


def code(text: str) -> str:
    """The fenced code blocks and inline code spans of the text, one per line."""
    return "\n".join([*FENCED.findall(text), *INLINE.findall(FENCED.sub("", text))])


def section(text: str, title: str) -> str:
    """The body of the `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", INLINE.sub(r"\1", heading).strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCED.sub("", page.read_text(encoding="utf-8")), re.MULTILINE):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def test_every_rendered_table_matches_its_csv():
    stale = [str(page.relative_to(ROOT)) for page in render_docs.pages()
             if render_docs.render_page(page) != page.read_text(encoding="utf-8")]
    assert not stale, f"tables differ from their CSVs in {stale}: run python benchmarks/render_docs.py"


def test_render_check_lists_a_stale_table_and_rewrites_it(tmp_path, monkeypatch):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# x\n\n<!-- table: benchmarks/results/step_speed.csv -->\n| stale |\n<!-- end table -->\n"
                    "```markdown\n<!-- table: benchmarks/results/nothing.csv -->\nan example\n"
                    "<!-- end table -->\n```\n")
    monkeypatch.setattr(render_docs, "ROOT", tmp_path)
    monkeypatch.setattr(render_docs, "pages", lambda: [page])
    monkeypatch.setattr(sys, "argv", ["render_docs.py", "--check"])
    assert render_docs.main() == 1
    monkeypatch.setattr(sys, "argv", ["render_docs.py"])
    assert render_docs.main() == 0
    text = page.read_text()
    assert "| stale |" not in text and "| batch 64 | 101.5 |" in text and "an example" in text
    assert "(../benchmarks/results/step_speed.csv)" in text
    monkeypatch.setattr(sys, "argv", ["render_docs.py", "--check"])
    assert render_docs.main() == 0


def test_a_reference_cell_and_the_wilson_interval():
    low, high = render_docs.wilson(80.58, 417)  # the interval evaluate reports for 336 of 417
    assert (round(low, 1), round(high, 1)) == (76.5, 84.1)
    rows = render_docs.read_csv("calibration_images.csv")
    shared = next(r for r in rows if r["calibration_images"] == "300" and r["draw"] == "1")
    pipeline = next(r for r in render_docs.read_csv("accuracy_flowers.csv") if r["run"] == "fast-st")
    assert shared["int8_tflite_val_top1"] == pipeline["val_int8_tflite"] != ""


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def code_map_paths() -> list[str]:
    """The paths in the first column of the README's code map, from the project's root: a name without a
    `/` is in the folder of the path before it on its row."""
    paths = []
    for line in section(README.read_text(encoding="utf-8"), "Code map").splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for token in INLINE.findall(line.split(" | ")[0]):
            path = token if "/" in token or not folder else folder + token
            paths.append(path)
            folder = path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"
    return paths


def test_every_path_of_the_code_map_exists():
    paths = code_map_paths()
    assert len(paths) > 40 and "stages/model_card.py" in paths and "mcuvision/data/mix.py" in paths
    assert not [p for p in paths if not (ROOT / p).exists()]


def test_every_stage_has_its_module_in_the_code_map():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert {f"stages/{name}.py" for name in stages} <= set(code_map_paths())


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_and_console_script_named_exists(page):
    text = code(page.read_text(encoding="utf-8"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    targets = set(re.findall(r"\bmake ([a-z][\w-]*)", text))
    assert targets - makefile_targets() == set(), f"{page.name} names make targets the Makefile lacks"
    named = set(re.findall(r"\b(mcuvision-[a-z][\w-]*)", page.read_text(encoding="utf-8")))
    assert named - set(scripts) == set(), f"{page.name} names console scripts pyproject.toml lacks"
    if page == README:
        assert {"run", "test"} <= targets


def test_the_readme_diagram_is_the_pipeline():
    """The Mermaid block is `dvc dag --mermaid`: its edges are dvc.yaml's (an output of one stage that
    another depends on), so a stage added or rewired shows here."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]

    def paths(entries: list) -> list[str]:
        return [(e if isinstance(e, str) else next(iter(e))).rstrip("/") for e in entries or []]

    expected = {(a, b) for a, sa in stages.items() for b, sb in stages.items() if a != b
                if any(d == o or d.startswith(o + "/") or o.startswith(d + "/")
                       for o in paths(sa.get("outs", []) + sa.get("metrics", []) + sa.get("plots", []))
                       for d in paths(sb.get("deps", [])))}
    block = re.search(r"```mermaid\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert block, "README has no mermaid block"
    names = dict(re.findall(r"(node\d+)\[\"(\w+)\"\]", block.group(1)))
    drawn = {(names[a], names[b]) for a, b in re.findall(r"(node\d+)-->(node\d+)", block.group(1))}
    assert set(names.values()) == set(stages) and drawn == expected


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300
    assert lines.index("## Code map") < 150
    order = ["## Two commands", "## Your own images in three commands", "## What you get",
             "## Results against the seed card", "## Which training profile", "## Code map", "## Documentation"]
    assert [lines.index(title) for title in order] == sorted(lines.index(title) for title in order)
    assert "dvc exp show --only-changed" in "\n".join(lines)
