"""The update_rules study: the findings and Adam's bias as its Result, and its params."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from beyond_gd.config import load
from beyond_gd.errors import ConfigError
from beyond_gd.optim import rules
from beyond_gd.stage import write
from beyond_gd.stages.update_rules import STAGE
from beyond_gd.studies import update_rules
from beyond_gd.study import Inputs
from conftest import composed, config

# The bias measured on fewer streams: a second, not a few.
SMALL = ("update_rules.adam_bias.repeats=2000",)


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """The study sets torch's thread count from its section; later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_study_result_holds_findings_bias_and_summary(tmp_path: Path) -> None:
    cfg = config(update_rules.Config, *SMALL)
    result = update_rules.run(cfg, Inputs(workdir=tmp_path))
    assert sorted(result.outputs()) == sorted(STAGE.outputs)
    assert torch.get_num_threads() == cfg.update_rules.threads

    findings = result.tables["findings.csv"]
    assert list(findings.columns) == ["rule", "case", "optimizer", "book_form", "torch_form", "max_abs_diff",
                                      "agrees", "same_maths"]
    assert len(findings) == len(rules.COMPARISONS)
    assert findings["optimizer"].tolist() == [c.optimizer for c in rules.COMPARISONS]
    assert (findings["agrees"] == findings["same_maths"]).all()  # the algebra borne out, as in test_rules
    tol = cfg.update_rules.tolerance
    assert (findings.loc[findings["same_maths"], "max_abs_diff"] <= tol).all()

    bias = result.tables["adam_bias.csv"]
    assert list(bias.columns) == ["moment", "step", "measured", "theory", "rel_error"]
    steps = list(range(1, cfg.update_rules.adam_bias.steps + 1))
    assert bias["moment"].tolist() == ["first"] * len(steps) + ["second"] * len(steps)
    assert bias["step"].tolist() == steps * 2
    beta1, beta2 = cfg.optimizers[cfg.update_rules.adam_bias.optimizer].kwargs["betas"]
    assert bias["theory"].iloc[[0, len(steps)]].tolist() == pytest.approx([1 - beta1, 1 - beta2])
    # 2,000 streams: the relative standard error at step 1 is ~3% (second) and ~2% (first); 15% is five.
    assert bias["rel_error"].abs().max() < 0.15

    summary = result.summary
    assert summary["all_borne_out"] is True
    assert summary["comparisons"] == len(findings) and summary["agree"] == summary["same_maths"]
    assert summary["max_diff_same_maths"] <= tol < summary["min_diff_differing"]
    assert (summary["adam_beta1"], summary["adam_beta2"]) == (beta1, beta2)
    assert summary["adam_bias_m1_ratio"] == pytest.approx(1 - beta1, rel=0.15)
    assert result.metrics == {k: summary[k] for k in ("comparisons", "agree", "adam_bias_max_abs_rel_error")}

    # As the stage writes them: the booleans and strings survive the CSV, the JSON is plain.
    out = tmp_path / "out"
    write(result, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(STAGE.outputs)
    pd.testing.assert_frame_equal(pd.read_csv(out / "findings.csv"), findings)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert json.loads((out / "metrics.json").read_text()) == result.metrics


def test_the_torch_side_is_the_optimizers_section(tmp_path: Path) -> None:
    """Each comparison builds its torch.optim call from the `optimizers` entry it names: another Adam
    (beta2) moves the bias theory with it, and the same findings still bear the algebra out."""
    cfg = config(update_rules.Config, *SMALL, "optimizers.adam.betas=[0.9,0.99]")
    result = update_rules.run(cfg, Inputs(workdir=tmp_path))
    assert result.summary["adam_beta2"] == 0.99
    bias = result.tables["adam_bias.csv"]
    assert bias.loc[bias["moment"] == "second", "theory"].iloc[0] == pytest.approx(0.01)
    assert result.summary["all_borne_out"] is True


def test_an_adam_entry_at_torchs_default_betas_is_measured_at_them(tmp_path: Path) -> None:
    """An optimizers entry that leaves betas out gets torch's (0.9, 0.999), for the check and the measurement."""
    params = composed(*SMALL)
    del params["optimizers"]["adam"]["betas"]
    result = update_rules.run(load(params, update_rules.Config), Inputs(workdir=tmp_path))
    assert result.summary["adam_beta2"] == 0.999


BAD: list[tuple[Callable[[dict[str, Any]], Any], str]] = [
    # (edit of the composed params, the start of the message: the key it names)
    (lambda p: p["update_rules"].update(steps=0), "update_rules.steps: must be > 0"),
    (lambda p: p["update_rules"].update(tolerence=1e-6), "update_rules.tolerence: unknown key"),
    (lambda p: p["update_rules"].pop("book_delta"), "update_rules.book_delta: missing"),
    (lambda p: p["update_rules"]["stream"].update(batch_size=0), "update_rules.stream.batch_size: must be > 0"),
    (lambda p: p["update_rules"]["stream"].update(batch_size=10_000), "update_rules.stream.batch_size: must be <="),
    (lambda p: p["update_rules"]["adam_bias"].update(optimizer="adamw"),
     "update_rules.adam_bias.optimizer: 'adamw' is not in the optimizers section"),
    (lambda p: p["update_rules"]["adam_bias"].update(optimizer="sgd"), "update_rules.adam_bias.optimizer:"),
    (lambda p: p["optimizers"]["adam"].update(betas=[1.0, 0.999]), "optimizers.adam: torch.optim.Adam refused"),
    (lambda p: p["update_rules"]["adam_bias"].update(first_moment_mean=0.0),
     "update_rules.adam_bias.first_moment_mean: must be > 0"),
    (lambda p: p["optimizers"].pop("sgd_nesterov"), "optimizers.sgd_nesterov: missing"),
    (lambda p: p["optimizers"]["adam"].update(lr=-1), "optimizers.adam.lr: must be > 0"),
]


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return composed(*SMALL)


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_param_is_a_config_error_naming_the_key(params: dict[str, Any], edit: Any, message: str) -> None:
    p = copy.deepcopy(params)
    edit(p)
    with pytest.raises(ConfigError) as err:
        load(p, update_rules.Config)
    assert str(err.value).startswith(message), err.value
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted({c.optimizer for c in rules.COMPARISONS}))
def test_every_compared_optimizer_is_required(params: dict[str, Any], name: str) -> None:
    """Every `optimizers` entry a comparison names is needed: dropping any one is an error naming it."""
    p = copy.deepcopy(params)
    del p["optimizers"][name]
    # adam is also adam_bias's entry: the field naming it is the first to say so.
    named = rf"update_rules\.adam_bias\.optimizer: '{name}' is not in the optimizers section"
    with pytest.raises(ConfigError, match=rf"^(optimizers\.{name}: missing|{named})"):
        load(p, update_rules.Config)
