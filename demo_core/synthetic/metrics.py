"""Benchmark metrics: pure functions on tensors (no model, no files, no random state).

* :func:`psnr` — peak signal-to-noise ratio in dB.
* :func:`pearson_correlation`, :func:`cross_correlation_lag` — lip sync: how well and how late.
* :class:`LinearProbe` / :func:`fit_linear_probe` — closed-form ridge regression from motion coefficients
  to ground-truth factors (inputs and outputs standardised), and :func:`r2_score` for its quality.
* :func:`block_purity`, :func:`dci_scores` — DCI-style disentanglement from an importance matrix
  (rows: coefficients, columns: ground-truth parameters), e.g. :attr:`LinearProbe.importance`.
* :func:`leakage_ratio` — how much an edit of one factor moves another, relative to its own effect.
* :func:`motion_smoothness` — mean squared second difference over time (jitter).
* :func:`angle_error` — absolute angle difference in degrees, wrapped to [0, 180].

Example:
    .. code-block:: python

        probe = fit_linear_probe(lam_train, params_train)          # (N, M) -> (N, P)
        r2 = r2_score(probe.predict(lam_test), params_test)        # (P,)
        purity = block_purity(probe.importance, {"pose": slice(6, 12)}, {"pose": [0, 1, 2]})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import DemoInputError

__all__ = [
    "psnr",
    "pearson_correlation",
    "cross_correlation_lag",
    "LinearProbe",
    "fit_linear_probe",
    "r2_score",
    "block_purity",
    "dci_scores",
    "leakage_ratio",
    "motion_smoothness",
    "angle_error",
]

_EPS = 1e-12


def _check_tensor(x, name: str, min_dim: int = 0) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < min_dim:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DemoInputError(f"{name}: expected a float tensor with at least {min_dim} dimensions, got {shape}")
    return x


def _check_pair(x, y, names: tuple[str, str], min_dim: int = 0) -> None:
    _check_tensor(x, names[0], min_dim)
    _check_tensor(y, names[1], min_dim)
    if x.shape != y.shape:
        raise DemoInputError(f"{names[0]} and {names[1]}: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")


def psnr(prediction: Tensor, target: Tensor, *, data_range: float = 1.0, batch_dims: int = 0) -> Tensor:
    """Peak signal-to-noise ratio ``10·log10(range² / MSE)`` in dB.

    Args:
        prediction: images, any shape.
        target: same shape as ``prediction``.
        data_range: peak-to-peak value range (1 for [0, 1] images, 2 for [-1, 1]).
        batch_dims: leading dimensions kept (one PSNR each); the MSE averages over the rest.

    Returns:
        PSNR of shape ``prediction.shape[:batch_dims]`` (``inf`` where the images are equal).
    """
    _check_pair(prediction, target, ("prediction", "target"), batch_dims)
    if not data_range > 0:
        raise DemoInputError(f"data_range: expected > 0, got {data_range!r}")
    err = (prediction.double() - target.double()) ** 2
    mse = err.flatten(batch_dims).mean(-1) if err.ndim > batch_dims else err  # prediction.shape[:batch_dims]
    return (10.0 * torch.log10(data_range**2 / mse)).to(prediction.dtype)


def pearson_correlation(x: Tensor, y: Tensor, *, dim: int = -1) -> Tensor:
    """Pearson correlation of ``x`` and ``y`` along ``dim`` (NaN where either is constant).

    Args:
        x, y: same shape; ``dim`` runs over samples (e.g. frames).
        dim: the sample dimension.

    Returns:
        Correlations with ``dim`` removed, in [-1, 1].
    """
    _check_pair(x, y, ("x", "y"), 1)
    xc = x.double() - x.double().mean(dim, keepdim=True)
    yc = y.double() - y.double().mean(dim, keepdim=True)
    den = torch.sqrt((xc * xc).sum(dim) * (yc * yc).sum(dim))
    r = (xc * yc).sum(dim) / den
    r = torch.where(den > _EPS, r, torch.full_like(r, math.nan))
    return r.clamp(-1.0, 1.0).to(x.dtype)


def cross_correlation_lag(x: Tensor, y: Tensor, max_lag: int) -> tuple[int, float]:
    """The lag at which ``y`` best matches ``x``: ``argmax_L corr(x[t], y[t + L])`` for ``|L| <= max_lag``.

    A positive lag means ``y`` is late (its events come ``L`` frames after those of ``x``).  Each lag is
    scored by the Pearson correlation of the overlapping parts, so shrinking overlaps are not penalised.

    Args:
        x: (T,) reference signal (e.g. ground-truth mouth opening).
        y: (T,) signal to align (e.g. generated mouth opening).
        max_lag: largest shift tried, in samples (>= 0, < T − 1).

    Returns:
        ``(lag, correlation at that lag)``; ``(0, nan)`` when no lag gives a finite correlation.
    """
    _check_pair(x, y, ("x", "y"), 1)
    if x.ndim != 1:
        raise DemoInputError(f"x, y: expected 1-D signals (T,), got {tuple(x.shape)}")
    T = x.shape[0]
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or not 0 <= max_lag < T - 1:
        raise DemoInputError(f"max_lag: expected an integer in [0, {T - 2}] for {T} samples, got {max_lag!r}")
    best_lag, best_r = 0, -math.inf
    for lag in range(-max_lag, max_lag + 1):
        a, b = (x[: T - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: T + lag])
        r = float(pearson_correlation(a, b))
        if math.isfinite(r) and (r > best_r or (r == best_r and abs(lag) < abs(best_lag))):
            best_lag, best_r = lag, r
    return (best_lag, best_r) if math.isfinite(best_r) else (0, math.nan)


@dataclass(frozen=True, eq=False)
class LinearProbe:
    """A ridge regression ``y ≈ x @ weight + bias`` fitted on standardised inputs and outputs.

    Attributes:
        x_mean, x_std: (D,) input standardisation.
        y_mean, y_std: (P,) output standardisation.
        weight_std: (D, P) weights between standardised inputs and outputs.
    """

    x_mean: Tensor
    x_std: Tensor
    y_mean: Tensor
    y_std: Tensor
    weight_std: Tensor

    def predict(self, x: Tensor) -> Tensor:
        """(..., D) → (..., P) in the units of the fitted outputs."""
        _check_tensor(x, "x", 1)
        if x.shape[-1] != self.x_mean.shape[0]:
            raise DemoInputError(f"x: expected (..., {self.x_mean.shape[0]}), got {tuple(x.shape)}")
        z = (x.double() - self.x_mean) / self.x_std  # (..., D)
        return (self.y_mean + (z @ self.weight_std) * self.y_std).to(x.dtype)  # (..., P)

    def standardize(self, y: Tensor) -> Tensor:
        """Outputs (..., P) in units of the fitted outputs' standard deviation: ``(y − mean) / std``."""
        return ((y.double() - self.y_mean) / self.y_std).to(y.dtype)

    @property
    def weight(self) -> Tensor:
        """(D, P) weights in the original units: ``y = x @ weight + bias``."""
        return self.weight_std * self.y_std / self.x_std[:, None]

    @property
    def bias(self) -> Tensor:
        """(P,) offset in the original units."""
        return self.y_mean - self.x_mean @ self.weight

    @property
    def importance(self) -> Tensor:
        """(D, P) ``|weight_std|``: how much each standardised input drives each standardised output."""
        return self.weight_std.abs()


