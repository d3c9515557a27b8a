"""A small log-mel audio encoder: 16-kHz waveform → per-video-frame audio features (DEMO's light front end).

Pipeline for a normalised waveform ``a`` (B, n) (see :func:`~demo_core.models.audio_encoder.normalize_waveform`)
and a frame count T:

1. crop or zero-pad to ``n_T = int(T · sampling_rate / fps)`` samples (the audio that T frames cover);
2. power STFT (Hann window, ``center=True`` with zero padding) → triangular HTK mel filterbank → log;
3. per-frame LayerNorm over mel bins, a 1-D conv and residual dilated conv blocks at the mel rate
   (every operation is local in time: the receptive field is :attr:`LogMelAudioEncoder.context_frames`
   video frames each side, so a long clip can be encoded in overlapping segments);
4. linear interpolation at the video-frame times ``t_k = k / fps`` (FLOAT's convention: frame k starts the
   clip at k / fps) → Linear + LayerNorm → :meth:`~LogMelAudioEncoder.features` (B, T, dim_feature);
5. ``audio_projection`` = Linear → LayerNorm → SiLU (as FLOAT's) → ``wa`` (B, T, dim_a).

Same call signature as FLOAT's :class:`~demo_core.models.audio_encoder.AudioEncoder`: ``forward(a, num_frames)``.
torchaudio is not needed: the STFT is ``torch.stft`` and the filterbank is computed here.

Long clips: ``features(a, T, segment_frames=S)`` (and ``forward``) encode S video frames at a time, each segment
with the mel frames its receptive field needs on either side, so peak memory no longer grows with the clip; the
result equals the whole-clip computation to float rounding.  ``transform`` lets the caller normalise each slice
of the raw waveform with whole-clip statistics, so that no normalised copy of a long clip is made either.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DemoInputError

__all__ = ["LogMelAudioEncoderConfig", "LogMelAudioEncoder", "mel_filterbank", "hz_to_mel", "mel_to_hz",
           "DEFAULT_SEGMENT_FRAMES"]

# Video frames per segment when a long clip is encoded piecewise (20 s at 25 fps: a few MiB of STFT and
# activations per segment; the context recomputed at each join is ~7 % of a segment).
DEFAULT_SEGMENT_FRAMES = 500


@dataclass
class LogMelAudioEncoderConfig:
    """Configuration of :class:`LogMelAudioEncoder`.

    Attributes:
        kind: audio front-end family stored in DEMO configs (always ``"logmel"`` here).
        sampling_rate: waveform rate (Hz).
        fps: video frame rate of the output features.
        n_fft: STFT size (samples).
        win_length: Hann window length (samples, <= n_fft).
        hop_length: STFT hop (samples); 160 = 10 ms at 16 kHz.
        n_mels: mel bands.
        f_min: lowest filter edge (Hz).
        f_max: highest filter edge (Hz, <= sampling_rate / 2).
        channels: conv width.
        dilations: one residual block per entry, kernel 3 with this dilation (mel frames).
        dim_feature: width of :meth:`LogMelAudioEncoder.features` (used by the lip InfoNCE, cached in stage 2).
        dim_a: width of the FMT audio condition ``wa``.
    """

    kind: str = "logmel"
    sampling_rate: int = 16000
    fps: float = 25.0
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 7600.0
    channels: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    dim_feature: int = 128
    dim_a: int = 128

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        if self.kind != "logmel":
            raise DemoInputError(f"LogMelAudioEncoderConfig.kind must be 'logmel', got {self.kind!r}")
        if not 0 < self.win_length <= self.n_fft or self.hop_length < 1 or self.n_mels < 1:
            raise DemoInputError("LogMelAudioEncoderConfig: need 0 < win_length <= n_fft, hop_length >= 1, n_mels >= 1")
        if not 0 <= self.f_min < self.f_max <= self.sampling_rate / 2:
            raise DemoInputError(
                f"LogMelAudioEncoderConfig: need 0 <= f_min < f_max <= sampling_rate/2, got {self.f_min}, {self.f_max}"
            )
        if self.fps <= 0 or any(d < 1 for d in self.dilations):
            raise DemoInputError("LogMelAudioEncoderConfig: fps must be > 0 and dilations >= 1")

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`LogMelAudioEncoder.features` (FLOAT's AudioEncoderConfig has the same property)."""
        return self.dim_feature

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LogMelAudioEncoderConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "dilations" in kw:
            kw["dilations"] = tuple(kw["dilations"])
        return cls(**kw)


