"""Replay a FLOAT reference fixture with this project's code.

Usage:
    python -m demo_core.tools.replay_fixture DIR [--atol 1e-4] [--rtol 1e-4] [--threads N]

``DIR`` holds a fixture in the format of ``shared/reference/float/tiny/``: ``config.json`` (FLOAT
options, channel table, sampler settings, ``weights_file``, tensor list), the weights and the
recorded stage files (``motion_ae``, ``audio_encoder``, ``emotion_encoder``, ``fmt``, ``sampler``;
any may be absent).  The model is rebuilt from the config alone, every recorded tensor that this
code can produce is recomputed, and the worst error per stage is printed.  The exit status is 1
when any tensor is off by more than ``atol + rtol·|ref|``, 2 when the fixture cannot be read.
Debug tensors may be absent; decoded frames may be a subset named by ``d_hat_frame_index``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import CheckpointError, DemoInputError
from ..flow.guidance import ClassifierFreeGuidance
from ..flow.window_sampler import SamplerSettings, sample_motion
from ..io.checkpoints import read_tensor_file
from ..models.emotion_encoder import emotion_condition
from ..models.float_model import FloatConfig, FloatModel

__all__ = ["Comparison", "replay_fixture", "main"]


@dataclass
class Comparison:
    """Errors of one stage: tensor name → (worst |diff|, worst excess over the bound, ok)."""

    stage: str
    results: dict[str, tuple[float, float, bool]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r[2] for r in self.results.values())

    @property
    def worst(self) -> float:
        return max((r[0] for r in self.results.values()), default=0.0)


class _Checker:
    def __init__(self, atol: float, rtol: float):
        self.atol, self.rtol = atol, rtol

    def __call__(self, comp: Comparison, name: str, cand: torch.Tensor, ref: torch.Tensor) -> None:
        cand = cand.detach().to(torch.float64).cpu()
        ref = ref.detach().to(torch.float64).cpu()
        if cand.shape != ref.shape:
            comp.results[name] = (float("inf"), float("inf"), False)
            return
        err = (cand - ref).abs()
        excess = err - (self.atol + self.rtol * ref.abs())
        comp.results[name] = (float(err.max()) if err.numel() else 0.0,
                              float(excess.max()) if err.numel() else -1.0,
                              bool((excess <= 0).all()))


def _compare_present(check: _Checker, comp: Comparison, ref: dict, computed: dict[str, torch.Tensor],
                     ref_prefix: str = "") -> None:
    for name, value in computed.items():
        key = ref_prefix + name
        if key in ref:
            check(comp, key, value, ref[key])


def build_model(cfg_json: dict, weights: dict[str, torch.Tensor]) -> FloatModel:
    """Rebuild the fixture's model from its ``config.json`` and load its weights strictly by name."""
    cfg = FloatConfig.from_float_options(cfg_json.get("options", {}), cfg_json.get("channels"))
    if not any(k.startswith("emotion_encoder.") for k in weights):
        cfg.emotion_encoder = None
    model = FloatModel(cfg)
    own = model.state_dict()
    missing = [k for k in own if k not in weights and not k.endswith((".kernel", "alignment_mask"))]
    if missing:
        raise CheckpointError(f"fixture weights lack {len(missing)} tensors, e.g. {missing[:3]}")
    with torch.no_grad():
        for k, t in own.items():
            if k in weights:
                if tuple(weights[k].shape) != tuple(t.shape):
                    raise CheckpointError(f"fixture weight {k} has shape {tuple(weights[k].shape)}, model {tuple(t.shape)}")
                t.copy_(weights[k])
    return model.eval()


def _stage_motion_ae(model: FloatModel, ref: dict, check: _Checker) -> Comparison:
    comp = Comparison("motion_ae")
    mae = model.motion_autoencoder
    taps: dict[str, torch.Tensor] = {}
    h, lam, feats = mae.encode(ref["input.image"], taps=taps)
    out = {"enc.h_source": h, "enc.lambda": lam, "direction.Q": mae.directions(),
           "direction.of_enc_lambda": mae.motion_from_coefficients(lam),
           "encode_identity_into_motion": mae.motion_from_coefficients(lam)}
    out.update({f"enc.feats.{i}": f for i, f in enumerate(feats)})
    out.update({f"debug.{k}": v for k, v in taps.items()})
    if "input.lambda_rand" in ref:
        out["direction.of_lambda_rand"] = mae.motion_from_coefficients(ref["input.lambda_rand"])
    if "input.r_d" in ref:
        r_d = ref["input.r_d"]
        if "decode_latent_into_image.d_hat" in ref:
            out["decode_latent_into_image.d_hat"] = mae.decode(h, feats, r_d)
        dec_taps: dict[str, torch.Tensor] = {}
        img, flow = mae.render(h + r_d[:, 0], feats, return_flow=True, taps=dec_taps)
        out["dec.frame0.img"], out["dec.frame0.flow"] = img, flow
        out.update({f"debug.{k}": v for k, v in dec_taps.items()})
    _compare_present(check, comp, ref, out)
    return comp