def fit_linear_probe(x: Tensor, y: Tensor, *, ridge: float = 1e-3, standardize_inputs: bool = True) -> LinearProbe:
    """Closed-form ridge regression ``W = (ZᵀZ + λI)⁻¹ ZᵀY`` in float64, with standardised targets ``Y``.

    With ``standardize_inputs`` the columns of ``Z`` are the standardised inputs and ``λ = ridge·N``; without,
    ``Z`` is the centred raw input and ``λ = ridge·N·mean column variance``, so inputs whose variance is
    far below the others' (e.g. collapsed coefficients at numerical-noise level) get little weight instead of
    being blown up to unit variance.  Either way the result is stored in standardised units.

    Args:
        x: (N, D) inputs, e.g. motion coefficients of N frames.
        y: (N, P) targets, e.g. ground-truth parameters of the same frames.
        ridge: penalty relative to N (>= 0); constant columns get unit std and weight 0.
        standardize_inputs: standardise each input column before the fit (see above).

    Returns:
        The fitted :class:`LinearProbe` (float64 tensors on ``x``'s device).
    """
    _check_tensor(x, "x", 2)
    _check_tensor(y, "y", 2)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise DemoInputError(f"x, y: expected (N, D) and (N, P) with the same N >= 2, got {tuple(x.shape)}, "
                             f"{tuple(y.shape)}")
    if not ridge >= 0:
        raise DemoInputError(f"ridge: expected >= 0, got {ridge!r}")
    x, y = x.double(), y.double().to(x.device)
    n = x.shape[0]

    def moments(v: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = v.mean(0), v.std(0, unbiased=False)
        return mean, torch.where(std > 1e-8, std, torch.ones_like(std))

    x_mean, x_std = moments(x)
    y_mean, y_std = moments(y)
    t = (y - y_mean) / y_std  # (N, P)
    z = (x - x_mean) / x_std if standardize_inputs else x - x_mean  # (N, D)
    penalty = ridge * n * (1.0 if standardize_inputs else float(z.var(0, unbiased=False).mean()))
    gram = z.T @ z + penalty * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)  # (D, D)
    weight = torch.linalg.lstsq(gram, z.T @ t).solution  # (D, P)
    if not standardize_inputs:
        weight = weight * x_std[:, None]  # raw-input weights → standardised-input weights
    return LinearProbe(x_mean, x_std, y_mean, y_std, weight)


