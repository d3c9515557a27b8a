"""DEMO-native model: FLOAT's warping auto-encoder with factor heads, a log-mel audio encoder and an FMT.

:class:`DemoModel` exposes the attributes the pipeline uses on :class:`~demo_core.models.float_model.FloatModel`
(``motion_autoencoder``, ``audio_encoder``, ``emotion_encoder`` (None: the pipeline then uses the neutral
one-hot), ``fmt``, ``cfg.fps``, ``cfg.sampling_rate``, ``cfg.image_size``, ``device``, ``dtype``), so every
pipeline function runs on it unchanged.

The motion auto-encoder is FLOAT's :class:`~demo_core.models.motion_autoencoder.MotionAutoEncoder` with its
motion MLP ``enc.fc`` replaced by a :class:`~demo_core.models.fcme.FactorMotionEncoder`: the coefficients
``lam`` come from one head per factor block and address blocks of ONE jointly orthonormalised direction
dictionary (the QR of ``dec.direction.weight`` (W, M), exactly as in FLOAT).  The decoder is FLOAT's.
State-dict keys: ``motion_autoencoder.*`` (with ``enc.fc.heads.<factor>.*``), ``audio_encoder.*``, ``fmt.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import DemoInputError
from ..motion.factors import FactorLayout, default_factor_layout, factor_basis, split_coefficients
from .audio_encoder import AudioEncoder, AudioEncoderConfig
from .fcme import FactorMotionEncoder, FactorMotionEncoderConfig
from .flow_transformer import FlowTransformer, FlowTransformerConfig
from .logmel_audio_encoder import LogMelAudioEncoder, LogMelAudioEncoderConfig
from .motion_autoencoder import MotionAutoEncoder, MotionAutoEncoderConfig
from .painter import FeaturePainter, PainterConfig

__all__ = ["DemoConfig", "DemoModel", "FactorMotionAutoEncoder", "audio_config_from_dict", "build_audio_encoder"]

AudioConfig = LogMelAudioEncoderConfig | AudioEncoderConfig


def audio_config_from_dict(d: Mapping[str, Any]) -> AudioConfig:
    """Audio front-end config from its dict: ``kind`` ``"logmel"`` (default) or ``"wav2vec2"`` (FLOAT's encoder)."""
    kind = d.get("kind", "logmel")
    if kind == "logmel":
        return LogMelAudioEncoderConfig.from_dict(d)
    if kind == "wav2vec2":
        return AudioEncoderConfig.from_dict({k: v for k, v in d.items() if k != "kind"})
    raise DemoInputError(f"audio_encoder.kind must be 'logmel' or 'wav2vec2', got {kind!r}")


def _audio_config_to_dict(cfg: AudioConfig) -> dict[str, Any]:
    if isinstance(cfg, LogMelAudioEncoderConfig):
        return cfg.to_dict()
    return {"kind": "wav2vec2", **cfg.to_dict()}


def _audio_output_dim(cfg: AudioConfig) -> int:
    return cfg.dim_a if isinstance(cfg, LogMelAudioEncoderConfig) else cfg.dim_w


def build_audio_encoder(cfg: AudioConfig, **kw) -> nn.Module:
    """The audio encoder for ``cfg`` (both kinds have ``features(a, T)``, ``audio_projection`` and ``forward(a, T)``)."""
    if isinstance(cfg, LogMelAudioEncoderConfig):
        return LogMelAudioEncoder(cfg, **kw)
    return AudioEncoder(cfg, **kw)


def _check_flow_scale(scale, total: int) -> tuple[float, ...] | None:
    """``flow_scale`` as a tuple of ``total`` positive floats (or None)."""
    if scale is None:
        return None
    scale = tuple(float(v) for v in scale)
    if len(scale) != total or min(scale) <= 0:
        raise DemoInputError(f"DemoConfig: flow_scale must hold {total} positive values, got {list(scale)}")
    return scale


@dataclass
class DemoConfig:
    """Configuration of a DEMO-native model (stored as JSON in the pack's checkpoints with ``family: "demo"``).

    Attributes:
        motion_autoencoder: image size, latent width W, channels; ``dim_m`` must equal ``factors.total``.
        factors: factor blocks of the motion coefficients.
        audio_encoder: audio front end (``kind`` "logmel"; "wav2vec2" builds FLOAT's encoder).
        flow_transformer: FMT; ``dim_w`` = W, ``dim_a`` = audio output width (may differ from W), ``dim_e`` = 7.
        fps: native video frame rate.
        sampling_rate: audio rate (Hz).
        vae: the factor heads predict a Gaussian posterior (mean + log-variance).
        head_hidden: hidden width of each factor head.
        head_depth: hidden layers per factor head.
        head_source: what the factor heads read: ``"appearance"`` (the appearance code h) or ``"image"`` (one
            small conv encoder per factor on the frame, as in the paper's separate lip/pose/eye encoders).
        head_channels: conv channels of each per-factor encoder (``head_source="image"``).
        flow_subspace: flow matching runs inside the span of the motion dictionary Q (W, M): noise is drawn
            there and the sampler keeps its state there (the data never leaves it: a motion latent is
            ``λ @ Qᵀ``).  Without it the FMT must also learn to carry W − M dimensions of noise to exactly
            zero; a small CPU-trained FMT did not (sampled latents had norm ≈ 18 against ≈ 0.3 for data).
        flow_scale: per-coefficient spread σ (M values) of the training motion, set by stage-2 training when
            ``flow_subspace`` is on: noise is drawn as ``N(0, diag σ²)`` in the span and the flow-matching error
            is measured in units of σ, so slowly varying, small-spread factors (pose) are generated as
            precisely as large ones (with unit noise the generated pose jittered ~100× more than the data).
        canonical_appearance: the appearance code returned by ``encode`` is ``h − λ @ Qᵀ`` (the frame's own
            motion taken out), so a latent ``h + λ' @ Qᵀ`` asks the decoder for the *change* ``λ' − λ`` and the
            frame's own coefficients render it unwarped.  Without it the decoder must read the source's pose
            from ``h`` to know how far to warp.  Measured on the synthetic benchmark (yaw set on encoded frames,
            rendered, re-encoded): 8 000 stage-1 steps without it gave a render gain of 0.10 (a 30° edit turned
            the head 3°); with it and unit-spread axis scales (see :mod:`~demo_core.motion.factors`), 7 000
            steps gave 0.80 (600-step trials: 0.23 with both, 0.01 with either alone).
        painter: optional :class:`~demo_core.models.painter.FeaturePainter` after the decoder, conditioned on the
            coefficients of ``painter.factors``; it draws what the warp cannot (mouth interior, eyelids, irises).
    """

    motion_autoencoder: MotionAutoEncoderConfig = field(default_factory=MotionAutoEncoderConfig)
    factors: FactorLayout = field(default_factory=default_factor_layout)
    audio_encoder: AudioConfig = field(default_factory=LogMelAudioEncoderConfig)
    flow_transformer: FlowTransformerConfig = field(
        default_factory=lambda: FlowTransformerConfig(dim_a=LogMelAudioEncoderConfig().dim_a)
    )
    fps: float = 25.0
    sampling_rate: int = 16000
    vae: bool = False
    head_hidden: int = 128
    head_depth: int = 2
    head_source: str = "appearance"
    head_channels: tuple[int, ...] = (32, 64, 128, 128)
    flow_subspace: bool = False
    flow_scale: tuple[float, ...] | None = None
    canonical_appearance: bool = False
    painter: PainterConfig | None = None

    def __post_init__(self) -> None:
        self.head_channels = tuple(int(c) for c in self.head_channels)
        if isinstance(self.painter, Mapping):
            self.painter = PainterConfig.from_dict(self.painter)
        if self.painter is not None:
            missing = [f for f in self.painter.factors if f not in self.factors.names]
            if missing:
                raise DemoInputError(f"DemoConfig: painter.factors {missing} are not blocks of the factor layout "
                                     f"{list(self.factors.names)}")
        self.flow_scale = _check_flow_scale(self.flow_scale, self.factors.total)
        mae, fmt = self.motion_autoencoder, self.flow_transformer
        if mae.dim_m != self.factors.total:
            raise DemoInputError(
                f"DemoConfig: motion_autoencoder.dim_m ({mae.dim_m}) must equal the factor layout total ({self.factors.total})"
            )
        if fmt.dim_w != mae.dim_w:
            raise DemoInputError(f"DemoConfig: flow_transformer.dim_w ({fmt.dim_w}) must equal motion_autoencoder.dim_w ({mae.dim_w})")
        if fmt.dim_a != _audio_output_dim(self.audio_encoder):
            raise DemoInputError(
                f"DemoConfig: flow_transformer.dim_a ({fmt.dim_a}) must equal the audio encoder output width "
                f"({_audio_output_dim(self.audio_encoder)})"
            )
        a = self.audio_encoder
        if float(a.fps) != float(self.fps) or int(a.sampling_rate) != int(self.sampling_rate):
            raise DemoInputError(
                f"DemoConfig: audio encoder fps/sampling_rate ({a.fps}, {a.sampling_rate}) must equal the model's "
                f"({self.fps}, {self.sampling_rate})"
            )

    @property
    def image_size(self) -> int:
        return self.motion_autoencoder.size

    def motion_encoder_config(self) -> FactorMotionEncoderConfig:
        """The :class:`FactorMotionEncoderConfig` of the factor heads."""
        return FactorMotionEncoderConfig(dim_w=self.motion_autoencoder.dim_w, layout=self.factors,
                                         hidden=self.head_hidden, depth=self.head_depth, vae=self.vae,
                                         source=self.head_source, image_size=self.motion_autoencoder.size,
                                         channels=self.head_channels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": "demo",
            "motion_autoencoder": self.motion_autoencoder.to_dict(),
            "factors": self.factors.to_dict(),
            "audio_encoder": _audio_config_to_dict(self.audio_encoder),
            "flow_transformer": self.flow_transformer.to_dict(),
            "fps": self.fps,
            "sampling_rate": self.sampling_rate,
            "vae": self.vae,
            "head_hidden": self.head_hidden,
            "head_depth": self.head_depth,
            "head_source": self.head_source,
            "head_channels": list(self.head_channels),
            "flow_subspace": self.flow_subspace,
            "canonical_appearance": self.canonical_appearance,
            **({} if self.flow_scale is None else {"flow_scale": list(self.flow_scale)}),
            **({} if self.painter is None else {"painter": self.painter.to_dict()}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DemoConfig":
        """Inverse of :meth:`to_dict`; missing sections take their defaults (``dim_m`` = the layout total, FMT
        ``dim_w``/``dim_a`` = the auto-encoder's and audio encoder's widths)."""
        if d.get("family", "demo") != "demo":
            raise DemoInputError(f"DemoConfig.from_dict: family must be 'demo', got {d.get('family')!r}")
        factors = FactorLayout.from_dict(d["factors"]) if "factors" in d else default_factor_layout()
        mae = MotionAutoEncoderConfig.from_dict({"dim_m": factors.total, **d.get("motion_autoencoder", {})})
        audio = audio_config_from_dict(d.get("audio_encoder", {}))
        fmt = {"dim_w": mae.dim_w, "dim_a": _audio_output_dim(audio), **d.get("flow_transformer", {})}
        return cls(
            motion_autoencoder=mae,
            factors=factors,
            audio_encoder=audio,
            flow_transformer=FlowTransformerConfig.from_dict(fmt),
            fps=float(d.get("fps", 25.0)),
            sampling_rate=int(d.get("sampling_rate", 16000)),
            vae=bool(d.get("vae", False)),
            head_hidden=int(d.get("head_hidden", 128)),
            head_depth=int(d.get("head_depth", 2)),
            head_source=str(d.get("head_source", "appearance")),
            head_channels=tuple(d.get("head_channels", (32, 64, 128, 128))),
            flow_subspace=bool(d.get("flow_subspace", False)),
            flow_scale=None if d.get("flow_scale") is None else tuple(d["flow_scale"]),
            canonical_appearance=bool(d.get("canonical_appearance", False)),
            painter=d.get("painter"),  # a dict becomes a PainterConfig in __post_init__
        )


class FactorMotionAutoEncoder(MotionAutoEncoder):
    """FLOAT's motion auto-encoder whose ``enc.fc`` is a :class:`FactorMotionEncoder` (decoder unchanged).

    :meth:`encode` returns ``(h, lam, feats)`` with ``lam`` the posterior mean of the factor heads, so every
    FLOAT-style caller works; :meth:`encode_posterior` also returns the log-variances for training.

    Args:
        cfg: shape configuration (``dim_m`` = ``encoder_cfg.layout.total``).
        encoder_cfg: factor-head configuration.
        device: parameter device.
        dtype: parameter dtype.
        canonical_appearance: ``encode`` returns ``h − λ @ Qᵀ`` (see :class:`DemoConfig`).
        painter: configuration of a feature painter applied after the decoder (None: none).
    """

    def __init__(self, cfg: MotionAutoEncoderConfig, encoder_cfg: FactorMotionEncoderConfig, *, device=None,
                 dtype=None, canonical_appearance: bool = False, painter: PainterConfig | None = None) -> None:
        if cfg.dim_m != encoder_cfg.layout.total or cfg.dim_w != encoder_cfg.dim_w:
            raise DemoInputError(
                f"FactorMotionAutoEncoder: dim_m/dim_w ({cfg.dim_m}, {cfg.dim_w}) must match the factor heads "
                f"({encoder_cfg.layout.total}, {encoder_cfg.dim_w})"
            )
        super().__init__(cfg, device=device, dtype=dtype)
        self.enc.fc = FactorMotionEncoder(encoder_cfg, device=device, dtype=dtype)
        self.layout = encoder_cfg.layout
        self.canonical_appearance = bool(canonical_appearance)
        self.painter = None
        if painter is not None:
            slices = self.layout.slices()
            index = [i for f in painter.factors for i in range(slices[f].start, slices[f].stop)]
            self.painter = FeaturePainter(painter, len(index), device=device, dtype=dtype)
            self.register_buffer("painter_index", torch.tensor(index, dtype=torch.long, device=device),
                                 persistent=False)

    def paint(self, image: Tensor, motion: Tensor | None) -> Tensor:
        """Apply the feature painter (if any) to rendered frames (N, 3, S, S) with their motion latents (N, W).

        The painter reads the absolute coefficients ``motion @ Q`` of its factors (the motion of a canonical
        appearance code ``h + λ @ Qᵀ`` is ``λ @ Qᵀ``) and sees the decoder's frame, which shows the source's
        own mouth and eyes where the warp put them.
        """
        if self.painter is None:
            return image
        if motion is None:
            raise DemoInputError("render: this model has a feature painter; pass motion= (the latent's motion part, "
                                 "(N, W)) so it can read the factor coefficients")
        if motion.shape != (image.shape[0], self.cfg.dim_w):
            raise DemoInputError(f"motion: expected shape ({image.shape[0]}, {self.cfg.dim_w}), got {tuple(motion.shape)}")
        coefficients = self.coefficients_from_motion(motion.to(self.dec.direction.weight.dtype))
        return self.painter(image, coefficients.index_select(1, self.painter_index))

    def _check_image(self, image: Tensor) -> None:
        s = self.cfg.size
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, s, s):
            raise DemoInputError(f"image: expected shape (B, 3, {s}, {s}), got {tuple(image.shape)}")

    def encode(self, image: Tensor, *, taps: dict | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Encode portraits: ``(h (B, W), lam (B, M) posterior mean, feats low → high res)`` (FLOAT's contract)."""
        h, lam, _, feats = self.encode_posterior(image, taps=taps)
        return h, lam, feats

    def encode_posterior(self, image: Tensor, *, taps: dict | None = None
                         ) -> tuple[Tensor, Tensor, Tensor | None, list[Tensor]]:
        """Encode portraits with the posterior of the factor heads.

        Args:
            image: (B, 3, S, S) in [-1, 1].
            taps: optional dict filled with ``enc.net_app.convs.{i}`` outputs.

        Returns:
            h (B, W) (with ``canonical_appearance``: ``h − mean @ Qᵀ``), mean (B, M), logvar (B, M) or None,
            feats (low → high resolution).
        """
        self._check_image(image)
        outs = self.enc.net_app(image)
        if taps is not None:
            for i, o in enumerate(outs):
                taps[f"enc.net_app.convs.{i}"] = o
        h = outs[-1].flatten(1)  # (B, W)
        mean, logvar = self.enc.fc.posterior(image if self.enc.fc.reads_image else h)
        if self.canonical_appearance:
            h = h - self.motion_from_coefficients(mean)
        return h, mean, logvar, outs[-3::-1]

    def coefficients_posterior(self, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """Only the factor posterior ``(mean, logvar)`` of frames; with ``head_source="image"`` the appearance
        network is not run (driving frames in training and motion extraction need no appearance code)."""
        if self.enc.fc.reads_image:
            self._check_image(image)
            return self.enc.fc.posterior(image)
        _, mean, logvar, _ = self.encode_posterior(image)
        return mean, logvar

    @torch.no_grad()
    def reset_flow_to_identity(self) -> None:
        """Training initialisation of the warps: every ToFlow starts at the identity warp (zero 1×1 conv and
        bias: no offset, mask ½), so the first renders copy the source's features instead of scrambling them.

        With the default random ToFlow weights the flow offsets of a fresh model are large (the modulation
        follows the latent) and saturate ``tanh``; trained from there on the synthetic data for 2 500 steps,
        the decoder learnt to ignore the warped features and drew a blurred average face that edits barely
        moved.  (Not applied in ``__init__``: a fresh model then renders the same image for every motion.)
        """
        for to_flow in self.dec.to_flows:
            to_flow.conv.weight.zero_()
            to_flow.bias.zero_()

    def factor_coefficients(self, lam: Tensor) -> dict[str, Tensor]:
        """``(..., M)`` → block name → ``(..., k)``."""
        return split_coefficients(lam, self.layout)

    def factor_basis(self) -> dict[str, Tensor]:
        """Block name → ``(W, k)`` columns of the orthonormal dictionary."""
        return factor_basis(self.directions(), self.layout)


class DemoModel(nn.Module):
    """The DEMO-native talking-portrait model.

    Args:
        cfg: the model configuration.
        device: where to allocate parameters (``"meta"`` gives shapes only).
        dtype: parameter dtype.

    Example:
        .. code-block:: python

            model = DemoModel(DemoConfig())
            h, lam, feats = model.motion_autoencoder.encode(image)          # lam: (B, 20) in layout order
            wa = model.audio_encoder(normalize_waveform(wave)[None], 50)    # (1, 50, dim_a)
    """

    def __init__(self, cfg: DemoConfig, *, device=None, dtype=None):
        super().__init__()
        self.cfg = cfg
        kw = {"device": device, "dtype": dtype}
        self.motion_autoencoder = FactorMotionAutoEncoder(cfg.motion_autoencoder, cfg.motion_encoder_config(),
                                                          canonical_appearance=cfg.canonical_appearance,
                                                          painter=cfg.painter, **kw)
        self.audio_encoder = build_audio_encoder(cfg.audio_encoder, **kw)
        self.emotion_encoder = None
        self.fmt = FlowTransformer(cfg.flow_transformer, **kw)
        if cfg.flow_subspace:
            self.fmt.latent_basis = self.motion_autoencoder.directions
            self.set_flow_scale(cfg.flow_scale)

    def set_flow_scale(self, scale) -> None:
        """Set (or clear with None) the per-coefficient noise spread σ of the flow (config and FMT)."""
        self.cfg.flow_scale = _check_flow_scale(scale, self.cfg.factors.total)
        if scale is None:
            self.fmt.latent_scale = None
        else:
            self.fmt.latent_scale = torch.tensor(self.cfg.flow_scale, device=self.device, dtype=self.dtype)

    @property
    def layout(self) -> FactorLayout:
        return self.cfg.factors

    @property
    def device(self) -> torch.device:
        return self.fmt.x_embedder.proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.fmt.x_embedder.proj.weight.dtype
