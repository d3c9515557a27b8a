"""Synthetic talking-head clips: generate, write to disk, load back (format in the package doc).

Command line::

    python -m demo_core.synthetic.dataset OUT --num-clips N --size 64 --split train --seed S
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .head import render
from .identity import Identity, sample_identity
from .media import atomic_path, read_audio, read_video, write_mp4, write_wav
from .motion import sample_blinks, sample_gaze, sample_pose
from .params import FACTOR_NAMES, PARAM_NAMES, PARAM_UNITS, FrameParams
from .regions import feature_regions, regions_path, save_regions, write_regions
from .sentences import SENTENCES, sentence_indices
from .speech import SAMPLE_RATE, Phone, SpeechClip, espeak_available, load_arctic, synthesize_sentence
from .visemes import VISEME_NAMES, mouth_track, num_frames, viseme_track

__all__ = ["GENERATOR_VERSION", "generate_clip", "write_clip", "write_dataset", "load_clip", "list_clips",
           "load_identity", "identity_seed_for"]

GENERATOR_VERSION = "demo-synthetic/1"
_MEDIA_SUFFIXES = (".labels.npz", ".frames.npy", ".regions.npy", ".mp4", ".wav")


def identity_seed_for(index: int, split: str, seed: int) -> int:
    """Identity seed of pool member ``index``: even for train, odd for test, so they never overlap."""
    return 2 * (int(seed) * 100_000 + int(index)) + (1 if split == "test" else 0)


def _pad(speech: SpeechClip, before: float, after: float, noise: float, gain: float,
         generator: torch.Generator) -> SpeechClip:
    """Add silence before/after (shifting the phones), a faint noise floor, and a peak gain."""
    sr = speech.sample_rate
    nb, na = int(round(before * sr)), int(round(after * sr))
    wav = np.concatenate([np.zeros(nb, np.float32), speech.waveform, np.zeros(na, np.float32)])
    wav = wav * (gain / max(float(np.abs(wav).max()), 1e-6))
    wav = wav + noise * torch.randn(len(wav), generator=generator).numpy()
    sil = "sil" if speech.alphabet == "arpabet" else "_"
    shift = nb / sr
    phones = [Phone(0.0, shift, sil)] if nb else []
    phones += [Phone(p.start + shift, p.end + shift, p.phone) for p in speech.phones]
    if na:
        phones.append(Phone(phones[-1].end, len(wav) / sr, sil))
    return SpeechClip(np.clip(wav, -1, 1).astype(np.float32), sr, phones, speech.text, speech.voice, speech.alphabet)


def generate_clip(source: str | SpeechClip | tuple[str | Path, str | Path], identity_seed: int, *,
                  size: int = 64, fps: float = 25.0, generator: torch.Generator | None = None,
                  mode: str | None = None, augment_audio: bool = True) -> dict:
    """Make one clip: speech, per-frame factors and rendered frames.

    Args:
        source: a sentence (synthesised by espeak with a random voice), a :class:`SpeechClip`, or
            ``(wav_path, lab_path)`` of an HTS-labelled recording.
        identity_seed: seed of the face (:func:`~.identity.sample_identity`).
        size: frame height = width in pixels. fps: video frame rate.
        generator: randomness for voice, padding, motion (default: seeded with ``identity_seed``).
        mode: motion style ``"talk"`` / ``"idle"`` (default: talk with probability 0.85).
        augment_audio: add 0-0.4 s leading / 0-0.3 s trailing silence, noise floor and random gain.

    Returns:
        dict with ``frames`` (T,3,size,size) float32 in [0,1], ``waveform`` float32 numpy (S,),
        ``sample_rate``, ``fps``, ``params`` (:class:`FrameParams`, T frames), ``visemes`` int64 (T,),
        ``phones``, ``blink_onsets`` (s), ``identity``, ``identity_seed``, ``text``, ``voice``,
        ``alphabet``, ``mode``; T = ceil(S / sample_rate * fps).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(int(identity_seed))
    if isinstance(source, str):
        speech = synthesize_sentence(source, g)
    elif isinstance(source, SpeechClip):
        speech = source
    else:
        speech = load_arctic(*source)
    r = torch.rand(6, generator=g).tolist()
    if augment_audio:
        speech = _pad(speech, 0.4 * r[0], 0.3 * r[1], 10 ** (-4 + 1.5 * r[2]), 0.35 + 0.55 * r[3], g)
    mode = mode or ("talk" if r[4] < 0.85 else "idle")
    n = num_frames(speech.seconds, fps)
    factors = mouth_track(speech.phones, n, fps, gain=0.85 + 0.25 * r[5])
    factors.update(sample_pose(n, fps, g, mode))
    factors.update(sample_gaze(n, fps, g, mode))
    factors["blink"], onsets = sample_blinks(n, fps, g, mode)
    params = FrameParams.from_dict(factors).clamped()
    identity = sample_identity(int(identity_seed))
    return {
        "frames": render(params, identity, size), "waveform": speech.waveform, "sample_rate": speech.sample_rate,
        "fps": float(fps), "params": params, "visemes": viseme_track(speech.phones, n, fps),
        "phones": speech.phones, "blink_onsets": onsets, "identity": identity, "identity_seed": int(identity_seed),
        "text": speech.text, "voice": speech.voice, "alphabet": speech.alphabet, "mode": mode,
    }


