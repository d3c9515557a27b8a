"""Training data: decoding/resampling/cropping, the clip cache, stage-1 samples and stage-2 windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.models.logmel_audio_encoder import LogMelAudioEncoder, LogMelAudioEncoderConfig
from demo_core.motion.factors import default_factor_layout
from demo_core.train.data import (
    ClipStore,
    Stage2Cache,
    build_stage1_batch,
    sample_stage1_picks,
    sample_stage2_batch,
    supervised_axes,
)
from demo_core.train.video import decode_clip


def test_decode_resamples_crops_and_normalises(clip_folder):
    clip = decode_clip(clip_folder / "clip_00000.mp4", size=32, fps=25.0)
    assert clip.frames.shape == (20, 32, 32, 3) and clip.frames.dtype == np.uint8  # 24 frames @ 30 fps → 20 @ 25
    assert abs(len(clip.audio) - 12800) < 1200  # 0.8 s at 16 kHz (+ AAC padding)
    assert abs(float(clip.audio.mean())) < 1e-5 and float(clip.audio.std()) == pytest.approx(1.0, abs=1e-3)
    labels = np.load(clip_folder / "clip_00000.labels.npz")
    idx = np.rint(np.arange(20) / 25.0 * 30.0).astype(int)  # nearest source frame of k / 25 s
    assert np.allclose(clip.labels["yaw"], labels["yaw"][idx])
    assert set(clip.labels) >= {"yaw", "gaze_x", "blink"}
    assert decode_clip(clip_folder / "clip_00002.mp4", size=32).labels == {}
    # centre crop = the middle 48×48 square of the 64×48 frames, at 48² no resampling: exact pixels
    centre = decode_clip(clip_folder / "clip_00000.mp4", size=48, crop="center")
    squashed = decode_clip(clip_folder / "clip_00000.mp4", size=48, crop="none")
    assert centre.frames.shape == squashed.frames.shape == (20, 48, 48, 3)
    import av

    with av.open(str(clip_folder / "clip_00000.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.array_equal(centre.frames[0], first[:, 8:56])


def test_clip_store_cache_round_trip(clip_folder, tmp_path):
    a = ClipStore.from_folder(clip_folder, size=64, fps=25.0, sampling_rate=16000, cache_dir=tmp_path)
    assert len(a) == 3 and len(list(tmp_path.glob("*.npz"))) == 3
    b = ClipStore.from_folder(clip_folder, size=64, fps=25.0, sampling_rate=16000, cache_dir=tmp_path)
    for x, y in zip(a.clips, b.clips):
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.audio, y.audio)
        assert x.labels.keys() == y.labels.keys()
    with pytest.raises(DemoInputError, match="no usable clips"):  # every clip is shorter than 21 frames
        ClipStore.from_folder(clip_folder, size=64, fps=25.0, sampling_rate=16000, cache_dir=tmp_path, min_frames=21)


def test_supervised_axes_of_the_default_layout():
    axes = supervised_axes(default_factor_layout())
    assert [(a[1], a[2], a[3]) for a in axes] == [
        ("lip", "open", "mouth_open"), ("lip", "width", "mouth_width"), ("lip", "round", "mouth_round"),
        ("pose", "yaw", "yaw"), ("pose", "pitch", "pitch"), ("pose", "roll", "roll"), ("pose", "tx", "tx"),
        ("pose", "ty", "ty"), ("pose", "scale", "scale"), ("gaze", "x", "gaze_x"), ("gaze", "y", "gaze_y"),
        ("blink", "closure", "blink")]
    assert [a[0] for a in axes] == [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14]


def test_stage1_batch_targets_and_audio_segments(clip_folder, clip_cache):
    store = ClipStore.from_folder(clip_folder, size=64, fps=25.0, sampling_rate=16000, cache_dir=clip_cache)
    layout = default_factor_layout()
    enc = LogMelAudioEncoder(LogMelAudioEncoderConfig(n_mels=16, channels=8, dilations=(1, 2), dim_feature=8, dim_a=8))
    g = torch.Generator().manual_seed(0)
    picks = sample_stage1_picks(store, 6, 3, g)
    assert picks.shape == (6, 3)
    picks[0] = torch.tensor([0, 4, 5])
    picks[1] = torch.tensor([2, 0, 17])
    batch = build_stage1_batch(store, picks, frames=3, layout=layout, context=enc.context_frames, fps=25.0,
                               sampling_rate=16000, jitter=torch.rand(6, 5, generator=g), eps=torch.zeros(6, 3, 20))
    assert batch.source.shape == (6, 3, 64, 64) and batch.driving.shape == (6, 3, 3, 64, 64)
    assert float(batch.source.min()) >= -1.0 and float(batch.source.max()) <= 1.0
    assert torch.equal(batch.driving[0, 0], torch.from_numpy(store.clips[0].frames[5]).float().div(127.5).sub(1).permute(2, 0, 1))
    yaw = store.clips[0].labels["yaw"][5:8]
    assert torch.allclose(batch.targets[0, :, 3], torch.from_numpy(yaw) / 30.0)  # after the 3 lip axes
    assert torch.allclose(batch.targets[0, :, 8], torch.zeros(3))  # scale 1 → coefficient 0
    has = [0] + list(range(3, 12))  # these test clips label mouth_open but not mouth width/rounding
    assert bool(batch.target_mask[0][:, has].all()) and not bool(batch.target_mask[0][:, 1:3].any())
    assert not bool(batch.target_mask[1].any())
    assert batch.gaze_view_mask.tolist()[:2] == [False, True]
    assert torch.equal(batch.gaze_view[0], batch.driving[0]) and not torch.equal(batch.gaze_view[1], batch.driving[1])
    for i in (0, 1):  # each segment's features equal the full clip's at the driving frames
        c, _, k0 = picks[i].tolist()
        clip = store.clips[c]
        full = enc.features(torch.from_numpy(clip.audio)[None], clip.num_frames)[0]
        off = batch.audio_offset[i]
        seg = enc.features(batch.audio[i][None], batch.audio_frames[i])[0, off:off + 3]
        want = full[torch.clamp(torch.arange(k0, k0 + 3), max=clip.num_frames - 1)]
        assert torch.allclose(seg[: clip.num_frames - k0], want[: clip.num_frames - k0], atol=1e-5)


def test_stage2_windows_and_first_windows():
    Q, _ = torch.linalg.qr(torch.randn(16, 4))
    lam = [torch.arange(30, dtype=torch.float32)[:, None].expand(30, 4).clone(), torch.ones(5, 4)]
    feats = [torch.arange(30, dtype=torch.float32)[:, None].expand(30, 3).clone(), torch.ones(5, 3)]
    cache = Stage2Cache(lam=lam, feats=feats)
    b = sample_stage2_batch(cache, Q, batch=64, window=6, prefix=2, p_first=0.3, p_drop_audio=0.5, p_drop_emotion=0.0,
                            p_drop_reference=1.0, generator=torch.Generator().manual_seed(0))
    assert b.x_1.shape == b.x_0.shape == (64, 6, 16) and b.prev_x.shape == (64, 2, 16) and b.wr.shape == (64, 16)
    assert b.feat.shape == (64, 6, 3) and b.prev_feat.shape == (64, 2, 3) and b.t.shape == (64,)
    assert 0 < int(b.first.sum()) < 64 and float(b.keep_emotion.min()) == 1.0 and float(b.keep_reference.max()) == 0.0
    coeff = b.x_1 @ Q  # back to coefficients
    for i in range(64):
        if bool(b.first[i]):
            assert float(b.prev_x[i].abs().max()) == 0.0 and float(b.prev_feat[i].abs().max()) == 0.0
        if float(b.feat[i, 0, 0]) != 1.0 or not torch.allclose(b.feat[i], torch.ones(6, 3)):
            start = float(b.feat[i, 0, 0])  # clip 0: value = frame index; window continues its prefix
            assert torch.allclose(coeff[i, :, 0], start + torch.arange(6.0), atol=1e-4)
            if not bool(b.first[i]):
                assert torch.allclose(b.prev_feat[i, :, 0], start - 2 + torch.arange(2.0))


def test_stage2_subspace_noise_lies_in_the_span_of_the_dictionary():
    Q, _ = torch.linalg.qr(torch.randn(16, 4))
    cache = Stage2Cache(lam=[torch.randn(30, 4)], feats=[torch.randn(30, 3)])
    kw = dict(batch=256, window=6, prefix=2, p_first=0.3, p_drop_audio=0.0, p_drop_emotion=0.0, p_drop_reference=0.0)
    b = sample_stage2_batch(cache, Q, generator=torch.Generator().manual_seed(0), subspace=True, **kw)
    coords = b.x_0 @ Q  # (B, L, 4)
    assert torch.allclose(coords @ Q.T, b.x_0, atol=1e-5)  # nothing outside span(Q)
    assert abs(float(coords.std()) - 1.0) < 0.05  # standard normal inside it
    full = sample_stage2_batch(cache, Q, generator=torch.Generator().manual_seed(0), **kw)
    assert float((full.x_0 - (full.x_0 @ Q) @ Q.T).abs().max()) > 0.5


def test_flow_scale_from_cache_and_scaled_stage2_noise():
    from demo_core.train.data import flow_scale_from_cache
    g = torch.Generator().manual_seed(1)
    lam = torch.randn(400, 4, generator=g) * torch.tensor([2.0, 0.5, 1e-4, 1.0])
    s = flow_scale_from_cache(Stage2Cache(lam=[lam[:150], lam[150:]], feats=[torch.zeros(150, 3), torch.zeros(250, 3)]))
    assert torch.allclose(s[[0, 1, 3]], torch.tensor([2.0, 0.5, 1.0]), rtol=0.15)
    assert float(s[2]) == pytest.approx(0.05 * float(s.max()))  # floored
    Q, _ = torch.linalg.qr(torch.randn(16, 4, generator=g))
    cache = Stage2Cache(lam=[torch.randn(30, 4)], feats=[torch.randn(30, 3)])
    b = sample_stage2_batch(cache, Q, batch=512, window=6, prefix=2, p_first=0.3, p_drop_audio=0.0, p_drop_emotion=0.0,
                            p_drop_reference=0.0, generator=torch.Generator().manual_seed(0), subspace=True, scale=s)
    spread = (b.x_0 @ Q).flatten(0, 1).std(dim=0)
    assert torch.allclose(spread, s, rtol=0.05)


def _with_regions(clip_folder, tmp_path, n=24, h=48, w=64):
    """A copy of clip 0 with a region sidecar whose frame k marks column k (and its frame index in row 0)."""
    import shutil

    for suffix in (".mp4", ".labels.npz"):
        shutil.copy(clip_folder / f"clip_00000{suffix}", tmp_path / f"clip_00000{suffix}")
    region = np.zeros((n, h, w), np.uint8)
    for k in range(n):
        region[k, 10:40, 8 + k] = 255
    np.save(tmp_path / "clip_00000.regions.npy", region)
    return tmp_path / "clip_00000.mp4", region


def test_decode_reads_the_region_sidecar_with_the_frames_indices_and_crop(clip_folder, tmp_path):
    video, region = _with_regions(clip_folder, tmp_path)
    clip = decode_clip(video, size=48, crop="center")  # 24 frames @ 30 fps → 20 @ 25, middle 48 columns
    idx = np.rint(np.arange(20) / 25.0 * 30.0).astype(int)
    assert clip.regions.shape == (20, 48, 48) and clip.regions.dtype == np.uint8
    assert np.array_equal(clip.regions, region[idx][:, :, 8:56])
    assert decode_clip(clip_folder / "clip_00000.mp4", size=48).regions is None
    small = decode_clip(video, size=24).regions  # area-resized like the frames: soft edges, same mass
    assert small.shape == (20, 24, 24) and 0 < int(small.max()) <= 255


@pytest.mark.parametrize("bad", ["shape", "parts", "dtype", "junk"])
def test_a_bad_region_sidecar_is_named(clip_folder, tmp_path, bad):
    video, region = _with_regions(clip_folder, tmp_path)
    path = tmp_path / "clip_00000.regions.npy"
    if bad == "shape":
        np.save(path, region[:, :, :32])
    elif bad == "parts":
        np.save(path, np.stack([region] * 3, axis=1))  # three maps per frame
    elif bad == "dtype":
        np.save(path, region.astype(np.float32))
    else:
        path.write_bytes(b"not a numpy file")
    with pytest.raises(DemoInputError, match="regions.npy"):
        decode_clip(video, size=32)


def test_regions_survive_the_cache_and_reach_the_stage1_batch(clip_folder, tmp_path):
    import shutil

    (tmp_path / "data").mkdir()
    _with_regions(clip_folder, tmp_path / "data")
    shutil.copy(clip_folder / "clip_00002.mp4", tmp_path / "data" / "clip_00002.mp4")  # no sidecar, no labels
    kw = dict(size=48, fps=25.0, sampling_rate=16000, cache_dir=tmp_path / "cache")
    a = ClipStore.from_folder(tmp_path / "data", **kw)
    b = ClipStore.from_folder(tmp_path / "data", **kw)  # from the cache
    assert np.array_equal(a.clips[0].regions, b.clips[0].regions) and b.clips[1].regions is None
    layout = default_factor_layout()
    picks = torch.tensor([[0, 3, 4], [1, 0, 2]])
    batch = build_stage1_batch(b, picks, frames=3, layout=layout, context=2, fps=25.0, sampling_rate=16000,
                               jitter=torch.zeros(2, 5), eps=torch.zeros(2, 3, layout.total))
    assert batch.region.shape == (2, 3, 1, 48, 48)
    assert torch.equal(batch.region[0, :, 0], torch.from_numpy(b.clips[0].regions[4:7]).float() / 255.0)
    assert float(batch.region[1].abs().sum()) == 0.0
    assert batch.parts is None and not bool(batch.parts_mask.any())  # one-map sidecars: no mouth/eye parts


def test_two_part_region_sidecars_give_mouth_and_eye_maps(clip_folder, tmp_path):
    import shutil

    (tmp_path / "data").mkdir()
    _, union = _with_regions(clip_folder, tmp_path / "data")
    two = np.zeros((union.shape[0], 2) + union.shape[1:], np.uint8)
    two[:, 0, 25:40], two[:, 1, 10:25] = union[:, 25:40], union[:, 10:25]  # lower half "mouth", upper "eyes"
    np.save(tmp_path / "data" / "clip_00000.regions.npy", two)
    shutil.copy(clip_folder / "clip_00002.mp4", tmp_path / "data" / "clip_00002.mp4")  # no sidecar
    store = ClipStore.from_folder(tmp_path / "data", size=48, fps=25.0, sampling_rate=16000,
                                  cache_dir=tmp_path / "cache")
    idx = np.rint(np.arange(20) / 25.0 * 30.0).astype(int)
    assert store.clips[0].regions.shape == (20, 2, 48, 48)
    assert np.array_equal(store.clips[0].regions, two[idx][..., 8:56])  # the frames' indices and crop, per map
    layout = default_factor_layout()
    batch = build_stage1_batch(store, torch.tensor([[0, 3, 4], [1, 0, 2]]), frames=3, layout=layout, context=2,
                               fps=25.0, sampling_rate=16000, jitter=torch.zeros(2, 5),
                               eps=torch.zeros(2, 3, layout.total))
    assert batch.parts.shape == (2, 3, 2, 48, 48) and batch.parts_mask.tolist() == [True, False]
    parts = torch.from_numpy(store.clips[0].regions[4:7]).float() / 255.0
    assert torch.equal(batch.parts[0], parts) and float(batch.parts[1].abs().sum()) == 0.0
    assert torch.equal(batch.region[0, :, 0], parts.amax(dim=1))  # the reconstruction weight: their union


def test_smooth_cache_filters_only_the_named_factor():
    from demo_core.motion.edits import gaussian_kernel
    from demo_core.train.data import smooth_cache

    layout = default_factor_layout()
    g = torch.Generator().manual_seed(3)
    lam = torch.randn(40, layout.total, generator=g)
    lam[:, layout.slices()["pose"].start] = 2.5  # a constant coefficient stays constant (edge padding)
    cache = Stage2Cache(lam=[lam, lam[:1]], feats=[torch.zeros(40, 4), torch.zeros(1, 4)])
    out = smooth_cache(cache, layout, {"pose": 1.5, "gaze": 0.0})
    pose = layout.slices()["pose"]
    other = [i for i in range(layout.total) if not pose.start <= i < pose.stop]
    assert torch.equal(out.lam[0][:, other], lam[:, other]) and torch.equal(out.lam[1], lam[:1])
    assert torch.allclose(out.lam[0][:, pose.start], torch.full((40,), 2.5))
    w = gaussian_kernel(1.5)
    r = (len(w) - 1) // 2
    want = (lam[20 - r:20 + r + 1, pose.start + 1].double() * w).sum()  # an interior frame: the plain convolution
    assert float(out.lam[0][20, pose.start + 1]) == pytest.approx(float(want), abs=1e-5)
    jerk = lambda x: float((x[2:] - 2 * x[1:-1] + x[:-2]).pow(2).mean())  # noqa: E731
    assert jerk(out.lam[0][:, pose.start + 1]) < 0.1 * jerk(lam[:, pose.start + 1])
    assert out.feats is cache.feats
    with pytest.raises(DemoInputError, match="unknown factor"):
        smooth_cache(cache, layout, {"head": 1.0})


def test_counterfactual_frames_redraw_the_clip_with_one_factor_swapped(synthetic_clip_folder, clip_folder, tmp_path):
    import shutil

    from demo_core.synthetic.dataset import load_identity
    from demo_core.synthetic.head import HeadRenderer
    from demo_core.synthetic.params import FACTOR_NAMES, PARAM_NAMES, FrameParams
    from demo_core.train.video import _resize

    data = tmp_path / "data"
    shutil.copytree(synthetic_clip_folder, data)
    for suffix in (".mp4", ".labels.npz"):  # a clip with labels but no face
        shutil.copy(clip_folder / f"clip_00000{suffix}", data / f"clip_00002{suffix}")
    kw = dict(size=32, fps=25.0, sampling_rate=16000, cache_dir=tmp_path / "cache")
    ClipStore.from_folder(data, **kw)
    store = ClipStore.from_folder(data, **kw)  # the face survives the cache
    assert [c.identity_size for c in store.clips] == [64, 64, 0] and store.clips[2].identity == ""
    assert store.renderer(0) is not None and store.renderer(2) is None
    layout = default_factor_layout()
    axes = supervised_axes(layout)
    T = store.clips[0].num_frames
    picks = torch.tensor([[0, 0, 3], [1, 0, 2], [2, 0, 0]])

    def u(clip, frame, factor):  # the uniform numbers that pick a donor clip, its frame and a factor
        return [(clip + 0.5) / 3, (frame + 0.5) / T, (factor + 0.5) / 4]

    counter = torch.tensor([[u(0, 3, 1), u(0, 4, 0)],  # sample 0: itself (pose), itself (lip)
                            [u(0, 7, 1), u(2, 1, 2)],  # sample 1: pose of clip 0 frame 7; a donor without a face
                            [u(0, 1, 3), u(0, 1, 3)]])  # sample 2: a clip without a face
    batch = build_stage1_batch(store, picks, frames=2, layout=layout, context=2, fps=25.0, sampling_rate=16000,
                               jitter=torch.zeros(3, 5), eps=torch.zeros(3, 2, 20), counter=counter)
    assert batch.counter.shape == (3, 2, 3, 32, 32)
    assert batch.counter_block.tolist() == [[1, 0], [1, -1], [-1, -1]]  # lip 0, pose 1 in the layout
    # a clip drawn again with its own parameters is its own frame (area-resized 64 → 32, 8-bit rounding)
    assert float((batch.counter[0] - batch.driving[0]).abs().max()) <= 2.01 / 127.5
    assert torch.allclose(batch.counter_targets[0], batch.targets[0])
    clip1, clip0 = store.clips[1].labels, store.clips[0].labels
    values = {n: torch.tensor([clip1[n][2]]) for n in PARAM_NAMES}
    values.update({n: torch.tensor([clip0[n][7]]) for n in FACTOR_NAMES["pose"]})
    want = HeadRenderer(load_identity({"identity_json": store.clips[1].identity}), 64).render(FrameParams.from_dict(values))
    want = _resize(want.permute(0, 2, 3, 1), 32)[0].permute(2, 0, 1) * 2.0 - 1.0
    assert float((batch.counter[1, 0] - want).abs().max()) <= 1.01 / 127.5
    yaw = [j for j, a in enumerate(axes) if a[3] == "yaw"][0]
    mouth = [j for j, a in enumerate(axes) if a[3] == "mouth_open"][0]
    assert float(batch.counter_targets[1, 0, yaw]) == pytest.approx(
        float(layout.block("pose").axis_coefficient("yaw", clip0["yaw"][7])))
    assert float(batch.counter_targets[1, 0, mouth]) == pytest.approx(float(batch.targets[1, 0, mouth]))
    assert float(batch.counter[2].abs().sum()) == 0.0
    plain = build_stage1_batch(store, picks, frames=2, layout=layout, context=2, fps=25.0, sampling_rate=16000,
                               jitter=torch.zeros(3, 5), eps=torch.zeros(3, 2, 20))
    assert plain.counter is None and plain.counter_block is None
