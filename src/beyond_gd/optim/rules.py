"""The chapter's update rules, written from its equations as pure functions.

Each rule has the shape of an optax optimizer (google-deepmind/optax): a
factory takes the hyperparameters and returns `Rule(init, update, lookahead)`.
`init(params)` gives the state (a NamedTuple of tensors); `update(grads,
state, params)` gives `(new_params, new_state)`; `lookahead(state, params)` is
the point where the caller evaluates the gradient: the params themselves,
except for the Nesterov rules, which take it after the momentum step
(Sutskever et al. 2013, eq. 3-4). Params and grads are lists of tensors and
nothing is changed in place.

Names follow the chapter: its learning rate epsilon is `lr` (torch's name),
`delta` the small constant that keeps a denominator from zero, `m` the
momentum, `rho` RMSProp's decay, `beta1`/`beta2` Adam's.

The second half runs each rule beside torch.optim on one fixed stream of
mini-batch gradients, records where torch's definitions differ from the
book's text (`findings`), and measures Adam's first- and second-moment bias
(`moment_bias`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from beyond_gd.optim.registry import OptimizerSpec

Tensors = list[torch.Tensor]


class Rule(NamedTuple):
    init: Callable[[Tensors], Any]
    update: Callable[[Tensors, Any, Tensors], tuple[Tensors, Any]]
    lookahead: Callable[[Any, Tensors], Tensors]


class EmptyState(NamedTuple):
    pass


class VelocityState(NamedTuple):
    velocity: Tensors


class AccumulatorState(NamedTuple):
    # AdaGrad's r (a running sum) or RMSProp's r (a running average) of g*g.
    sum_sq: Tensors


class RMSPropMomentumState(NamedTuple):
    sum_sq: Tensors
    velocity: Tensors


class AdamState(NamedTuple):
    count: int  # i, the number of updates taken (bias correction needs it)
    first: Tensors  # m_i
    second: Tensors  # v_i


# --------------------------------------------------------------------------
# The rules, equation by equation
# --------------------------------------------------------------------------
def sgd(lr: float) -> Rule:
    """Plain gradient descent, theta_i = theta_{i-1} - eps g_i: the baseline of Fig 6-9."""

    def update(grads: Tensors, state: EmptyState, params: Tensors) -> tuple[Tensors, EmptyState]:
        return [p - lr * g for p, g in _zip(params, grads)], state

    return Rule(lambda params: EmptyState(), update, _at_params)


def momentum(lr: float, m: float) -> Rule:
    """v_i = m v_{i-1} - eps g_i; theta_i = theta_{i-1} + v_i (section "Momentum-based optimization")."""
    return Rule(_velocity_init, _velocity_update(lr, m), _at_params)


def nesterov(lr: float, m: float) -> Rule:
    """Momentum with the gradient taken at theta + m v, not at theta (Sutskever et al. 2013, eq. 3-4).

    The chapter states the idea without an equation; the velocity and
    parameter updates are momentum's, only the point of the gradient moves.
    """

    def lookahead(state: VelocityState, params: Tensors) -> Tensors:
        return [p + m * v for p, v in _zip(params, state.velocity)]

    return Rule(_velocity_init, _velocity_update(lr, m), lookahead)


def adagrad(lr: float, delta: float) -> Rule:
    """r_i = r_{i-1} + g_i*g_i (r_0 = 0); theta_i = theta_{i-1} - eps / (delta + sqrt(r_i)) * g_i."""

    def update(grads: Tensors, state: AccumulatorState, params: Tensors) -> tuple[Tensors, AccumulatorState]:
        r = [r + g * g for r, g in _zip(state.sum_sq, grads)]
        new = [p - lr / (delta + r.sqrt()) * g for p, r, g in zip(params, r, grads, strict=True)]
        return new, AccumulatorState(r)

    return Rule(_accumulator_init, update, _at_params)


def rmsprop(lr: float, rho: float, delta: float) -> Rule:
    """AdaGrad with r_i = rho r_{i-1} + (1 - rho) g_i*g_i (Hinton's RMSProp, as the chapter writes it)."""

    def update(grads: Tensors, state: AccumulatorState, params: Tensors) -> tuple[Tensors, AccumulatorState]:
        r = _decayed_sum_sq(state.sum_sq, grads, rho)
        new = [p - lr / (delta + r.sqrt()) * g for p, r, g in zip(params, r, grads, strict=True)]
        return new, AccumulatorState(r)

    return Rule(_accumulator_init, update, _at_params)


def rmsprop_momentum(lr: float, rho: float, delta: float, m: float) -> Rule:
    """RMSProp's scaled step fed into classical momentum: v_i = m v_{i-1} - eps g_i / (delta + sqrt(r_i))."""
    return Rule(_rmsprop_momentum_init, _rmsprop_momentum_update(lr, rho, delta, m), _at_params)


def rmsprop_nesterov(lr: float, rho: float, delta: float, m: float) -> Rule:
    """RMSProp with Nesterov momentum, which the chapter says RMSProp's momentum is.

    Goodfellow, Bengio & Courville (2016), Algorithm 8.6: the gradient is
    taken at theta + m v; delta sits where the chapter puts it for AdaGrad.
    """

    def lookahead(state: RMSPropMomentumState, params: Tensors) -> Tensors:
        return [p + m * v for p, v in _zip(params, state.velocity)]

    return Rule(_rmsprop_momentum_init, _rmsprop_momentum_update(lr, rho, delta, m), lookahead)


def adam(lr: float, beta1: float, beta2: float, delta: float) -> Rule:
    """m_i, v_i: moving averages of g and g*g; m~ = m_i / (1 - beta1^i), v~ = v_i / (1 - beta2^i);
    theta_i = theta_{i-1} - eps / (delta + sqrt(v~)) * m~ (section "Adam")."""

    def update(grads: Tensors, state: AdamState, params: Tensors) -> tuple[Tensors, AdamState]:
        i = state.count + 1
        first = [beta1 * m + (1 - beta1) * g for m, g in _zip(state.first, grads)]
        second = _decayed_sum_sq(state.second, grads, beta2)
        new = [
            p - lr / (delta + (v / (1 - beta2**i)).sqrt()) * (m / (1 - beta1**i))
            for p, m, v in zip(params, first, second, strict=True)
        ]
        return new, AdamState(i, first, second)

    return Rule(_adam_init, update, _at_params)


def adam_eps_hat(lr: float, beta1: float, beta2: float, eps_hat: float) -> Rule:
    """Not the chapter's rule: Adam in the "more efficient order" of Kingma & Ba (2015), end of Sec. 2,
    alpha_i = eps sqrt(1 - beta2^i) / (1 - beta1^i); theta_i = theta_{i-1} - alpha_i m_i / (sqrt(v_i) + eps_hat),
    the small constant added to the uncorrected root (TensorFlow 1's AdamOptimizer, the first edition's
    framework). Kept to measure what that placement changes."""

    def update(grads: Tensors, state: AdamState, params: Tensors) -> tuple[Tensors, AdamState]:
        i = state.count + 1
        first = [beta1 * m + (1 - beta1) * g for m, g in _zip(state.first, grads)]
        second = _decayed_sum_sq(state.second, grads, beta2)
        step = lr * (1 - beta2**i) ** 0.5 / (1 - beta1**i)
        new = [p - step * m / (v.sqrt() + eps_hat) for p, m, v in zip(params, first, second, strict=True)]
        return new, AdamState(i, first, second)

    return Rule(_adam_init, update, _at_params)


# The chapter's rules by name; a rule's keyword arguments are its hyperparameters.
REGISTRY: dict[str, Callable[..., Rule]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "rmsprop_momentum": rmsprop_momentum,
    "rmsprop_nesterov": rmsprop_nesterov,
    "adam": adam,
}


def _zip(*lists: Sequence[torch.Tensor]) -> zip:
    return zip(*lists, strict=True)


def _at_params(state: Any, params: Tensors) -> Tensors:
    return params


def _zeros(params: Tensors) -> Tensors:
    return [torch.zeros_like(p) for p in params]


def _velocity_init(params: Tensors) -> VelocityState:
    return VelocityState(_zeros(params))


def _velocity_update(lr: float, m: float) -> Callable[[Tensors, VelocityState, Tensors], tuple[Tensors, VelocityState]]:
    def update(grads: Tensors, state: VelocityState, params: Tensors) -> tuple[Tensors, VelocityState]:
        v = [m * v - lr * g for v, g in _zip(state.velocity, grads)]
        return [p + v for p, v in _zip(params, v)], VelocityState(v)

    return update


def _accumulator_init(params: Tensors) -> AccumulatorState:
    return AccumulatorState(_zeros(params))


def _decayed_sum_sq(sum_sq: Tensors, grads: Tensors, decay: float) -> Tensors:
    return [decay * r + (1 - decay) * g * g for r, g in _zip(sum_sq, grads)]


def _rmsprop_momentum_init(params: Tensors) -> RMSPropMomentumState:
    return RMSPropMomentumState(_zeros(params), _zeros(params))


def _rmsprop_momentum_update(
    lr: float, rho: float, delta: float, m: float
) -> Callable[[Tensors, RMSPropMomentumState, Tensors], tuple[Tensors, RMSPropMomentumState]]:
    def update(grads: Tensors, state: RMSPropMomentumState, params: Tensors) -> tuple[Tensors, RMSPropMomentumState]:
        r = _decayed_sum_sq(state.sum_sq, grads, rho)
        v = [m * v - lr / (delta + r.sqrt()) * g for v, r, g in zip(state.velocity, r, grads, strict=True)]
        return [p + v for p, v in _zip(params, v)], RMSPropMomentumState(r, v)

    return update


def _adam_init(params: Tensors) -> AdamState:
    return AdamState(0, _zeros(params), _zeros(params))


# --------------------------------------------------------------------------
# One gradient stream for every optimizer
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class GradientStream:
    """Mini-batch least-squares gradients of a linear model y = x W^T + b, fixed in advance.

    Every optimizer sees the same sequence of mini-batch losses, so two
    optimizers that compute the same maths must walk the same path.
    """

    x: torch.Tensor  # (samples, features)
    y: torch.Tensor  # (samples, outputs)
    batches: torch.Tensor  # (steps, batch_size) row indices of each step's mini-batch
    start: tuple[torch.Tensor, ...]  # W (outputs, features), b (outputs)

    def grads(self, params: Sequence[torch.Tensor], step: int) -> Tensors:
        """Gradient of 0.5 * mean over the batch of ||x W^T + b - y||^2 at `params`."""
        w, b = (p.detach() for p in params)
        rows = self.batches[step]
        xb, yb = self.x[rows], self.y[rows]
        residual = xb @ w.T + b - yb
        return [residual.T @ xb / len(rows), residual.mean(dim=0)]


def regression_stream(
    samples: int, features: int, outputs: int, batch_size: int, steps: int, min_feature_scale: float, seed: int
) -> GradientStream:
    """A seeded, ill-conditioned regression: feature j is scaled by a factor from 1 down to
    `min_feature_scale` (log-spaced), so some coordinates get gradients far below 1 and an
    optimizer's small constant (delta, eps) shows wherever it sits. Unit-variance target noise
    keeps the mini-batch gradient from vanishing."""
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    scales = torch.logspace(0, torch.log10(torch.tensor(min_feature_scale)).item(), features, dtype=f64)
    x = torch.randn(samples, features, generator=gen, dtype=f64) * scales
    w_true = torch.randn(outputs, features, generator=gen, dtype=f64)
    y = x @ w_true.T + torch.randn(samples, outputs, generator=gen, dtype=f64)
    batches = torch.stack([torch.randperm(samples, generator=gen)[:batch_size] for _ in range(steps)])
    start = (torch.randn(outputs, features, generator=gen, dtype=f64), torch.randn(outputs, generator=gen, dtype=f64))
    return GradientStream(x, y, batches, start)


def max_deviation(
    rule: Callable[..., Rule],
    hyper: Mapping[str, float],
    torch_cfg: OptimizerSpec,
    stream: GradientStream,
    lrs: Sequence[float],
    at_lookahead: bool = False,
) -> float:
    """Largest |rule - torch.optim| over every parameter after each of len(lrs) steps.

    Step i uses learning rate lrs[i] in both (torch's through its param
    group, as a scheduler sets it). With `at_lookahead` the rule is read at
    its lookahead point (theta + m v), which is what torch's Nesterov stores.
    """
    params = [p.clone() for p in stream.start]
    leaves = [p.clone().requires_grad_(True) for p in stream.start]
    opt = torch_cfg.build(leaves)
    state = rule(lr=lrs[0], **hyper).init(params)
    worst = 0.0
    for step, lr in enumerate(lrs):
        step_rule = rule(lr=lr, **hyper)
        params, state = step_rule.update(stream.grads(step_rule.lookahead(state, params), step), state, params)
        for group in opt.param_groups:
            group["lr"] = lr
        for leaf, g in _zip(leaves, stream.grads(leaves, step)):
            leaf.grad = g
        opt.step()
        seen = step_rule.lookahead(state, params) if at_lookahead else params
        worst = max(worst, *(float((a - b.detach()).abs().max()) for a, b in _zip(seen, leaves)))
    return worst


# --------------------------------------------------------------------------
# The book's text beside torch.optim: each comparison and what it found
# --------------------------------------------------------------------------
def _rmsprop_hyper(cfg: OptimizerSpec) -> dict[str, float]:
    return {"rho": cfg.kwargs["alpha"], "delta": cfg.default("eps")}


def _adam_hyper(cfg: OptimizerSpec) -> dict[str, float]:
    beta1, beta2 = cfg.default("betas")
    return {"beta1": beta1, "beta2": beta2}


@dataclass(frozen=True)
class Comparison:
    """One run of a rule beside torch.optim. `hyper` gives the rule's hyperparameters from
    the torch config (and the chapter's delta); `torch_kwargs` changes torch's call."""

    rule: str
    case: str
    optimizer: str  # conf/optimizers/<name>.yaml: the book's torch.optim call
    book_form: str
    torch_form: str
    same_maths: bool  # what the algebra says; the measurement must bear it out
    hyper: Callable[[OptimizerSpec, float], dict[str, float]]
    factory: Callable[..., Rule] | None = None  # default: REGISTRY[rule]
    torch_kwargs: Callable[[OptimizerSpec, float], dict[str, Any]] = lambda cfg, delta: {}
    lr_drop: bool = False  # the learning rate is multiplied by a factor half way
    at_lookahead: bool = False
    primary: bool = False  # the registry test's pairing for this rule


COMPARISONS: list[Comparison] = [
    Comparison("sgd", "as written", "sgd", "theta -= eps g", "p -= lr g", True,
               lambda cfg, d: {}, primary=True),
    Comparison("momentum", "as written", "sgd_momentum", "v = m v - eps g; theta += v",
               "buf = m buf + g; p -= lr buf (v = -lr buf)", True,
               lambda cfg, d: {"m": cfg.kwargs["momentum"]}, primary=True),
    # torch's SGD docs note this: its buffer holds no learning rate, so a new
    # rate rescales the whole velocity at once; the book's v keeps the old one.
    Comparison("momentum", "lr changed half way", "sgd_momentum", "v keeps steps taken at the old eps",
               "buf is lr-free: the new lr rescales all of it", False,
               lambda cfg, d: {"m": cfg.kwargs["momentum"]}, lr_drop=True),
    Comparison("nesterov", "torch p vs theta + m v", "sgd_nesterov",
               "g at theta + m v; v = m v - eps g; theta += v (Sutskever 2013)",
               "buf = m buf + g(p); p -= lr (g + m buf): p is the look-ahead point theta + m v", True,
               lambda cfg, d: {"m": cfg.kwargs["momentum"]}, at_lookahead=True, primary=True),
    Comparison("nesterov", "torch p vs theta", "sgd_nesterov", "parameters theta",
               "parameters p = theta + m v (Bengio et al. 2013 form)", False,
               lambda cfg, d: {"m": cfg.kwargs["momentum"]}),
    Comparison("adagrad", "delta placement, delta = torch eps", "adagrad",
               "theta -= eps g / (delta + sqrt(r)), r_0 = 0",
               "p -= lr g / (sqrt(state_sum) + eps), state_sum_0 = initial_accumulator_value", True,
               lambda cfg, d: {"delta": cfg.default("eps")}, primary=True),
    Comparison("adagrad", "book's delta as initial_accumulator_value", "adagrad",
               "delta + sqrt(r), r_0 = 0 (the text: delta is merged into initial_accumulator_value)",
               "sqrt(initial_accumulator_value + r) + eps with initial_accumulator_value = delta, eps = 0", False,
               lambda cfg, d: {"delta": d}, torch_kwargs=lambda cfg, d: {"initial_accumulator_value": d, "eps": 0.0}),
    Comparison("adagrad", "book's delta vs the book's call", "adagrad", "delta ~ 1e-7 (the text)",
               "the book's Adagrad(...) call sets no eps: torch's default", False,
               lambda cfg, d: {"delta": d}),
    Comparison("rmsprop", "as written", "rmsprop", "r = rho r + (1 - rho) g*g; theta -= eps g / (delta + sqrt(r))",
               "square_avg likewise (alpha = rho); p -= lr g / (sqrt(square_avg) + eps)", True,
               lambda cfg, d: _rmsprop_hyper(cfg), primary=True),
    Comparison("rmsprop_momentum", "classical momentum", "rmsprop_momentum",
               "v = m v - eps g / (delta + sqrt(r)); theta += v",
               "buf = m buf + g / (sqrt(square_avg) + eps); p -= lr buf", True,
               lambda cfg, d: {**_rmsprop_hyper(cfg), "m": cfg.kwargs["momentum"]}, primary=True),
    Comparison("rmsprop_nesterov", "the text: RMSProp's momentum is Nesterov's", "rmsprop_momentum",
               "g at theta + m v (Goodfellow et al. 2016, Alg. 8.6)",
               "RMSprop(momentum=m) is classical momentum, g at p", False,
               lambda cfg, d: {**_rmsprop_hyper(cfg), "m": cfg.kwargs["momentum"]}, primary=True),
    Comparison("adam", "eps on the bias-corrected root", "adam", "theta -= eps m~ / (delta + sqrt(v~))",
               "p -= (lr / (1 - b1^i)) m / (sqrt(v) / sqrt(1 - b2^i) + eps): the same", True,
               lambda cfg, d: {**_adam_hyper(cfg), "delta": cfg.default("eps")}, primary=True),
    Comparison("adam", "eps on the uncorrected root (Kingma & Ba Sec. 2, TF1)", "adam",
               "eps_hat added to sqrt(v), step eps sqrt(1 - b2^i) / (1 - b1^i)",
               "eps added to sqrt(v~): eps_hat = eps sqrt(1 - b2^i) in torch's terms", False,
               lambda cfg, d: {**_adam_hyper(cfg), "eps_hat": cfg.default("eps")}, factory=adam_eps_hat),
]


@dataclass(frozen=True)
class Finding:
    rule: str
    case: str
    book_form: str
    torch_form: str
    max_abs_diff: float  # largest |book rule - torch| over every parameter and step
    agrees: bool  # max_abs_diff <= tol
    same_maths: bool  # what the algebra predicts


def run_comparison(
    comp: Comparison, configs: Mapping[str, OptimizerSpec], stream: GradientStream, steps: int,
    book_delta: float, lr_drop_factor: float,
) -> float:
    """`max_deviation` for one comparison, built from the book's torch call `configs[comp.optimizer]`."""
    cfg = configs[comp.optimizer]
    torch_cfg = cfg.with_kwargs(**comp.torch_kwargs(cfg, book_delta))
    lrs = [cfg.lr] * steps
    if comp.lr_drop:
        lrs[steps // 2:] = [cfg.lr * lr_drop_factor] * (steps - steps // 2)
    factory = comp.factory or REGISTRY[comp.rule]
    return max_deviation(factory, comp.hyper(cfg, book_delta), torch_cfg, stream, lrs, comp.at_lookahead)


def findings(
    configs: Mapping[str, OptimizerSpec], stream: GradientStream, steps: int, book_delta: float,
    lr_drop_factor: float, tol: float,
) -> list[Finding]:
    """Every comparison, measured: the book's forms beside torch.optim's, with the largest difference."""
    out = []
    for comp in COMPARISONS:
        diff = run_comparison(comp, configs, stream, steps, book_delta, lr_drop_factor)
        out.append(Finding(comp.rule, comp.case, comp.book_form, comp.torch_form, diff, diff <= tol, comp.same_maths))
    return out


# --------------------------------------------------------------------------
# Adam's moment bias
# --------------------------------------------------------------------------
def moment_bias(beta: float, power: int, steps: int, repeats: int, seed: int,
                mean: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """E[a_i] / E[g^power] for i = 1..steps, measured, and the chapter's 1 - beta^i.

    a_0 = 0 and a_i = beta a_{i-1} + (1 - beta) g_i^power: Adam's first moment
    m_i (power 1, beta1) or second moment v_i (power 2, beta2), on `repeats`
    independent streams of i.i.d. normal gradients of the given mean and unit
    variance (the chapter's derivation assumes stationary moments). Both
    expectations are means over the streams, E[g^power] pooled over every step.
    The first moment needs a mean away from 0 for its ratio to be defined.
    """
    gen = torch.Generator().manual_seed(seed)
    g = (torch.randn(steps, repeats, generator=gen, dtype=torch.float64) + mean) ** power
    a = torch.zeros(repeats, dtype=torch.float64)
    mean_a = []
    for g_i in g:
        a = beta * a + (1 - beta) * g_i
        mean_a.append(a.mean())
    ratio = torch.stack(mean_a) / g.mean()
    theory = 1 - beta ** torch.arange(1, steps + 1, dtype=torch.float64)
    return ratio, theory
