"""The `beyond-gd` command: what the pipeline holds, from the checkout's root."""

from __future__ import annotations

import pytest
import yaml

from beyond_gd import cli
from beyond_gd.report.figures import CLAIMS, FIGURES
from conftest import REPO


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DVC_ROOT", raising=False)


def test_stages_lists_every_stage_with_its_params_outputs_and_figures(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["stages"])
    out = capsys.readouterr().out
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert f"\n{name}: " in f"\n{out}", name
        assert f"  params: {', '.join(stage['params'])}" in out, name
    assert "  writes: data/interpolate\n" in out and "  writes: reports\n" in out
    assert "  feeds: Fig 6-9. Training with and without momentum: steps to a cost of 0.1" in out


def test_figures_lists_every_figure_and_claim_with_the_reports_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["figures"])
    out = capsys.readouterr().out
    for spec in FIGURES:
        assert f"{spec.name}: {spec.title}" in out
    verdicts = {line.split(": ")[0].removeprefix("  claim "): line.split(": ")[1]
                for line in out.splitlines() if line.startswith("  claim ")}
    assert set(verdicts) == {c.id for c in CLAIMS}
    assert set(verdicts.values()) <= {"agrees", "partly", "differs"}  # the committed report has checked all


def test_open_without_a_report_is_one_line(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: .*reports/index\.html: missing \(run `dvc repro`\)$"):
        cli.main(["open"])