def hz_to_mel(f: Tensor) -> Tensor:
    """HTK mel scale: ``2595 · log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sampling_rate: int, f_min: float, f_max: float) -> Tensor:
    """Triangular mel filters on the STFT bin frequencies (peak 1, no area normalisation).

    Returns:
        ``(n_fft // 2 + 1, n_mels)`` float32 matrix; power spectrum ``(…, F) @ fb`` gives mel energies.
    """
    cpu = {"dtype": torch.float64, "device": "cpu"}  # explicit: also correct under a meta device context
    freqs = torch.linspace(0.0, sampling_rate / 2, n_fft // 2 + 1, **cpu)  # (F,)
    m_lo, m_hi = (2595.0 * math.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    m = torch.linspace(m_lo, m_hi, n_mels + 2, **cpu)
    edges = mel_to_hz(m)  # (n_mels + 2,)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]  # (n_mels,) each
    up = (freqs[:, None] - lo[None, :]) / (mid - lo)[None, :]  # (F, n_mels)
    down = (hi[None, :] - freqs[:, None]) / (hi - mid)[None, :]
    return torch.clamp(torch.minimum(up, down), min=0.0).to(torch.float32)


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of a (B, C, N) sequence, per time step."""

    def __init__(self, channels: int, **kw):
        super().__init__()
        self.norm = nn.LayerNorm(channels, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class _DilatedBlock(nn.Module):
    """``x + conv1×1(GELU(conv3(norm(x), dilation)))``."""

    def __init__(self, channels: int, dilation: int, **kw):
        super().__init__()
        self.norm = _ChannelNorm(channels, **kw)
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation, **kw)
        self.mix = nn.Conv1d(channels, channels, 1, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(F.gelu(self.conv(self.norm(x))))


class LogMelAudioEncoder(nn.Module):
    """Normalised waveform → per-video-frame audio condition ``wa`` (B, T, dim_a).

    Args:
        cfg: configuration.
        device: parameter device.
        dtype: parameter dtype (the STFT is computed in float32).

    Example:
        .. code-block:: python

            enc = LogMelAudioEncoder(LogMelAudioEncoderConfig())
            wa = enc(normalize_waveform(wave)[None], num_frames=50)     # (1, 50, 128)
    """

    def __init__(self, cfg: LogMelAudioEncoderConfig | None = None, *, device=None, dtype=None):
        super().__init__()
        cfg = cfg if cfg is not None else LogMelAudioEncoderConfig()
        self.config = cfg
        kw = {"device": device, "dtype": dtype}
        fb = mel_filterbank(cfg.n_fft, cfg.n_mels, cfg.sampling_rate, cfg.f_min, cfg.f_max)
        self.register_buffer("mel_fb", fb.to(device), persistent=False)  # (F, n_mels), recomputed, not saved
        self.register_buffer("window", torch.hann_window(cfg.win_length, device="cpu").to(device), persistent=False)
        self.input_norm = nn.LayerNorm(cfg.n_mels, **kw)
        self.input_conv = nn.Conv1d(cfg.n_mels, cfg.channels, 3, padding=1, **kw)
        self.blocks = nn.ModuleList(_DilatedBlock(cfg.channels, d, **kw) for d in cfg.dilations)
        self.out_norm = _ChannelNorm(cfg.channels, **kw)
        self.feature_proj = nn.Sequential(nn.Linear(cfg.channels, cfg.dim_feature, **kw),
                                          nn.LayerNorm(cfg.dim_feature, **kw))
        self.audio_projection = nn.Sequential(
            nn.Linear(cfg.dim_feature, cfg.dim_a, **kw), nn.LayerNorm(cfg.dim_a, **kw), nn.SiLU()
        )

    # -- geometry --------------------------------------------------------------------------------------------

    def num_samples(self, num_frames: int) -> int:
        """``n_T = int(T · sampling_rate / fps)``, the waveform length that T frames cover."""
        return int(num_frames * self.config.sampling_rate / self.config.fps)

    @property
    def context_frames(self) -> int:
        """Receptive-field half-width in video frames: features of frame k only depend on audio within
        ``(k ± context_frames) / fps``, so segments with this much context give the full-clip features."""
        c = self.config
        mel = 1 + sum(c.dilations) + math.ceil(c.n_fft / 2 / c.hop_length) + 1
        return math.ceil(mel * c.hop_length * c.fps / c.sampling_rate) + 1

    # -- computation -----------------------------------------------------------------------------------------

    @staticmethod
    def _check_inputs(a: Tensor, num_frames: int) -> None:
        if not isinstance(a, Tensor) or a.dim() != 2 or a.shape[1] == 0 or not a.is_floating_point():
            shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise DemoInputError(f"audio: expected a normalised float waveform of shape (B, n), got {shape}")
        if isinstance(num_frames, bool) or int(num_frames) != num_frames or int(num_frames) < 1:
            raise DemoInputError(f"num_frames: expected a positive integer, got {num_frames!r}")

    def log_mel(self, a: Tensor) -> Tensor:
        """Log-mel spectrogram ``(B, n_mels, n // hop + 1)`` (float32), frame j centred on sample ``j · hop``."""
        return self._log_mel(a, center=True)

    def _log_mel(self, a: Tensor, *, center: bool) -> Tensor:
        """``center=False``: frame j covers samples ``[j · hop, j · hop + n_fft)`` of ``a`` (no padding)."""
        c = self.config
        spec = torch.stft(
            a.float(), n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
            window=self.window.float(), center=center, pad_mode="constant", return_complex=True,
        )  # (B, F, N)
        power = spec.real**2 + spec.imag**2
        del spec
        mel = torch.einsum("bfn,fm->bmn", power, self.mel_fb.float())  # (B, n_mels, N)
        return torch.log(mel + 1e-6)

    @property
    def mel_radius(self) -> int:
        """Receptive-field half-width of the conv stack in mel frames (input conv 1 + one dilation per block)."""
        return 1 + sum(self.config.dilations)

    def _mel_stack(self, lm: Tensor) -> Tensor:
        """Log-mel (B, n_mels, N) → per-mel-frame features (B, C, N) (zero padding at both ends of N)."""
        dtype = self.input_conv.weight.dtype
        x = self.input_norm(lm.transpose(1, 2).to(dtype)).transpose(1, 2)  # (B, n_mels, N)
        x = self.input_conv(x)  # (B, C, N)
        for block in self.blocks:
            x = block(x)
        return self.out_norm(x)  # (B, C, N)

    def _frame_positions(self, k0: int, k1: int, num_mel: int) -> tuple[Tensor, Tensor, Tensor]:
        """Mel indices ``i0``, ``i1`` (int64) and weights (float64) of video frames ``k0 … k1-1``."""
        c = self.config
        pos = torch.arange(k0, k1, dtype=torch.float64) * (c.sampling_rate / (c.fps * c.hop_length))
        pos = pos.clamp(max=num_mel - 1)
        i0 = pos.floor().long()  # (k1 - k0,)
        i1 = (i0 + 1).clamp(max=num_mel - 1)
        return i0, i1, pos - i0.to(torch.float64)

    @staticmethod
    def _interpolate(x: Tensor, i0: Tensor, i1: Tensor, w1: Tensor) -> Tensor:
        """(B, C, N) at fractional mel positions → (B, T, C)."""
        w1 = w1.to(device=x.device, dtype=x.dtype)
        i0, i1 = i0.to(x.device), i1.to(x.device)
        return (x[..., i0] * (1 - w1) + x[..., i1] * w1).transpose(1, 2)  # (B, T, C)

    def features(self, a: Tensor, num_frames: int, *, segment_frames: int | None = None,
                 transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Per-frame features before the FMT projection.

        Args:
            a: normalised waveform (B, n) at ``sampling_rate``.
            num_frames: T; the waveform is cropped or zero-padded to ``num_samples(T)``.
            segment_frames: None (whole clip at once) or S: encode S video frames at a time, each segment
                with :attr:`mel_radius` mel frames (and the STFT window) of context on either side, so the
                STFT and the conv activations never exceed one segment whatever T; the result equals the
                whole-clip computation to float rounding.
            transform: optional sample-wise map applied to ``a`` before it is cropped or padded (with
                ``segment_frames``, to each slice of it only), e.g. normalisation with whole-clip statistics:
                ``a`` may then be the raw waveform and no transformed copy of the whole clip is made.

        Returns:
            (B, T, dim_feature); row k describes the audio around ``t = k / fps``.
        """
        self._check_inputs(a, num_frames)
        T = int(num_frames)
        if segment_frames is not None:
            if isinstance(segment_frames, bool) or int(segment_frames) != segment_frames or int(segment_frames) < 1:
                raise DemoInputError(f"segment_frames: expected a positive integer or None, got {segment_frames!r}")
            if int(segment_frames) < T:
                return self._features_segmented(a, T, int(segment_frames), transform)
        if transform is not None:
            a = transform(a)
        n_t = self.num_samples(T)
        a = a[:, :n_t] if a.shape[1] >= n_t else F.pad(a, (0, n_t - a.shape[1]))  # (B, n_T)
        x = self._mel_stack(self.log_mel(a))  # (B, C, N)
        i0, i1, w1 = self._frame_positions(0, T, x.shape[-1])
        return self.feature_proj(self._interpolate(x, i0, i1, w1))  # (B, T, dim_feature)

    def _features_segmented(self, a: Tensor, T: int, seg: int, transform) -> Tensor:
        """:meth:`features` ``seg`` video frames at a time (see there): bounded memory whatever T."""
        c = self.config
        hop, half = c.hop_length, c.n_fft // 2
        n_t = self.num_samples(T)
        n_real = min(int(a.shape[1]), n_t)  # samples of ``a`` inside the cropped / zero-padded clip
        num_mel = n_t // hop + 1  # frames of the centred STFT of the whole (B, n_T) clip
        r = self.mel_radius
        out = None
        for k0 in range(0, T, seg):
            k1 = min(T, k0 + seg)
            i0, i1, w1 = self._frame_positions(k0, k1, num_mel)
            # mel frames the conv stack must see for frames i0[0] … i1[-1] to be exact: the zero padding at a
            # segment's ends then reaches no frame that is used (or is the clip's own edge, as in the whole clip)
            j0, j1 = max(0, int(i0[0]) - r), min(num_mel, int(i1[-1]) + 1 + r)
            # STFT frames j0 … j1-1 of the centred whole-clip STFT = uncentred STFT of samples
            # [j0·hop − n_fft/2, (j1−1)·hop − n_fft/2 + n_fft), zero outside the clip
            lo, hi = j0 * hop - half, (j1 - 1) * hop - half + c.n_fft
            x = self._mel_stack(self._log_mel(self._clip_slice(a, lo, hi, n_real, transform), center=False))
            feats = self.feature_proj(self._interpolate(x, i0 - j0, i1 - j0, w1))  # (B, k1 - k0, D)
            if out is None:
                out = feats.new_empty(feats.shape[0], T, feats.shape[2])
            out[:, k0:k1] = feats
            del x, feats
        return out

    @staticmethod
    def _clip_slice(a: Tensor, lo: int, hi: int, n_real: int, transform) -> Tensor:
        """Samples ``lo … hi-1`` of ``transform(a[:, :n_real])``, zero outside ``[0, n_real)``: (B, hi − lo)."""
        s0 = max(lo, 0)
        s1 = max(min(hi, n_real), s0)
        part = a[:, s0:s1]  # may be empty (a slice wholly past the clip's end): then all zeros
        if transform is not None:
            part = transform(part)
        left, right = s0 - lo, hi - s1
        return F.pad(part, (left, right)) if left or right else part

    def forward(self, a: Tensor, num_frames: int, *, segment_frames: int | None = None,
                transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Args: normalised waveform (B, n), num_frames T (``segment_frames``, ``transform``: see
        :meth:`features`). Returns: ``wa`` (B, T, dim_a)."""
        return self.audio_projection(self.features(a, num_frames, segment_frames=segment_frames, transform=transform))
