"""Windowed motion sampling with FLOAT's flow-matching transformer (ARCHITECTURE.md §9.5).

A clip of ``T`` frames is generated in windows of ``L = fmt.cfg.num_frames`` frames.  Window ``k`` integrates
noise ``x0`` (B, L, W) from t = 0 to t = 1 with classifier-free guidance; its prefix is the last ``P`` frames
of window ``k − 1``'s sample and audio (zeros for the first window).  Audio of a short last window is
right-padded by repeating its last frame.  The condition embedding of a window is computed once and reused
by every solver step (it does not depend on t).  For a :class:`FlowTransformer` on the CPU the guided velocity
is evaluated by :class:`~demo_core.flow.guided_transformer.GuidedFlowTransformer`, which shares the work of the
three guidance groups and skips the prefix rows the generated frames do not depend on; on GPUs the three groups
run as one batch (fewer kernel launches; ``SamplerSettings.evaluator``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, Union

import torch
from torch import Tensor

from ..errors import DemoInputError
from .guidance import ClassifierFreeGuidance, PrefixDroppingVelocity
from .guided_transformer import GuidedFlowTransformer, supports_guided_transformer
from .solvers import SOLVER_METHODS, ODESolver, time_grid

__all__ = ["SamplerSettings", "iter_motion_windows", "sample_motion", "span_noise", "noise_shaper"]

NoiseSource = Union[None, Callable[[int], Tensor], Sequence[Tensor], Tensor]
WindowStepHook = Callable[[Tensor, Tensor, int], Tensor]


@dataclass
class SamplerSettings:
    """Per-run sampling options.

    Attributes:
        steps: solver steps per window (FLOAT: ``nfe − 1`` = 9).
        method: ``"euler"`` (FLOAT), ``"midpoint"`` or ``"rk4"``.
        a_cfg: audio guidance scale.
        e_cfg: emotion guidance scale.
        r_cfg: reference guidance scale (only switches guidance on, as in FLOAT).
        evaluator: how the guided velocity is computed (same maths, results equal to float rounding):
            ``"shared"`` (:class:`GuidedFlowTransformer`: the work common to the guidance groups done once,
            fewest FLOPs), ``"batched"`` (:class:`ClassifierFreeGuidance`: the groups as one batch, fewest kernel
            launches) or ``"auto"``: shared on the CPU, where FLOPs cost; batched on GPUs, where this small
            transformer is bound by kernel launches (bench/run.py's gpu section measures both).
    """

    steps: int = 10
    method: str = "euler"
    a_cfg: float = 2.0
    e_cfg: float = 1.0
    r_cfg: float = 1.0
    evaluator: str = "auto"


def _check_settings(settings: SamplerSettings) -> None:
    if not isinstance(settings, SamplerSettings):
        raise DemoInputError(f"settings must be a SamplerSettings; got {type(settings).__name__}")
    steps = settings.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DemoInputError(f"settings.steps must be an integer >= 1; got {steps!r}")
    if settings.method not in SOLVER_METHODS:
        raise DemoInputError(f"settings.method must be one of {SOLVER_METHODS}; got {settings.method!r}")
    for name in ("a_cfg", "e_cfg", "r_cfg"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DemoInputError(f"settings.{name} must be a finite number; got {value!r}")
    if settings.evaluator not in EVALUATORS:
        raise DemoInputError(f"settings.evaluator must be one of {EVALUATORS}; got {settings.evaluator!r}")


EVALUATORS = ("auto", "shared", "batched")


def _shared_evaluator(fmt, settings: SamplerSettings, device: torch.device) -> bool:
    """Whether the guided velocity runs through :class:`GuidedFlowTransformer` (see ``SamplerSettings.evaluator``)."""
    if not supports_guided_transformer(fmt) or settings.evaluator == "batched":
        return False
    return settings.evaluator == "shared" or device.type == "cpu"


def _check_inputs(fmt, wr: Tensor, wa: Tensor, we: Tensor) -> Tensor:
    """Validate shapes/devices; returns ``we`` as ``(B, 1, E)``."""
    cfg = getattr(fmt, "cfg", None)
    if cfg is None or not hasattr(fmt, "embed_condition"):
        raise DemoInputError(f"fmt must be a FlowTransformer; got {type(fmt).__name__}")
    if cfg.num_prev_frames > cfg.num_frames:
        raise DemoInputError(f"fmt: num_prev_frames ({cfg.num_prev_frames}) exceeds num_frames ({cfg.num_frames})")
    for name, x in (("wr", wr), ("wa", wa), ("we", we)):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise DemoInputError(f"{name} must be a floating-point tensor; got {getattr(x, 'dtype', type(x).__name__)}")
        if x.device != wa.device:
            raise DemoInputError(f"{name} is on {x.device} but wa is on {wa.device}; put all conditions on one device")
    if wa.ndim != 3 or wa.shape[1] < 1 or wa.shape[2] != cfg.dim_a:
        raise DemoInputError(f"wa must have shape (B, T >= 1, {cfg.dim_a}); got {tuple(wa.shape)}")
    B = wa.shape[0]
    if wr.shape != (B, cfg.dim_w):
        raise DemoInputError(f"wr must have shape ({B}, {cfg.dim_w}) (batch of wa); got {tuple(wr.shape)}")
    if we.ndim == 2:
        we = we[:, None, :]  # (B, 1, E)
    if we.ndim != 3 or we.shape[1] != 1 or we.shape[2] != cfg.dim_e or we.shape[0] not in (1, B):
        raise DemoInputError(f"we must have shape ({B}, 1, {cfg.dim_e}) or ({B}, {cfg.dim_e}); got {tuple(we.shape)}")
    return we.expand(B, 1, cfg.dim_e)


def span_noise(c0: Tensor, Q: Tensor, scale: Tensor | None = None) -> Tensor:
    """The noise law of models that flow inside the span of an orthonormal basis Q (W, M): standard-normal
    coordinates ``c0`` (..., M), times ``scale`` (M,) when given, mapped to latents ``(..., W)`` by ``Qᵀ``.
    Stage-2 training and the samplers both draw their noise through this function."""
    return (c0 if scale is None else c0 * scale) @ Q.T


def noise_shaper(fmt, device, dtype) -> Callable[[Tensor], Tensor] | None:
    """The model's noise law as a map from standard-normal ``x0`` (B, L, W) to its starting noise: projected
    onto the span of ``fmt.latent_basis`` (the law of ``N(0, I_M) @ Qᵀ``) and scaled by ``fmt.latent_scale``
    when set.  The basis is computed once here.  None for models without a basis (their noise is ``x0``)."""
    Q, scale = _noise_law(fmt, device, dtype)
    if Q is None:
        return None
    return lambda x0: span_noise(x0 @ Q, Q, scale)


def _noise_law(fmt, device, dtype) -> tuple[Tensor | None, Tensor | None]:
    """``(Q (W, M), scale (M,))`` of a model that draws its noise in a sub-space, else ``(None, None)``."""
    basis_fn = getattr(fmt, "latent_basis", None)
    if basis_fn is None:
        return None, None
    scale = getattr(fmt, "latent_scale", None)
    return (basis_fn().detach().to(device=device, dtype=dtype),
            None if scale is None else scale.to(device=device, dtype=dtype))


def _window_noise(noise: NoiseSource, k: int, shape: tuple, generator, device, dtype, Q=None, scale=None) -> Tensor:
    if noise is None:
        x0 = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return x0 if Q is None else span_noise(x0 @ Q, Q, scale)
    if callable(noise):
        x0 = noise(k)
    else:
        if k >= len(noise):
            raise DemoInputError(f"noise has {len(noise)} windows but window {k} was requested")
        x0 = noise[k]
    if not isinstance(x0, Tensor) or tuple(x0.shape) != tuple(shape):
        raise DemoInputError(f"noise for window {k} must have shape {tuple(shape)}; got {tuple(getattr(x0, 'shape', ()))}")
    return x0.to(device=device, dtype=dtype)


def _subspace_hook(Q: Tensor, hook):
    """Project the state back onto span(Q) after every step, then apply ``hook`` (if any)."""

    def project(x: Tensor, t: Tensor) -> Tensor:
        x = (x @ Q) @ Q.T
        return x if hook is None else hook(x, t)

    return project


def iter_motion_windows(
    fmt,
    *,
    wr: Tensor,
    wa: Tensor,
    we: Tensor,
    settings: SamplerSettings = SamplerSettings(),
    generator: torch.Generator | None = None,
    noise: NoiseSource = None,
    callback: Callable[[int, int], None] | None = None,
    record: dict | None = None,
    step_hook: WindowStepHook | None = None,
) -> Iterator[Tensor]:
    """Generate motion latents window by window (the streaming core of :func:`sample_motion`).

    Args:
        fmt: a :class:`~demo_core.models.flow_transformer.FlowTransformer`.
        wr: ``(B, W)`` reference motion.
        wa: ``(B, T, A)`` audio features of the whole clip.
        we: ``(B, 1, E)`` or ``(B, E)`` emotion vector (batch 1 is broadcast).
        settings: steps, method and guidance scales.
        generator: RNG for the per-window noise (``noise=None``).
        noise: None (draw ``randn((B, L, W))`` per window), a callable ``k -> Tensor``, or a sequence of
            ``(B, L, W)`` tensors indexed by window.  When ``fmt.latent_basis`` is set (DEMO models with
            ``flow_subspace``), drawn noise goes through :func:`noise_shaper` (explicit noise is used as given:
            shape it the same way) and the state is projected back onto the span after every solver step.
        callback: ``callback(done_steps, total_steps)`` over all windows × steps.
        record: optional dict filled per window ``k`` with ``chunk{k}.x0``, ``.prev_x``, ``.prev_wa``, ``.wa_t``,
            ``.trajectory`` (steps+1, B, L, W), ``.velocity`` (steps, B, L, W), ``.step_t`` (steps,),
            ``.sample`` (B, L, W), plus ``time_grid``.
        step_hook: ``step_hook(x, t_next, k) -> x`` applied after every solver step of window ``k``
            (frames ``k·L … k·L + L − 1``).

    Returns:
        An iterator of ``(B, L_k, W)`` samples; ``L_k = L`` except for a shorter last window.

    Raises:
        DemoInputError: on bad shapes, devices or settings (raised at call time, before iterating).
    """
    _check_settings(settings)
    we = _check_inputs(fmt, wr, wa, we)
    if noise is not None and not callable(noise) and not isinstance(noise, (Sequence, Tensor)):
        raise DemoInputError(f"noise must be None, a callable or a sequence of tensors; got {type(noise).__name__}")
    return _windows(fmt, wr, wa, we, settings, generator, noise, callback, record, step_hook)


def _windows(fmt, wr, wa, we, settings, generator, noise, callback, record, step_hook) -> Iterator[Tensor]:
    cfg = fmt.cfg
    B, T, A = wa.shape
    L, P, W = cfg.num_frames, cfg.num_prev_frames, cfg.dim_w
    grid = time_grid(settings.steps, device=wa.device)  # (steps + 1,)
    if _shared_evaluator(fmt, settings, wa.device):
        guided = GuidedFlowTransformer(fmt, settings.a_cfg, settings.e_cfg, settings.r_cfg)
        solver = ODESolver(guided)
    else:
        guided = ClassifierFreeGuidance(fmt, settings.a_cfg, settings.e_cfg, settings.r_cfg)
        solver = ODESolver(PrefixDroppingVelocity(guided))
    num_windows = -(-T // L)
    total = num_windows * settings.steps
    Q, scale = _noise_law(fmt, wa.device, wa.dtype)  # (W, M) and (M,), or None
    prev_x = torch.zeros(B, P, W, device=wa.device, dtype=wa.dtype)
    prev_wa = torch.zeros(B, P, A, device=wa.device, dtype=wa.dtype)
    if record is not None:
        record["time_grid"] = grid
    for k in range(num_windows):
        x0 = _window_noise(noise, k, (B, L, W), generator, wa.device, wa.dtype, Q, scale)
        wa_k = wa[:, k * L : (k + 1) * L]  # (B, <=L, A)
        if wa_k.shape[1] < L:
            wa_k = torch.cat([wa_k, wa_k[:, -1:].expand(B, L - wa_k.shape[1], A)], dim=1)  # (B, L, A)
        with torch.no_grad():
            if isinstance(guided, GuidedFlowTransformer):
                cond = {"condition": guided.prepare(wr=wr, wa=wa_k, prev_wa=prev_wa, we=we)}
            else:
                cond = {"cond_embedding": guided.embed_condition(wr=wr, wa=wa_k, prev_wa=prev_wa, we=we)}
        window_cb = None if callback is None else (lambda s, n, _o=k * settings.steps: callback(_o + s, total))
        hook = None if step_hook is None else (lambda x, t, _k=k: step_hook(x, t, _k))
        if Q is not None:
            hook = _subspace_hook(Q, hook)
        result = solver.sample(
            x0, grid, settings.method, callback=window_cb, return_intermediates=record is not None,
            step_hook=hook, prev_x=prev_x, **cond,
        )
        if record is not None:
            sample, trajectory, velocity = result
            record.update({
                f"chunk{k}.x0": x0, f"chunk{k}.prev_x": prev_x, f"chunk{k}.prev_wa": prev_wa,
                f"chunk{k}.wa_t": wa_k, f"chunk{k}.trajectory": trajectory, f"chunk{k}.velocity": velocity,
                f"chunk{k}.step_t": grid[:-1], f"chunk{k}.sample": sample,
            })
        else:
            sample = result
        prev_x, prev_wa = sample[:, L - P :], wa_k[:, L - P :]  # (B, P, W), (B, P, A)
        yield sample[:, : min(L, T - k * L)]


def sample_motion(
    fmt,
    *,
    wr: Tensor,
    wa: Tensor,
    we: Tensor,
    settings: SamplerSettings = SamplerSettings(),
    generator: torch.Generator | None = None,
    noise: NoiseSource = None,
    callback: Callable[[int, int], None] | None = None,
    record: dict | None = None,
    step_hook: WindowStepHook | None = None,
) -> Tensor:
    """Motion latents for the whole clip: the windows of :func:`iter_motion_windows` concatenated.

    Args:
        fmt, wr, wa, we, settings, generator, noise, callback, record, step_hook: see
            :func:`iter_motion_windows`; ``record`` additionally receives ``sample``.

    Returns:
        ``(B, T, W)`` motion latents (T = ``wa.shape[1]``).

    Example:
        .. code-block:: python

            g = torch.Generator().manual_seed(0)
            motion = sample_motion(fmt, wr=r_s, wa=wa, we=we, settings=SamplerSettings(steps=9), generator=g)
    """
    windows = iter_motion_windows(
        fmt, wr=wr, wa=wa, we=we, settings=settings, generator=generator, noise=noise,
        callback=callback, record=record, step_hook=step_hook,
    )
    motion = torch.cat(list(windows), dim=1)  # (B, T, W)
    if record is not None:
        record["sample"] = motion
    return motion
