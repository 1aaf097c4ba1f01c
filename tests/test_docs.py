"""The project's own docs stay true to the code: the keys they name exist, the map covers every figure."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml

from beyond_gd.report.figures import CLAIMS, FIGURES
from conftest import REPO, composed

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
GROUPS = {p.name for p in (REPO / "conf").iterdir() if p.is_dir()}
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("key", sorted(set(re.findall(r"-S '?([\w.]+)=", README))))
def test_every_override_in_the_readme_names_a_param_or_a_conf_group(key: str) -> None:
    if key in GROUPS:
        return
    group = key.split(".")[0]
    # A key of a group's other option (launcher.settings.partition under launcher=submitit_slurm) counts too.
    options = [p.stem for p in (REPO / "conf" / group).glob("*.yaml")] if group in GROUPS else []
    candidates = itertools.chain([PARAMS], (composed(f"{group}={o}") for o in options))  # lazily: found in PARAMS
    for params in candidates:
        node = params
        for part in key.split("."):
            if not (isinstance(node, dict) and part in node):
                break
            node = node[part]
        else:
            return
    raise AssertionError(f"README: -S {key}: no such key in params.yaml under any option of conf/{group}/")


def test_the_chapter_map_covers_every_figure_claim_and_stage() -> None:
    page = (REPO / "docs" / "chapter-map.md").read_text()
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = [f.name for f in FIGURES if f"figures/{f.name}.png" not in page]
    missing += [c.id for c in CLAIMS if f"`{c.id}`" not in page]
    missing += [s for s in stages if s not in ("mnist", "report") and f"stage `{s}`" not in page]
    assert not missing, f"docs/chapter-map.md does not mention: {missing}"


def test_the_product_points_to_no_file_outside_the_repository() -> None:
    outside = re.compile(r"FIGURES\.md|ECOSYSTEM\.md|DEVELOPERS\.md|STYLE\.md|\.\./shared")
    files = [p for d in ("src", "conf", "docs", "tests", "benchmarks") for p in (REPO / d).rglob("*")
             if p.is_file() and p.suffix in (".py", ".yaml", ".md")] + [REPO / "README.md", REPO / "pyproject.toml"]
    found = [str(p.relative_to(REPO)) for p in files if p != REPO / "tests" / "test_docs.py"
             and outside.search(p.read_text())]
    assert not found, found


def _table(heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after `heading` in the README, header and rule left out."""
    after = README[README.index(heading):]
    rows = []
    for line in after.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def test_the_readmes_rerun_table_is_what_the_workflow_test_checks() -> None:
    """Each row of "What re-runs": its edited key (the first in backticks) and the stages it names (the backticked
    stage names of its second cell) are those of tests/test_workflows.py's EDITS, row by row, in order."""
    from test_workflows import EDITS, reruns

    stages = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    rows = [(re.findall(r"`([^`]+)`", key)[0], set(re.findall(r"`([^`]+)`", ran)) & stages)
            for key, ran in _table("What re-runs")]
    assert rows == [(key, reruns(direct, real)) for key, _, direct, real in EDITS]
