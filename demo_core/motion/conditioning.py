"""Factor-conditioned sampling: some factors follow a given track, the others are generated from audio.

No retraining: the flow-matching ODE is integrated as usual, and after every solver step the coordinates
of the *fixed* factors are put back on the straight path from the window's initial noise to the target
(the path of :class:`~demo_core.flow.paths.CondOTPath`, t = 0 noise, t = 1 data)::

    x_t|fixed = (1 − t)·x_0|fixed + t·target|fixed          x|fixed = x @ B_fixed (coordinates)

while the free factors and ``r_⊥`` evolve under the model, which sees the constrained state and so
generates free factors consistent with it ("replacement" guidance, as in flow/diffusion inpainting).  At
t = 1 the fixed coordinates equal the target (to float rounding).

Use :class:`FactorConditioning` to get the ``noise`` callable and ``step_hook`` for
:func:`~demo_core.flow.window_sampler.iter_motion_windows` (streaming), or
:func:`sample_motion_conditioned` for a whole clip.

Example:
    .. code-block:: python

        # lips from audio, head pose from a driving video, gaze held on the camera
        motion = sample_motion_conditioned(
            fmt, wr=wr, wa=wa, we=we, settings=SamplerSettings(steps=10),
            fixed={"pose": driving_latents, "gaze": torch.zeros(1, T, 2)},
            Q=Q, layout=layout, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..errors import DemoInputError
from ..flow.window_sampler import SamplerSettings, iter_motion_windows, noise_shaper
from .factor_space import FactorSpace, describe_shape
from .factors import FactorLayout

__all__ = ["FactorConditioning", "iter_motion_conditioned", "sample_motion_conditioned"]


class FactorConditioning:
    """The ``noise`` and ``step_hook`` pair that pins fixed factors during windowed sampling.

    ``noise(k)`` draws (or takes) window ``k``'s initial noise and records it; ``step_hook(x, t_next, k)``
    returns ``x`` with its fixed-factor coordinates replaced by their value on the straight path.

    Args:
        space: factor space of the model.
        fixed: factor name → target (B|1, T, ·): latents (W), dictionary coefficients λ (M) or that
            factor's coordinates (k), at the model's native fps.
        window_length: frames per window L (``fmt.cfg.num_frames``).
        batch: batch size B of the sampled motion.
        num_frames: clip length T (``wa.shape[1]``); every target must have T frames.
        generator: RNG of the default noise (the same draws as unconditioned sampling with this generator).
        noise: None (``randn((B, L, W))`` per window), a callable ``k -> (B, L, W)`` or a sequence of them.
        shaper: applied to the default noise (``noise_shaper(fmt, …)`` for models that draw their noise in a
            sub-space), so that the recorded ``x_0`` is the sampler's actual starting point.
        device, dtype: where and in which dtype to draw the default noise (those of ``wa``).

    Example:
        .. code-block:: python

            cond = FactorConditioning(space, {"pose": driving}, window_length=fmt.cfg.num_frames,
                                      batch=B, num_frames=T, generator=g, device=wa.device, dtype=wa.dtype)
            for window in iter_motion_windows(fmt, wr=wr, wa=wa, we=we, noise=cond.noise,
                                              step_hook=cond.step_hook):
                ...
    """

    def __init__(
        self,
        space: FactorSpace,
        fixed: Mapping[str, Tensor],
        *,
        window_length: int,
        batch: int,
        num_frames: int,
        generator: torch.Generator | None = None,
        noise: Callable[[int], Tensor] | Sequence[Tensor] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        shaper: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not isinstance(space, FactorSpace):
            raise DemoInputError(f"space: expected a FactorSpace, got {type(space).__name__}")
        if not isinstance(fixed, Mapping):
            raise DemoInputError(f"fixed: expected a mapping factor name -> target, got {type(fixed).__name__}")
        for name, value in (("window_length", window_length), ("batch", batch), ("num_frames", num_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DemoInputError(f"{name}: expected an integer >= 1, got {value!r}")
        if noise is not None and not callable(noise) and not isinstance(noise, (Sequence, Tensor)):
            raise DemoInputError(f"noise: expected None, a callable or a sequence of tensors, "
                                 f"got {type(noise).__name__}")
        self.space, self.generator, self.base_noise = space, generator, noise
        self.window_length, self.batch, self.num_frames = window_length, batch, num_frames
        self.device, self.dtype, self.shaper = device, dtype, shaper
        self.x0: dict[int, Tensor] = {}
        L, T = window_length, num_frames
        num_windows = -(-T // L)
        columns, targets = [], []
        for factor, target in fixed.items():
            if factor not in space.layout.names:
                raise DemoInputError(f"fixed: unknown factor {factor!r} "
                                     f"(the layout has {', '.join(space.layout.names)})")
            c = space.as_factor_coordinates(target, factor, f"fixed[{factor!r}]")
            if c.ndim != 3 or c.shape[1] != T or c.shape[0] not in (1, batch):
                raise DemoInputError(f"fixed[{factor!r}]: expected ({batch} or 1, {T}, ·) frames at the model's fps "
                                     f"(T = wa.shape[1]), got {describe_shape(target)}")
            columns.append(space.factor_basis(factor))
            targets.append(c.detach().to(device=device, dtype=dtype).expand(batch, T, -1))  # (B, T, k)
        W = space.width
        self.basis = torch.cat(columns, dim=1).to(device=device, dtype=dtype) if columns else \
            torch.zeros(W, 0, device=device, dtype=dtype)  # (W, K)
        if targets:
            target = torch.cat(targets, dim=-1)  # (B, T, K)
            pad = num_windows * L - T  # the short last window is padded by holding the last target frame
            self.targets = torch.cat([target, target[:, -1:].expand(-1, pad, -1)], dim=1)  # (B, n·L, K)
        else:
            self.targets = torch.zeros(batch, num_windows * L, 0, device=device, dtype=dtype)

    def noise(self, k: int) -> Tensor:
        """Initial noise ``x_0`` (B, L, W) of window ``k`` (recorded for :meth:`step_hook`)."""
        shape = (self.batch, self.window_length, self.space.width)
        if self.base_noise is None:
            x0 = torch.randn(shape, generator=self.generator, device=self.device, dtype=self.dtype)
            if self.shaper is not None:  # the model's own noise law (e.g. inside its motion sub-space)
                x0 = self.shaper(x0)
        elif callable(self.base_noise):
            x0 = self.base_noise(k)
        else:
            if k >= len(self.base_noise):
                raise DemoInputError(f"noise has {len(self.base_noise)} windows but window {k} was requested")
            x0 = self.base_noise[k]
        if not isinstance(x0, Tensor) or tuple(x0.shape) != shape:
            raise DemoInputError(f"noise for window {k} must have shape {shape}; got {describe_shape(x0)}")
        self.x0[k] = x0
        return x0

    def step_hook(self, x: Tensor, t_next: Tensor, k: int) -> Tensor:
        """``x`` (B, L, W) with its fixed coordinates set to ``(1 − t)·x_0 + t·target`` at ``t = t_next``."""
        if k not in self.x0:
            raise DemoInputError(f"step_hook: window {k} has no recorded noise; pass FactorConditioning.noise "
                                 "as the sampler's noise")
        L = self.window_length
        b = self.basis.to(x)  # (W, K)
        t = t_next.to(x.dtype).reshape(-1)[0]
        c_0 = self.x0[k].to(x) @ b  # (B, L, K)
        target = self.targets[:, k * L : (k + 1) * L].to(x)  # (B, L, K)
        c_path = (1 - t) * c_0 + t * target
        return x + (c_path - x @ b) @ b.T  # (B, L, W)


def _conditioning(fmt, wa: Tensor, fixed, Q, layout, rotation, generator, noise) -> FactorConditioning:
    cfg = getattr(fmt, "cfg", None)
    if cfg is None or not hasattr(cfg, "num_frames"):
        raise DemoInputError(f"fmt: expected a FlowTransformer-like model with cfg.num_frames, "
                             f"got {type(fmt).__name__}")
    if not isinstance(wa, Tensor) or wa.ndim != 3:
        raise DemoInputError(f"wa: expected a tensor (B, T, A), got {describe_shape(wa)}")
    space = FactorSpace(Q, layout, rotation)
    if space.width != cfg.dim_w:
        raise DemoInputError(f"Q: expected {cfg.dim_w} rows (the model's latent width), got {space.width}")
    return FactorConditioning(space, fixed, window_length=int(cfg.num_frames), batch=int(wa.shape[0]),
                              num_frames=int(wa.shape[1]), generator=generator, noise=noise,
                              device=wa.device, dtype=wa.dtype, shaper=noise_shaper(fmt, wa.device, wa.dtype))


def iter_motion_conditioned(
    fmt,
    *,
    wr: Tensor,
    wa: Tensor,
    we: Tensor,
    fixed: Mapping[str, Tensor],
    Q: Tensor,
    layout: FactorLayout,
    rotation: Tensor | None = None,
    settings: SamplerSettings = SamplerSettings(),
    generator: torch.Generator | None = None,
    noise: Callable[[int], Tensor] | Sequence[Tensor] | None = None,
    callback: Callable[[int, int], None] | None = None,
    record: dict | None = None,
) -> Iterator[Tensor]:
    """Streaming form of :func:`sample_motion_conditioned`: yields (B, L_k, W) windows."""
    cond = _conditioning(fmt, wa, fixed, Q, layout, rotation, generator, noise)
    return iter_motion_windows(fmt, wr=wr, wa=wa, we=we, settings=settings, noise=cond.noise,
                               callback=callback, record=record, step_hook=cond.step_hook)


def sample_motion_conditioned(
    fmt,
    *,
    wr: Tensor,
    wa: Tensor,
    we: Tensor,
    fixed: Mapping[str, Tensor],
    Q: Tensor,
    layout: FactorLayout,
    rotation: Tensor | None = None,
    settings: SamplerSettings = SamplerSettings(),
    generator: torch.Generator | None = None,
    noise: Callable[[int], Tensor] | Sequence[Tensor] | None = None,
    callback: Callable[[int, int], None] | None = None,
    record: dict | None = None,
) -> Tensor:
    """Sample motion whose ``fixed`` factors follow given tracks while the rest come from the model.

    Args:
        fmt: the flow transformer (as for :func:`~demo_core.flow.window_sampler.sample_motion`).
        wr, wa, we: reference motion (B, W), audio features (B, T, A), emotion (B, 1, E) / (B, E).
        fixed: factor name → target (B|1, T, ·) latents / dictionary coefficients / factor coordinates at
            the model's native fps (T = ``wa.shape[1]``; use ``match_length`` / ``resample_trajectory`` first).
        Q: (W, M) direction dictionary; layout: factor layout; rotation: (M, M) calibration rotation or None.
        settings: steps, method and guidance scales.
        generator: RNG for the per-window noise.  With the same generator state and no ``noise``, the
            initial noise equals that of unconditioned sampling.
        noise, callback, record: as for :func:`~demo_core.flow.window_sampler.iter_motion_windows`.

    Returns:
        (B, T, W) motion latents; ``latents @ B_f`` equals the target on every fixed factor.
    """
    windows = iter_motion_conditioned(fmt, wr=wr, wa=wa, we=we, fixed=fixed, Q=Q, layout=layout,
                                      rotation=rotation, settings=settings, generator=generator, noise=noise,
                                      callback=callback, record=record)
    motion = torch.cat(list(windows), dim=1)  # (B, T, W)
    if record is not None:
        record["sample"] = motion
    return motion
