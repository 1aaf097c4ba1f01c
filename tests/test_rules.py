"""The chapter's update rules against torch.optim, and Adam's second-moment bias against 1 - beta2^i."""

from __future__ import annotations

import pytest
import torch

from beyond_gd.optim import rules
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.studies import update_rules
from conftest import REPO, config

STEPS = 100
# Agreement required where the maths is the same; float64 round-off is ~1e-15.
TOL = 1e-6
# The chapter's AdaGrad text: "a tiny delta (~10^-7) in the denominator".
BOOK_DELTA = 1e-7
# A step-decay schedule of the usual kind: the rate halves half way.
LR_DROP = 0.5
# A small regression whose feature scales span 1 to 1e-6, so some gradients
# are as small as the optimizers' delta/eps and their placement shows.
STREAM = {"samples": 256, "features": 8, "outputs": 3, "batch_size": 32, "steps": STEPS,
          "min_feature_scale": 1e-6, "seed": 0}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def configs() -> dict[str, OptimizerSpec]:
    """The book's torch.optim calls (conf/optimizers/), by entry name, as the update_rules study reads them."""
    return config(update_rules.Config).optimizers


@pytest.fixture(scope="module")
def stream() -> rules.GradientStream:
    return rules.regression_stream(**STREAM)


@pytest.fixture(scope="module")
def findings(configs: dict[str, OptimizerSpec], stream: rules.GradientStream) -> list[rules.Finding]:
    return rules.findings(configs, stream, STEPS, BOOK_DELTA, LR_DROP, TOL)


@pytest.mark.parametrize("name", sorted(rules.REGISTRY))
def test_rule_beside_torch_optim(name: str, configs: dict[str, OptimizerSpec], stream: rules.GradientStream) -> None:
    """Each rule runs beside its torch.optim class for 100 steps of one gradient stream: the same path
    to 1e-6 where the maths is the same, a real difference where the book's text says otherwise."""
    comp = next(c for c in rules.COMPARISONS if c.rule == name and c.primary)
    diff = rules.run_comparison(comp, configs, stream, STEPS, BOOK_DELTA, LR_DROP)
    if comp.same_maths:
        assert diff <= TOL, f"{name}: {diff:.3e} from torch.optim"
    else:
        assert diff > TOL, f"{name}: expected to differ from torch.optim, got {diff:.3e}"


def test_every_rule_has_one_torch_pairing() -> None:
    primary = [c.rule for c in rules.COMPARISONS if c.primary]
    assert sorted(primary) == sorted(rules.REGISTRY)


def test_findings_are_measured_and_bear_out_the_algebra(findings: list[rules.Finding]) -> None:
    """Every recorded difference is real (above round-off by far) and every claimed identity holds."""
    assert len(findings) == len(rules.COMPARISONS)
    for f in findings:
        assert f.agrees == f.same_maths, f


def test_torch_nesterov_stores_the_lookahead_point(findings: list[rules.Finding]) -> None:
    """Same trajectory, different variable: torch's p is Sutskever's theta + m v, off theta by m v."""
    by_case = {(f.rule, f.case): f for f in findings}
    assert by_case[("nesterov", "torch p vs theta + m v")].max_abs_diff <= TOL
    assert by_case[("nesterov", "torch p vs theta")].max_abs_diff > TOL


def test_rules_do_not_change_their_inputs(stream: rules.GradientStream) -> None:
    params = [p.clone() for p in stream.start]
    before = [p.clone() for p in params]
    rule = rules.adam(lr=0.1, beta1=0.9, beta2=0.99, delta=1e-8)
    state = rule.init(params)
    grads = stream.grads(params, 0)
    new, new_state = rule.update(grads, state, params)
    assert all(torch.equal(a, b) for a, b in zip(params, before, strict=True))
    assert state.count == 0 and new_state.count == 1
    assert not any(torch.equal(a, b) for a, b in zip(new, params, strict=True))


@pytest.mark.parametrize("index, power, mean", [(0, 1, 1.0), (1, 2, 0.0)], ids=["first", "second"])
def test_adam_moment_bias_is_one_minus_beta_power(configs: dict[str, OptimizerSpec], index: int, power: int,
                                                  mean: float) -> None:
    """E[m_i] / E[g] = 1 - beta1^i and E[v_i] / E[g^2] = 1 - beta2^i (the chapter's derivation), measured
    on i.i.d. gradients."""
    beta = configs["adam"].kwargs["betas"][index]
    # 20,000 streams: the relative standard error of the step-1 average is sqrt(2/20000) = 1% for g^2
    # of normal g, and 1/sqrt(20000) = 0.7% for g of mean 1 and unit variance.
    ratio, theory = rules.moment_bias(beta, power, steps=STEPS, repeats=20_000, seed=0, mean=mean)
    assert ratio.shape == theory.shape == (STEPS,)
    assert torch.allclose(ratio, theory, rtol=0.05, atol=0.0)
    # Uncorrected, a_1 is (1 - beta) of E[g^power]: far too small, which is why Adam divides it out.
    assert ratio[0] < 10 * (1 - beta)


def test_moment_bias_tells_one_beta_from_another() -> None:
    """The measurement can fail: an average with another beta is not 1 - 0.9^i."""
    ratio, theory = rules.moment_bias(0.9, 1, steps=20, repeats=20_000, seed=0, mean=1.0)
    wrong, _ = rules.moment_bias(0.99, 1, steps=20, repeats=20_000, seed=0, mean=1.0)
    assert torch.allclose(ratio, theory, rtol=0.05) and not torch.allclose(wrong, theory, rtol=0.05)


@pytest.mark.parametrize("comp", rules.COMPARISONS, ids=lambda c: f"{c.rule}-{c.case}")
def test_each_comparison_names_a_conf_optimizers_file(comp: rules.Comparison,
                                                      configs: dict[str, OptimizerSpec]) -> None:
    """The torch side of every comparison is one of the book's calls in conf/optimizers/, built by instantiate."""
    assert (REPO / "conf" / "optimizers" / f"{comp.optimizer}.yaml").is_file()
    spec = configs[comp.optimizer]
    assert isinstance(spec.build([torch.nn.Parameter(torch.zeros(1))]), spec.cls)