def write_clip(prefix: str | Path, clip: dict, *, lossless: bool = True, frames_npy: bool = False,
               regions: bool = False) -> dict:
    """Write ``prefix.wav``, ``prefix.mp4`` (+ ``prefix.frames.npy``, + ``prefix.regions.npy``: the mouth and
    eye regions, :mod:`.regions`), then ``prefix.labels.npz``.

    The labels file is written last, so its presence marks a complete clip. Returns the manifest entry.
    """
    prefix = Path(prefix)
    frames = (clip["frames"].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    write_wav(prefix.with_name(prefix.name + ".wav"), clip["waveform"], clip["sample_rate"])
    write_mp4(prefix.with_name(prefix.name + ".mp4"), frames, clip["fps"], clip["waveform"], clip["sample_rate"],
              lossless=lossless)
    if frames_npy:
        with atomic_path(prefix.with_name(prefix.name + ".frames.npy")) as tmp:
            np.save(tmp, frames)
    if regions:
        region = feature_regions(clip["params"], clip["identity"], frames.shape[1], parts=True)
        save_regions(regions_path(prefix), region)
    labels = {k: v.numpy().astype(np.float32) for k, v in clip["params"].to_dict().items()}
    n = len(clip["params"])
    labels.update(
        frame_times=(np.arange(n) / clip["fps"]).astype(np.float32), viseme=clip["visemes"].numpy().astype(np.int16),
        viseme_names=np.array(VISEME_NAMES), phone_start=np.array([p.start for p in clip["phones"]], np.float32),
        phone_end=np.array([p.end for p in clip["phones"]], np.float32),
        phone=np.array([p.phone for p in clip["phones"]], dtype=str), blink_onsets=clip["blink_onsets"].numpy(),
        identity_seed=np.int64(clip["identity_seed"]), identity_json=np.array(json.dumps(clip["identity"].to_dict())),
        fps=np.float32(clip["fps"]), sample_rate=np.int32(clip["sample_rate"]), num_frames=np.int32(n),
        size=np.int32(frames.shape[1]), text=np.array(clip["text"]), voice=np.array(clip["voice"]),
        alphabet=np.array(clip["alphabet"]), mode=np.array(clip["mode"]), version=np.array(GENERATOR_VERSION),
    )
    with atomic_path(prefix.with_name(prefix.name + ".labels.npz")) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **labels)
    return _entry(prefix, labels)


def _entry(prefix: Path, labels) -> dict:
    n, fps, text = int(labels["num_frames"]), float(labels["fps"]), str(labels["text"])
    return {"stem": f"{prefix.parent.name}/{prefix.name}", "identity_seed": int(labels["identity_seed"]),
            "sentence": SENTENCES.index(text) if text in SENTENCES else None, "text": text,
            "voice": str(labels["voice"]), "mode": str(labels["mode"]), "num_frames": n, "seconds": round(n / fps, 4)}


def _speech_sources(split: str) -> list:
    """Sentences for the split, or the labelled ARCTIC clip when espeak is unavailable."""
    if espeak_available():
        return [SENTENCES[i] for i in sentence_indices(split)]
    import os

    shared = Path(os.environ.get("DEMO_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
    wav, lab = shared / "data/speech/arctic_a0009.wav", shared / "data/speech/arctic_a0009_phone.lab"
    if not (wav.exists() and lab.exists()):
        raise RuntimeError("espeak-ng is unavailable (pip install espeakng-loader) and no labelled fallback "
                           f"speech was found at {lab}")
    return [(wav, lab)]


def write_dataset(out_dir: str | Path, *, num_clips: int, size: int = 64, fps: float = 25.0, split: str = "train",
                  seed: int = 0, progress: bool = True, num_identities: int | None = None, lossless: bool = True,
                  frames_npy: bool = False, mode: str | None = None, regions: bool = False) -> Path:
    """Write ``num_clips`` clips into ``out_dir/<split>/`` and (re)write ``out_dir/manifest.json``.

    Test clips use held-out sentences and identities (odd identity seeds; train ones are even).
    Complete clips already on disk are kept (resumable). Returns the manifest path. ``mode`` fixes the
    motion style of every clip (``talk``, ``idle``, ``wide``); default: talk or idle at random. ``regions``
    also writes the feature-region sidecars that stage 1 can weight its reconstruction loss with.
    """
    if split not in ("train", "test"):
        raise ValueError(f"write_dataset: split must be 'train' or 'test', got {split!r}")
    out_dir = Path(out_dir)
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for key, val in (("fps", float(fps)), ("size", int(size))):
        if manifest.get(key, val) != val:
            raise ValueError(f"write_dataset: {out_dir} holds {key}={manifest[key]}, asked for {val}")
    sources = _speech_sources(split)
    order = torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed * 2 + (split == "test")))
    pool = num_identities or max(1, min(num_clips, 256))
    it = range(num_clips)
    if progress:
        try:
            from tqdm import tqdm

            it = tqdm(it, desc=f"synthetic {split}", unit="clip")
        except ImportError:  # pragma: no cover
            pass
    entries = []
    for i in it:
        prefix = folder / f"clip_{i:05d}"
        labels_path = prefix.with_name(prefix.name + ".labels.npz")
        if labels_path.exists():
            with np.load(labels_path, allow_pickle=False) as lab:
                entries.append(_entry(prefix, lab))
            if regions:
                write_regions(labels_path)  # a clip written without them gets them now (no-op when present)
            continue
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + i) * 2 + (split == "test"))
        ident = identity_seed_for(int(torch.randint(pool, (), generator=g)), split, seed)
        src = sources[int(order[i % len(sources)])]
        clip = generate_clip(src, ident, size=size, fps=fps, generator=g, mode=mode)
        entries.append(write_clip(prefix, clip, lossless=lossless, frames_npy=frames_npy, regions=regions))
    manifest.update(
        generator=GENERATOR_VERSION, fps=float(fps), size=int(size), sample_rate=SAMPLE_RATE,
        param_names=list(PARAM_NAMES), factor_names={k: list(v) for k, v in FACTOR_NAMES.items()},
        units=PARAM_UNITS, viseme_names=list(VISEME_NAMES),
        video="h264 yuv444p qp0" if lossless else "h264 yuv420p crf10",
    )
    manifest.setdefault("splits", {})[split] = {"seed": int(seed), "num_clips": int(num_clips), "clips": entries}
    manifest["clips"] = [e["stem"] for s in ("train", "test") for e in manifest["splits"].get(s, {}).get("clips", [])]
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest_path