def r2_score(prediction: Tensor, target: Tensor) -> Tensor:
    """Coefficient of determination per column: ``1 − SS_res / SS_tot`` over rows (N, P) → (P,).

    A constant target column gives NaN (no variance to explain).
    """
    _check_pair(prediction, target, ("prediction", "target"), 2)
    p, t = prediction.double().flatten(0, -2), target.double().flatten(0, -2)  # (N, P)
    ss_res = ((t - p) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    r2 = 1.0 - ss_res / ss_tot.clamp_min(_EPS)
    return torch.where(ss_tot > _EPS, r2, torch.full_like(r2, math.nan)).to(prediction.dtype)


def _rows(index, size: int, name: str) -> list[int]:
    rows = list(range(size))[index] if isinstance(index, slice) else [int(i) for i in index]
    if not rows or any(not 0 <= i < size for i in rows):
        raise DemoInputError(f"{name}: expected non-empty indices in [0, {size}), got {index!r}")
    return rows


def block_purity(importance: Tensor, blocks: Mapping[str, slice | Sequence[int]],
                 targets: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Share of each coefficient block's importance that goes to its own factor's parameters.

    Args:
        importance: (D, P) non-negative importance of input ``i`` for output ``j``.
        blocks: block name → its rows of ``importance`` (a slice or indices).
        targets: factor name → its columns of ``importance``; only blocks named here are scored.

    Returns:
        Block name → ``Σ_{i∈block, j∈own} R_ij / Σ_{i∈block, all j} R_ij`` in [0, 1]: 1 when the block
        only predicts its own factor (block-diagonal importance), lower when it also predicts others.
    """
    _check_tensor(importance, "importance", 2)
    if importance.ndim != 2 or bool((importance < 0).any()):
        raise DemoInputError(f"importance: expected a non-negative (D, P) tensor, got {tuple(importance.shape)}")
    D, P = importance.shape
    out = {}
    for name, cols in targets.items():
        if name not in blocks:
            continue
        rows = importance[_rows(blocks[name], D, f"blocks[{name!r}]")].double()  # (k, P)
        own = rows[:, _rows(cols, P, f"targets[{name!r}]")].sum()
        total = rows.sum()
        out[name] = float(own / total) if total > _EPS else math.nan
    return out


def _normalized_entropy(p: Tensor, dim: int) -> Tensor:
    """Entropy of distributions along ``dim`` divided by log(n) (0: one-hot, 1: uniform)."""
    n = p.shape[dim]
    if n < 2:
        return torch.zeros_like(p.sum(dim))
    return -(p * torch.log(p.clamp_min(_EPS))).sum(dim) / math.log(n)


def dci_scores(importance: Tensor, factors: Mapping[str, Sequence[int]]) -> dict[str, float | dict[str, float]]:
    """DCI disentanglement and completeness (Eastwood & Williams, 2018) from an importance matrix.

    Parameter columns are first summed into factors: ``R_if = Σ_{j∈f} importance_ij``.

    Args:
        importance: (D, P) non-negative importance of code ``i`` for parameter ``j``.
        factors: factor name → its parameter columns.

    Returns:
        ``disentanglement``: ``Σ_i ρ_i (1 − H_F(R_i·/Σ R_i·))`` with ``ρ_i`` code ``i``'s share of all
        importance (1: every code predicts a single factor); ``completeness``: mean over factors of
        ``1 − H_D(R_·f/Σ R_·f)`` (1: every factor is predicted by a single code); ``code_disentanglement``
        (D,) as a list; ``factor_completeness`` factor name → score.
    """
    _check_tensor(importance, "importance", 2)
    if importance.ndim != 2 or bool((importance < 0).any()):
        raise DemoInputError(f"importance: expected a non-negative (D, P) tensor, got {tuple(importance.shape)}")
    D, P = importance.shape
    names = list(factors)
    R = torch.stack([importance[:, _rows(factors[f], P, f"factors[{f!r}]")].double().sum(1) for f in names], 1)
    code_total = R.sum(1)  # (D,)
    p_code = R / code_total.clamp_min(_EPS)[:, None]  # (D, F)
    d_code = 1.0 - _normalized_entropy(p_code, 1)  # (D,)
    rho = code_total / code_total.sum().clamp_min(_EPS)
    p_factor = R / R.sum(0).clamp_min(_EPS)  # (D, F)
    c_factor = 1.0 - _normalized_entropy(p_factor, 0)  # (F,)
    return {
        "disentanglement": float((rho * d_code).sum()),
        "completeness": float(c_factor.mean()),
        "code_disentanglement": [float(v) for v in d_code],
        "factor_completeness": {f: float(c) for f, c in zip(names, c_factor)},
    }


def leakage_ratio(other_effect: Tensor | float, own_effect: Tensor | float) -> Tensor:
    """Movement of another factor as a fraction of the edited factor's own movement: ``other / own``.

    Both effects are magnitudes in comparable units (e.g. RMS change in standard deviations); an own
    effect of zero gives ``inf`` (or NaN when the other effect is zero too).
    """
    other = torch.as_tensor(other_effect, dtype=torch.float64)
    own = torch.as_tensor(own_effect, dtype=torch.float64)
    if bool((other < 0).any()) or bool((own < 0).any()):
        raise DemoInputError("leakage_ratio: effects must be non-negative magnitudes")
    return other / own


def motion_smoothness(trajectory: Tensor, *, dim: int = -2) -> Tensor:
    """Mean squared second difference ``mean_t (x[t+1] − 2x[t] + x[t−1])²`` along time ``dim``.

    Args:
        trajectory: (..., T, D) per-frame values (T >= 3); the default time dimension is -2.
        dim: the time dimension.

    Returns:
        The trajectory's shape without ``dim`` (e.g. (..., D): one jitter figure per channel); 0 for
        any straight-line motion.
    """
    _check_tensor(trajectory, "trajectory", 1)
    if trajectory.shape[dim] < 3:
        raise DemoInputError(f"trajectory: expected at least 3 frames along dim {dim}, got {tuple(trajectory.shape)}")
    x = trajectory.double()
    d2 = x.diff(n=2, dim=dim)
    return (d2 * d2).mean(dim).to(trajectory.dtype)


def angle_error(prediction: Tensor | float, target: Tensor | float) -> Tensor:
    """Absolute difference of angles in degrees, wrapped to [0, 180] (359° vs 1° is 2°)."""
    p = torch.as_tensor(prediction, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    return torch.remainder(p - t + 180.0, 360.0).sub(180.0).abs()