def _cases(ref: dict) -> list[str]:
    return sorted({k.split(".")[0] for k in ref if re.match(r"^[^.]+\.input\.a$", k)})


def _stage_audio(model: FloatModel, ref: dict, check: _Checker) -> Comparison:
    comp = Comparison("audio_encoder")
    for case in _cases(ref):
        a = ref[f"{case}.input.a"]
        frames = int(ref[f"{case}.T"].reshape(-1)[0]) if f"{case}.T" in ref else None
        if frames is None:
            comp.skipped.append(f"{case} (no T)")
            continue
        taps: dict[str, torch.Tensor] = {}
        feats = model.audio_encoder.features(a, frames, taps=taps)
        out = {"wav2vec2_feature": feats, "wa": model.audio_encoder(a, frames)}
        if "a_padded" in taps:
            out["a_padded"] = taps.pop("a_padded")
        out.update({f"debug.{k}": v for k, v in taps.items()})
        _compare_present(check, comp, ref, out, f"{case}.")
    return comp


def _stage_emotion(model: FloatModel, ref: dict, check: _Checker) -> Comparison:
    comp = Comparison("emotion_encoder")
    if model.emotion_encoder is None:
        comp.skipped.append("model has no emotion encoder")
        return comp
    for case in _cases(ref):
        taps: dict[str, torch.Tensor] = {}
        logits = model.emotion_encoder.logits(ref[f"{case}.input.a"], taps=taps)
        out = {"logits": logits, "probs": torch.softmax(logits, dim=-1)}
        out.update({f"debug.{k}": v for k, v in taps.items()})
        _compare_present(check, comp, ref, out, f"{case}.")
    return comp


def _stage_fmt(model: FloatModel, ref: dict, check: _Checker, cfg_json: dict) -> Comparison:
    comp = Comparison("fmt")
    cond = {"prev_x": ref["input.prev_x"], "wr": ref["input.wr"], "wa": ref["input.wa"],
            "prev_wa": ref["input.prev_wa"], "we": ref["input.we"]}
    x = ref["input.x"]
    out: dict[str, torch.Tensor] = {}
    if "input.t_batch" in ref:
        taps: dict[str, torch.Tensor] = {}
        out["forward.t_batch.out"] = model.fmt(x, ref["input.t_batch"], taps=taps, **cond)
        out.update({f"debug.{k}": v for k, v in taps.items()})
    if "input.t_single" in ref:
        out["forward.t_single.out"] = model.fmt(x, ref["input.t_single"], **cond)
        for item in cfg_json.get("fmt_cfv_scales", []):
            guided = ClassifierFreeGuidance(model.fmt, a_cfg=item.get("a_cfg_scale", 1.0),
                                            e_cfg=item.get("e_cfg_scale", 1.0), r_cfg=item.get("r_cfg_scale", 1.0))
            out[f"cfv.{item['index']}.out"] = guided(x, ref["input.t_single"], **cond)
    _compare_present(check, comp, ref, out)
    return comp