def _stem(path: str | Path) -> Path:
    p = str(path)
    for suf in _MEDIA_SUFFIXES:
        if p.endswith(suf):
            return Path(p[: -len(suf)])
    return Path(p)


def list_clips(folder: str | Path) -> list[Path]:
    """Sorted clip stems (path without suffix) of every video in ``folder``."""
    return sorted(_stem(p) for p in Path(folder).glob("*.mp4") if not p.name.startswith("."))


def load_clip(path: str | Path, sample_rate: int = SAMPLE_RATE) -> dict:
    """Read a clip back: ``path`` is the stem or any of its files.

    Returns:
        dict with ``frames`` float32 (T,3,H,W) in [0,1] (from ``.frames.npy`` when present, else the
        mp4), ``waveform`` float32 (S,) (the wav when present, else the mp4's audio), ``sample_rate``,
        ``fps``, ``labels`` (dict of numpy arrays, or None without a sidecar) and ``params``
        (:class:`FrameParams` or None).
    """
    stem = _stem(path)
    npy, mp4, wav, lab = (Path(f"{stem}{s}") for s in (".frames.npy", ".mp4", ".wav", ".labels.npz"))
    labels = params = None
    if lab.exists():
        with np.load(lab, allow_pickle=False) as z:
            labels = {k: z[k] for k in z.files}
        params = FrameParams.from_dict({k: torch.from_numpy(labels[k]) for k in PARAM_NAMES if k in labels})
    if npy.exists() and labels is not None:
        video, fps = np.load(npy, allow_pickle=False), float(labels["fps"])
    else:
        video, fps = read_video(mp4)
    frames = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float().div_(255.0)
    waveform = torch.from_numpy(read_audio(wav if wav.exists() else mp4, sample_rate))
    return {"frames": frames, "waveform": waveform, "sample_rate": sample_rate, "fps": fps, "labels": labels,
            "params": params}


def load_identity(labels: dict) -> Identity:
    """The :class:`Identity` stored in a labels sidecar."""
    return Identity.from_dict(json.loads(str(labels["identity_json"])))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.synthetic.dataset", description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder (clips go to OUT/<split>/, manifest to OUT/manifest.json)")
    ap.add_argument("--num-clips", type=int, required=True)
    ap.add_argument("--size", type=int, default=64, help="frame size in pixels (default 64)")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--split", choices=("train", "test"), default="train")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-identities", type=int, default=None, help="identity pool size (default min(N, 256))")
    ap.add_argument("--frames-npy", action="store_true", help="also store exact uint8 frames as .frames.npy")
    ap.add_argument("--regions", action="store_true",
                    help="also store the mouth/eye region maps as .regions.npy (stage-1 stage1.weights.recon_region)")
    ap.add_argument("--compat-video", action="store_true", help="yuv420p crf 10 instead of lossless 4:4:4")
    ap.add_argument("--mode", choices=("talk", "idle", "wide"), default=None,
                    help="motion style of every clip (default: talk or idle at random)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    path = write_dataset(a.out, num_clips=a.num_clips, size=a.size, fps=a.fps, split=a.split, seed=a.seed,
                         progress=not a.no_progress, num_identities=a.num_identities,
                         lossless=not a.compat_video, frames_npy=a.frames_npy, mode=a.mode, regions=a.regions)
    print(f"wrote {a.num_clips} {a.split} clips; manifest: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
