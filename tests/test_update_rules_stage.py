"""Stage update_rules: the findings and Adam's bias as artifacts, its params, its MLflow run."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch
import yaml

from beyond_gd.errors import ConfigError
from beyond_gd.optim import rules
from beyond_gd.stages import update_rules as stage
from conftest import REPO, composed, write_params

# Read straight from the group file: the test holds no copy of its numbers.
DEFAULT: dict[str, Any] = yaml.safe_load((REPO / "conf" / "update_rules" / "default.yaml").read_text())


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """The stage sets torch's thread count from params; later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def small_params() -> dict[str, Any]:
    """The composed optimizers plus this section, the bias measured on fewer streams (a second, not a few)."""
    section = copy.deepcopy(DEFAULT)
    section["adam_bias"].update(repeats=2000)
    return {"optimizers": composed()["optimizers"], "update_rules": section}


def test_stage_writes_findings_bias_and_metrics(tmp_path: Path) -> None:
    params = small_params()
    out = tmp_path / "out"
    stage.main(["--params", str(write_params(tmp_path / "params.yaml", params)), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == sorted(stage.OUTPUTS)

    findings = pd.read_csv(out / "findings.csv")
    assert list(findings.columns) == ["rule", "case", "optimizer", "book_form", "torch_form", "max_abs_diff",
                                      "agrees", "same_maths"]
    assert len(findings) == len(rules.COMPARISONS)
    assert (findings["agrees"] == findings["same_maths"]).all()  # the algebra borne out, as in test_rules
    tol = params["update_rules"]["tolerance"]
    assert (findings.loc[findings["same_maths"], "max_abs_diff"] <= tol).all()

    bias = pd.read_csv(out / "adam_bias.csv")
    assert list(bias.columns) == ["step", "measured", "theory", "rel_error"]
    assert bias["step"].tolist() == list(range(1, params["update_rules"]["adam_bias"]["steps"] + 1))
    beta2 = params["optimizers"]["adam"]["kwargs"]["betas"][1]
    assert bias["theory"].iloc[0] == pytest.approx(1 - beta2)
    # 2,000 streams: the relative standard error of E[v_1] is ~3%; 15% is five of them.
    assert bias["rel_error"].abs().max() < 0.15

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["all_borne_out"] is True
    assert metrics["comparisons"] == len(findings) and metrics["agree"] == metrics["same_maths"]
    assert metrics["max_diff_same_maths"] <= tol < metrics["min_diff_differing"]
    assert metrics["adam_beta2"] == beta2

    runs = mlflow.search_runs(experiment_names=["beyond-gd/update_rules"])
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "params.update_rules.tolerance"] == str(tol)
    assert runs.loc[0, "params.optimizers.adam.lr"] == str(params["optimizers"]["adam"]["lr"])


BAD = [
    # (edit of the params, the start of the message: the key it names)
    (lambda p: p["update_rules"].update(steps=0), "update_rules.steps: must be > 0"),
    (lambda p: p["update_rules"].update(tolerence=1e-6), "update_rules.tolerence: unknown key"),
    (lambda p: p["update_rules"].pop("book_delta"), "update_rules.book_delta: missing"),
    (lambda p: p["update_rules"]["stream"].update(batch_size=0), "update_rules.stream.batch_size: must be > 0"),
    (lambda p: p["update_rules"]["stream"].update(batch_size=10_000), "update_rules.stream.batch_size: must be <="),
    (lambda p: p["update_rules"]["adam_bias"].update(optimizer="adamw"), "optimizers.adamw: missing"),
    (lambda p: p["update_rules"]["adam_bias"].update(optimizer="sgd"), "update_rules.adam_bias.optimizer:"),
    (lambda p: p["optimizers"].pop("nesterov"), "optimizers.nesterov: missing"),
    (lambda p: p["optimizers"]["adam"].update(lr=-1), "optimizers.adam.lr: must be > 0"),
]


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_param_is_a_config_error_naming_the_key(tmp_path: Path, edit: Any, message: str) -> None:
    params = small_params()
    edit(params)
    with pytest.raises(ConfigError) as err:
        stage.main(["--params", str(write_params(tmp_path / "params.yaml", params)), "--out", str(tmp_path / "out")])
    assert str(err.value).startswith(message), err.value
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
