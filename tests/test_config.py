"""conf/ composes into the committed params.yaml, every study's Config validates it, bad params are one line."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import torch
import yaml

from beyond_gd.config import load, load_params
from beyond_gd.errors import ConfigError
from beyond_gd.pipeline import declared
from beyond_gd.optim.registry import OptimizerSpec, torch_optimizers
from conftest import REPO, composed

STAGES = declared()
OPTIMIZER_FILES = sorted(p.stem for p in (REPO / "conf" / "optimizers").glob("*.yaml"))


def test_committed_params_equal_composition_of_conf() -> None:
    """`dvc repro` reads params.yaml as it is; it must be what conf/ composes to."""
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == composed(), "params.yaml is stale: run `make params`"


@pytest.mark.parametrize("profile", ["book", "smoke", "thorough"])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_study_config_validates_in_every_profile(stage: str, profile: str) -> None:
    cfg = load(composed(f"profile={profile}"), STAGES[stage].config)
    assert cfg.__class__ is STAGES[stage].config


def test_one_name_per_stage_section_conf_group_and_folder() -> None:
    """The stage `x` reads the params section `x`, composed from the conf group conf/x/, and writes data/x."""
    params = composed()
    for name, stage in STAGES.items():
        assert name in params and (REPO / "conf" / name).is_dir(), name
        assert name in {f for f in stage.config.__dataclass_fields__}, name
        assert stage.default_out == ("reports" if name == "report" else f"data/{name}")


def test_smoke_profile_shrinks_the_work_not_the_model_or_data() -> None:
    """Every stage that reads MNIST trains or evaluates on it: the smoke profile shrinks each of them (CI runs
    it whole), and changes no shared section but the torch threads (one per stage: the tests run beside
    each other)."""
    book, smoke = composed(), composed("profile=smoke")
    assert smoke["baseline"]["max_steps"] and smoke["baseline"]["max_steps"] < 1000
    assert smoke["runtime"] == {**book["runtime"], "threads": 1}
    differing = {k for k in book if book[k] != smoke[k]} - {"runtime"}
    reads_mnist = {name for name, stage in STAGES.items() if "mnist" in stage.inputs}
    assert reads_mnist <= differing <= set(STAGES) - {"mnist"}, sorted(reads_mnist - differing)
    assert smoke["baseline"]["batch_size"] == book["baseline"]["batch_size"]


@pytest.mark.parametrize("name", OPTIMIZER_FILES)
def test_every_optimizer_file_builds_through_instantiate(name: str) -> None:
    spec = OptimizerSpec.from_params(composed()["optimizers"][name], f"optimizers.{name}")
    opt = spec.build([torch.nn.Parameter(torch.zeros(3))])
    assert type(opt) is torch_optimizers()[spec.target]
    assert opt.defaults["lr"] == spec.lr
    assert all(opt.defaults[k] == (tuple(v) if isinstance(v, list) else v) for k, v in spec.kwargs.items())


@pytest.mark.parametrize("name", OPTIMIZER_FILES)
def test_every_optimizer_is_fused_where_torch_has_a_fused_kernel_and_steps_as_its_loop(name: str) -> None:
    """`build` asks for the fused implementation wherever the class has one (not the optimizer's maths: its
    update from the same state matches torch's for-loop to float rounding); a spec that names an
    implementation keeps it."""
    spec = OptimizerSpec.from_params(composed()["optimizers"][name], f"optimizers.{name}")
    has_fused = "fused" in inspect.signature(spec.cls.__init__).parameters

    def stepped(s: OptimizerSpec) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
        opt = s.build(params)
        for _ in range(3):
            opt.zero_grad()
            loss = sum(((p - 1) ** 2 * torch.arange(1.0, p.numel() + 1).view_as(p)).sum() for p in params)
            loss.backward()
            opt.step(lambda: loss) if spec.class_name == "LBFGS" else opt.step()
        return opt, [p.detach() for p in params]

    built, fused = stepped(spec)
    assert bool(built.defaults.get("fused")) == has_fused
    if has_fused:
        looped, plain = stepped(spec.with_kwargs(foreach=False))
        assert not looped.defaults["fused"]
        for a, b in zip(fused, plain, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimizers_section_holds_every_conf_optimizer_file() -> None:
    assert sorted(composed()["optimizers"]) == OPTIMIZER_FILES


BAD = [
    # (stage whose Config reads it, path into params, new value or None to delete, the start of the message)
    ("baseline", "baseline.batch_size", -64, "baseline.batch_size: must be > 0, got -64"),
    ("baseline", "baseline.epochs", "many", "baseline.epochs: "),
    ("baseline", "baseline.epoch", 3, "baseline.epoch: unknown key"),
    ("baseline", "baseline.seed", None, "baseline.seed: missing"),
    ("baseline", "baseline.optimizer", "adamw2", "baseline.optimizer: 'adamw2' is not in the optimizers section"),
    ("baseline", "optimizers.sgd.lr", -0.01, "optimizers.sgd.lr: must be > 0"),
    ("baseline", "optimizers.sgd.lr", 0, "optimizers.sgd.lr: must be > 0"),
    ("baseline", "optimizers.sgd._target_", "torch.optim.AdamW2", "optimizers.sgd._target_: 'torch.optim.AdamW2' is not"),
    ("baseline", "optimizers.sgd._partial_", False, "optimizers.sgd._partial_: must be true"),
    ("baseline", "optimizers.sgd.momentun", 0.9, "optimizers.sgd.momentun: not an argument of torch.optim.SGD"),
    ("baseline", "optimizers.sgd_momentum.momentum", -1.0, "optimizers.sgd_momentum: torch.optim.SGD refused"),
    ("baseline", "runtime.device", "tpu", "runtime.device: 'tpu' is not allowed"),
    ("baseline", "model.final_relu", "perhaps", "model.final_relu: "),
    ("baseline", "model", None, "model: missing section"),
    # Nested schemas: the full key, however deep.
    ("surfaces", "surfaces.escape.lr", -1, "surfaces.escape.lr: must be > 0, got -1"),
    ("surfaces", "surfaces.escape.x_max", -9.0, "surfaces.escape.x_max: must be > x_min"),
    ("surfaces", "surfaces.angle.wobble", 1, "surfaces.angle.wobble: unknown key"),
    ("update_rules", "update_rules.stream.batch_size", 10_000, "update_rules.stream.batch_size: must be <= samples"),
    ("momentum_speedup", "momentum_speedup.setups.pytorch.init", "xavier",
     "momentum_speedup.setups.pytorch.init: 'xavier' is not allowed"),
    ("momentum_speedup", "momentum_speedup.seeds", [0, 0], "momentum_speedup.seeds: must be distinct"),
    ("optimizer_grid", "optimizer_grid.lrs.sgd", [0.1, -1.0], "optimizer_grid.lrs.sgd: must be distinct learning"),
    ("optimizer_grid", "optimizer_grid.lrs.adamw", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
     "optimizer_grid.lrs: 'adamw' is not in the optimizers"),
    ("optimizer_grid", "optimizer_grid.excluded.adam", "slow", "optimizer_grid.excluded.adam: also in lrs"),
    ("lbfgs", "lbfgs.compare", ["sgd", "nadam"], "lbfgs.compare: 'nadam' is not in the optimizers section"),
    ("report", "report.style.palette", "no-such-palette", "report.style.palette: 'no-such-palette' is not"),
    # Each stage's own section.
    ("mnist", "mnist.timeout_s", -1, "mnist.timeout_s: must be > 0"),
    ("random_walk", "random_walk.repeats", 1, "random_walk.repeats: must be > 1"),
    ("surfaces", "surfaces.seed", -3, "surfaces.seed: must be >= 0"),
    ("interpolate", "interpolate.alpha_step", 0, "interpolate.alpha_step: must be > 0"),
    ("identifiability", "identifiability.trials", 0, "identifiability.trials: must be > 0"),
    ("hessian", "hessian.split", "valid", "hessian.split: 'valid' is not allowed"),
    ("hessian_density", "hessian_density.starts", 0, "hessian_density.starts: must be > 0"),
    ("update_rules", "update_rules.steps", 0, "update_rules.steps: must be > 0"),
    ("optimizer_toys", "optimizer_toys.plateau", {}, "optimizer_toys.plateau.surface: missing"),
    ("momentum_speedup", "momentum_speedup.target_loss", -0.1, "momentum_speedup.target_loss: must be > 0"),
    ("momentum_speedup", "momentum_speedup.run_setups", ["pytorch", "tf1"],
     "momentum_speedup.run_setups: 'tf1' is not in setups (book_first_edition, pytorch)"),
    ("optimizer_grid", "optimizer_grid.rank_by", "luck", "optimizer_grid.rank_by: 'luck' is not allowed"),
    ("lbfgs", "lbfgs.train_images", 0, "lbfgs.train_images: must be > 0"),
    ("lr_adaptation", "lr_adaptation.corrected", "nadam", "lr_adaptation.corrected: 'nadam' is not in optimizers"),
    ("report", "report.claims", {}, "report.claims."),
    ("mode_connectivity", "mode_connectivity.seeds", [3], "mode_connectivity.seeds: at least two solutions make a pair"),
    ("edge_of_stability", "edge_of_stability.eval_every", 0, "edge_of_stability.eval_every: must be > 0"),
    ("landscape_2d", "landscape_2d.subset_size", 0, "landscape_2d.subset_size: must be > 0, got 0"),
    ("interpolate_notebook", "interpolate_notebook.lr", 0, "interpolate_notebook.lr: must be > 0, got 0"),
]


@pytest.mark.parametrize(("stage", "path", "value", "message"), BAD, ids=[f"{b[1]}={b[2]}" for b in BAD])
def test_bad_params_are_one_line_naming_the_key(stage: str, path: str, value: object, message: str) -> None:
    params = copy.deepcopy(composed())
    *parents, key = path.split(".")
    node = params
    for name in parents:
        node = node[name]
    if value is None:
        del node[key]
    else:
        node[key] = value
    with pytest.raises(ConfigError) as err:
        load(params, STAGES[stage].config)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("baseline: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "broken.yaml")
