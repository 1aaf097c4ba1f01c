"""Heavy-ball and Nesterov momentum, full batch, on ill-conditioned quadratics.

On f(x) = 1/2 sum_i lam_i x_i^2 each coordinate evolves on its own, so both
methods are linear recurrences with closed-form rates:
- heavy ball (the chapter's momentum, torch's SGD(momentum=m)):
  x_{k+1} = x_k - lr * lam * x_k + m * (x_k - x_{k-1}),
  characteristic polynomial z^2 - (1 + m - lr*lam) z + m;
- Nesterov (the gradient taken at the look-ahead point x_k + m (x_k - x_{k-1})):
  x_{k+1} = y_k - lr * lam * y_k, y_k = x_k + m (x_k - x_{k-1}),
  characteristic polynomial z^2 - (1 + m)(1 - lr*lam) z + m (1 - lr*lam).
The asymptotic rate of a method on a spectrum is the largest root modulus over
its eigenvalues. The textbook tunings (Polyak 1964; Nesterov 1983; Lessard,
Recht & Packard 2016, section 2) give, with kappa = L / mu:
- gradient descent at lr = 2 / (L + mu): (kappa - 1) / (kappa + 1);
- heavy ball at lr = 4 / (sqrt L + sqrt mu)^2, m = ((sqrt kappa - 1) / (sqrt kappa + 1))^2:
  (sqrt kappa - 1) / (sqrt kappa + 1);
- Nesterov at lr = 1 / L, m = (sqrt kappa - 1) / (sqrt kappa + 1): 1 - 1 / sqrt kappa.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np

Method = Literal["gd", "heavy_ball", "nesterov"]
METHODS: tuple[Method, ...] = ("gd", "heavy_ball", "nesterov")


class Setting(NamedTuple):
    lr: float
    momentum: float


def spectrum(dim: int, kappa: float, top: float = 1.0) -> np.ndarray:
    """`dim` eigenvalues log-spaced from top / kappa to top (both ends included)."""
    if dim < 2 or kappa < 1:
        raise ValueError(f"need dim >= 2 and kappa >= 1, got dim={dim}, kappa={kappa}")
    return top * np.logspace(-math.log10(kappa), 0.0, dim)


def tuned(method: Method, mu: float, big_l: float) -> Setting:
    """The textbook tuning of `method` for curvatures in [mu, L] (module docstring)."""
    root = math.sqrt(big_l / mu)
    if method == "gd":
        return Setting(2.0 / (big_l + mu), 0.0)
    if method == "heavy_ball":
        return Setting(4.0 / (math.sqrt(big_l) + math.sqrt(mu)) ** 2, ((root - 1) / (root + 1)) ** 2)
    if method == "nesterov":
        return Setting(1.0 / big_l, (root - 1) / (root + 1))
    raise ValueError(f"unknown method {method!r}; have {', '.join(METHODS)}")


def theory_rate(method: Method, kappa: float) -> float:
    """The closed-form rate of `method` at its textbook tuning (module docstring)."""
    root = math.sqrt(kappa)
    return {"gd": (kappa - 1) / (kappa + 1), "heavy_ball": (root - 1) / (root + 1),
            "nesterov": 1 - 1 / root}[method]


def _coefficients(method: Method, lam: np.ndarray, s: Setting) -> tuple[np.ndarray, np.ndarray]:
    """(b, c) of z^2 - b z + c, one pair per eigenvalue."""
    if method == "nesterov":
        shrink = 1 - s.lr * lam
        return (1 + s.momentum) * shrink, s.momentum * shrink
    # Gradient descent is heavy ball with m = 0.
    m = 0.0 if method == "gd" else s.momentum
    return 1 + m - s.lr * lam, np.full_like(lam, m)


def rate(method: Method, lam: np.ndarray, s: Setting) -> float:
    """Largest root modulus of the method's recurrence over the eigenvalues `lam`."""
    b, c = _coefficients(method, np.asarray(lam, dtype=np.float64), s)
    disc = np.sqrt((b * b - 4 * c).astype(np.complex128))
    return float(np.max(np.maximum(np.abs((b + disc) / 2), np.abs((b - disc) / 2))))


def iterates(method: Method, lam: np.ndarray, s: Setting, x0: np.ndarray) -> Iterator[np.ndarray]:
    """x_1, x_2, ... of the method from x0 (with x_{-1} = x0, i.e. no initial velocity)."""
    lam = np.asarray(lam, dtype=np.float64)
    x_prev = x = np.asarray(x0, dtype=np.float64).copy()
    m = 0.0 if method == "gd" else s.momentum
    while True:
        if method == "nesterov":
            y = x + m * (x - x_prev)
            x_prev, x = x, y - s.lr * lam * y
        else:
            x_prev, x = x, x - s.lr * lam * x + m * (x - x_prev)
        yield x


def steps_to_tolerance(method: Method, lam: np.ndarray, s: Setting, x0: np.ndarray, tolerance: float,
                       max_steps: int) -> tuple[int | None, np.ndarray]:
    """Run the method from x0 until ||x_k|| <= tolerance * ||x0||.

    Returns (the first such k, or None within max_steps or once it overflows; the relative distance
    after each step)."""
    start = float(np.linalg.norm(x0))
    history = []
    for k, x in zip(range(max_steps), iterates(method, lam, s, x0)):
        history.append(float(np.linalg.norm(x)) / start)
        if not math.isfinite(history[-1]):
            break
        if history[-1] <= tolerance:
            return k + 1, np.array(history)
    return None, np.array(history)


def best_momentum(method: Method, lam: np.ndarray, lr: float, momenta: np.ndarray) -> tuple[float, float]:
    """(the momentum of the lowest rate among `momenta` at learning rate `lr`, that rate)."""
    rates = np.array([rate(method, lam, Setting(lr, float(m))) for m in momenta])
    best = int(np.argmin(rates))
    return float(momenta[best]), float(rates[best])


def predicted_steps(rate_: float, tolerance: float) -> float:
    """ln(tolerance) / ln(rate): the steps a pure geometric decay at `rate_` needs."""
    return math.log(tolerance) / math.log(rate_) if 0 < rate_ < 1 else math.inf