def _stage_sampler(model: FloatModel, ref: dict, check: _Checker, cfg_json: dict) -> Comparison:
    comp = Comparison("sampler")
    sampler_cfg = cfg_json.get("sampler", {})
    opts = cfg_json.get("options", {})
    mae = model.motion_autoencoder
    h, lam, feats = mae.encode(ref["input.s"])
    r_s = mae.motion_from_coefficients(lam)
    a = ref["input.a"]
    batch = a.shape[0]
    frames = int(ref["T"].reshape(-1)[0])
    wa = model.audio_encoder(a, frames)
    emo = sampler_cfg.get("emo", opts.get("emo"))
    label = str(emo).lower() if emo is not None else None
    probs_fn = None if model.emotion_encoder is None else (lambda: model.emotion_encoder.predict(a))
    we = emotion_condition(label if label not in (None, "none", "s2e") else None, batch=batch, probs_fn=probs_fn)
    nfe = int(sampler_cfg.get("nfe", opts.get("nfe", 10)))
    settings = SamplerSettings(steps=nfe - 1, method=sampler_cfg.get("ode_method", "euler"),
                               a_cfg=sampler_cfg.get("a_cfg_scale", 2.0), e_cfg=sampler_cfg.get("e_cfg_scale", 1.0),
                               r_cfg=sampler_cfg.get("r_cfg_scale", 1.0))
    noise = []
    k = 0
    while f"chunk{k}.x0" in ref:
        noise.append(ref[f"chunk{k}.x0"])
        k += 1
    record: dict[str, torch.Tensor] = {}
    sample = sample_motion(model.fmt, wr=r_s, wa=wa, we=we, settings=settings, noise=noise or None, record=record)
    out = {"enc.s_r": h, "enc.lambda": lam, "r_s": r_s, "wa": wa, "we": we, "sample": sample,
           "time_grid": torch.linspace(0, 1, nfe)}
    if "we_predicted" in ref and probs_fn is not None:
        out["we_predicted"] = probs_fn().unsqueeze(1)
    out.update(record)
    if "d_hat" in ref:
        index = ref.get("d_hat_frame_index")
        motion = sample if index is None else sample[:, index.long().reshape(-1)]
        out["d_hat"] = mae.decode(h, feats, motion)
    if not noise:
        comp.skipped.append("no recorded chunk noise: sampled stages not comparable")
        out = {k: v for k, v in out.items() if not k.startswith(("chunk", "sample", "d_hat"))}
    _compare_present(check, comp, ref, out)
    return comp


STAGES: dict[str, Callable] = {
    "motion_ae": _stage_motion_ae,
    "audio_encoder": _stage_audio,
    "emotion_encoder": _stage_emotion,
    "fmt": _stage_fmt,
    "sampler": _stage_sampler,
}


def replay_fixture(directory: str | Path, *, atol: float = 1e-4, rtol: float = 1e-4) -> list[Comparison]:
    """Re-run every recorded stage of a fixture directory and compare.

    Returns:
        One :class:`Comparison` per stage file present.
    """
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise DemoInputError(f"{directory}: no config.json (not a fixture directory)")
    cfg_json = json.loads(cfg_path.read_text())
    weights, _ = read_tensor_file(directory / cfg_json.get("weights_file", "weights.safetensors"))
    model = build_model(cfg_json, weights)
    check = _Checker(atol, rtol)
    results = []
    with torch.inference_mode():
        for stage, fn in STAGES.items():
            path = directory / f"{stage}.safetensors"
            if not path.is_file():
                continue
            ref, _ = read_tensor_file(path)
            args = (model, ref, check, cfg_json) if stage in ("fmt", "sampler") else (model, ref, check)
            comp = fn(*args)
            compared = set(comp.results)
            comp.skipped += sorted(k for k in ref if k not in compared and not k.startswith(("input.", "T"))
                                   and ".input." not in k and not k.endswith(".T") and k != "d_hat_frame_index")
            results.append(comp)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_core.tools.replay_fixture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every tensor")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        results = replay_fixture(args.directory, atol=args.atol, rtol=args.rtol)
    except (DemoInputError, CheckpointError, OSError, KeyError, json.JSONDecodeError) as exc:
        print(f"error: cannot replay {args.directory}: {exc}", file=sys.stderr)
        return 2
    if not results:
        print(f"error: {args.directory} has no stage files", file=sys.stderr)
        return 2
    failed = False
    for comp in results:
        status = "ok" if comp.ok else "FAIL"
        print(f"{comp.stage:16s} {status:4s} tensors {len(comp.results):3d}  worst |diff| {comp.worst:.3e}")
        for name, (err, excess, ok) in comp.results.items():
            if args.verbose or not ok:
                print(f"    {'ok ' if ok else 'BAD'} {name}: |diff| {err:.3e}" + ("" if ok else f" (over by {excess:.3e})"))
        if comp.skipped and args.verbose:
            print(f"    not compared: {', '.join(comp.skipped)}")
        failed |= not comp.ok
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
