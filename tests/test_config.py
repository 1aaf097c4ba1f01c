"""conf/ composes into the committed params.yaml, and bad params are one-line errors."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from beyond_gd.config import (
    ModelConfig,
    OptimizerConfig,
    RuntimeConfig,
    TrainConfig,
    load_params,
    section,
    section_map,
)
from beyond_gd.errors import ConfigError
from beyond_gd.optim.registry import OPTIMIZERS, build_optimizer
from conftest import REPO, composed, write_params

SCHEMAS = {"runtime": RuntimeConfig, "model": ModelConfig, "optimizer": OptimizerConfig, "train": TrainConfig}
OPTIMIZER_CONFIGS = sorted(p.stem for p in (REPO / "conf" / "optimizer").glob("*.yaml"))


def test_committed_params_equal_composition_of_conf() -> None:
    """`dvc repro` reads params.yaml as it is; it must be what conf/ composes to."""
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == composed(), "params.yaml is stale: run `make params`"


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_default_sections_validate(key: str) -> None:
    section(composed(), key, SCHEMAS[key])


def test_smoke_profile_shrinks_the_work_not_the_model_or_data() -> None:
    book, smoke = composed(), composed("profile=smoke")
    assert smoke["train"]["max_steps"] and smoke["train"]["max_steps"] < 1000
    differing = {k for k in book if book[k] != smoke[k]}
    assert differing == {"train", "interpolate", "hessian", "identifiability", "momentum", "optimizer_grid"}
    assert smoke["train"]["batch_size"] == book["train"]["batch_size"]


@pytest.mark.parametrize("name", OPTIMIZER_CONFIGS)
def test_every_optimizer_config_builds(name: str) -> None:
    params = composed(f"optimizer={name}")
    cfg = section(params, "optimizer", OptimizerConfig)
    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(opt, OPTIMIZERS[cfg.name])
    assert opt.defaults["lr"] == cfg.lr


BAD = [
    # (section, edit, the key the message must name)
    ("train", {"batch_size": -64}, "train.batch_size: must be > 0"),
    ("train", {"epochs": "many"}, "train.epochs"),
    ("train", {"epoch": 3}, "train.epoch: unknown key"),
    ("optimizer", {"lr": -0.01}, "optimizer.lr: must be > 0"),
    ("optimizer", {"lr": 0}, "optimizer.lr: must be > 0"),
    ("optimizer", {"name": "adamw2"}, "optimizer.name: 'adamw2' is not allowed"),
    ("optimizer", {"kwargs": {"momentun": 0.9}}, "optimizer.kwargs.momentun: not an argument of torch.optim.SGD"),
    ("optimizer", {"kwargs": {"momentum": -1.0}}, "optimizer.kwargs: torch.optim.SGD refused"),
    ("runtime", {"device": "tpu"}, "runtime.device: 'tpu' is not allowed"),
    ("model", {"final_relu": "perhaps"}, "model.final_relu"),
]


@pytest.mark.parametrize(("key", "edit", "message"), BAD, ids=[m.split(":")[0] + "-" + str(i) for i, (_, _, m) in enumerate(BAD)])
def test_bad_params_name_the_key(key: str, edit: dict, message: str) -> None:
    params = copy.deepcopy(composed())
    params[key].update(edit)
    with pytest.raises(ConfigError) as err:
        cfg = section(params, key, SCHEMAS[key])
        build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_key_and_missing_section() -> None:
    params = copy.deepcopy(composed())
    del params["train"]["seed"]
    with pytest.raises(ConfigError, match=r"^train\.seed: missing"):
        section(params, "train", TrainConfig)
    with pytest.raises(ConfigError, match=r"^nothing: missing section"):
        section(params, "nothing", TrainConfig)


def test_unreadable_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "broken.yaml")


def test_stage_cli_reports_one_line_and_exit_2(tmp_path: Path) -> None:
    params = composed()
    params["train"]["batch_size"] = -1
    path = write_params(tmp_path / "params.yaml", params)
    done = subprocess.run([sys.executable, "-m", "beyond_gd.stages.train_baseline", "--params", str(path),
                           "--data", str(tmp_path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: train.batch_size: must be > 0, got -1"
    assert not (tmp_path / "out").exists()


def test_optimizers_section_holds_every_conf_optimizer_file() -> None:
    table = section_map(composed(), "optimizers", OptimizerConfig)
    assert sorted(table) == OPTIMIZER_CONFIGS
    for name, cfg in table.items():
        assert cfg == section(composed(f"optimizer={name}"), "optimizer", OptimizerConfig)


def test_nested_section_errors_name_the_full_key() -> None:
    params = copy.deepcopy(composed())
    params["optimizers"]["adam"]["lr"] = -1
    with pytest.raises(ConfigError, match=r"^optimizers\.adam\.lr: must be > 0"):
        section_map(params, "optimizers", OptimizerConfig)
