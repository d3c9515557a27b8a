"""Factor-control nodes: Demo Edit Factors, Demo Mix Motion, conditioned Demo Sample Motion, Demo Motion From
Video as a track, and Demo Calibrate Factors (FLOAT-family sidecars)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import nodes
from demo_core.models.demo_model import DemoModel
from demo_core.motion.factor_space import FactorSpace
from demo_core.motion.factors import FactorLayout
from demo_core.motion.track import MotionTrack
from demo_core.pipeline import fit_track_frames, track_with_model_basis
from tests.conftest import TINY, require_shared
from tests.models.demo_tiny import tiny_demo_config
from tests.nodes.conftest import portrait_image, speech
from tests.nodes.test_nodes import run, run_ui

NO_EDITS = dict(lip_gain=1.0, pose_gain=1.0, gaze_gain=1.0, blink_gain=1.0, yaw_offset=0.0, pitch_offset=0.0,
                roll_offset=0.0, gaze_x_offset=0.0, gaze_y_offset=0.0, lip_smoothing=0.0, pose_smoothing=0.0,
                gaze_smoothing=0.0, blinks="keep", blink_rate=17.0, blink_times="", freeze_pose=False,
                look_at_camera=False, blink_seed=0, keyframes="")
FACTORS = ("lip", "pose", "gaze", "blink", "residual")


@pytest.fixture(scope="module")
def demo_tiny():
    """A random tiny DEMO-format model (factor layout with semantic axes), CPU."""
    torch.manual_seed(0)
    return DemoModel(tiny_demo_config()).eval().requires_grad_(False)


@pytest.fixture(autouse=True)
def _output_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_OUTPUT_DIR", str(tmp_path / "output"))


def demo_track(model, frames=100, batch=1, seed=0, fps=25.0, relative=False) -> MotionTrack:
    g = torch.Generator().manual_seed(seed)
    track = MotionTrack(torch.randn(batch, frames, 32, generator=g), fps, relative=relative)
    return track_with_model_basis(model, track)


def space_of(track) -> FactorSpace:
    return FactorSpace.from_track(track)


def coords(track, factor, space=None):
    return (space or space_of(track)).factor_coordinates(track.latents, factor)


def edit(motion, model=None, **changes):
    inputs = {**NO_EDITS, **changes, "motion": motion}
    if model is not None:
        inputs["model"] = model
    return run("DemoEditFactors", **inputs)[0]


def assert_only_changed(before, after, changed, space=None):
    space = space or space_of(before)
    for factor in space.layout.names:
        same = torch.allclose(coords(before, factor, space), coords(after, factor, space), atol=1e-5)
        assert same != (factor in changed), f"{factor} {'unchanged' if same else 'changed'}"
    torch.testing.assert_close(space.orthogonal_part(after.latents), space.orthogonal_part(before.latents),
                               atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- Demo Edit Factors


@pytest.mark.parametrize("changes, factor", [
    ({"lip_gain": 0.0}, "lip"), ({"pose_gain": 2.0}, "pose"), ({"gaze_gain": 0.5}, "gaze"),
    ({"blink_gain": 1.5}, "blink"), ({"yaw_offset": 15.0}, "pose"), ({"gaze_y_offset": -0.3}, "gaze"),
    ({"pose_smoothing": 3.0}, "pose"), ({"lip_smoothing": 2.0}, "lip"), ({"freeze_pose": True}, "pose"),
    ({"look_at_camera": True}, "gaze"), ({"blinks": "none"}, "blink"), ({"blinks": "natural"}, "blink"),
    ({"keyframes": '{"pose.yaw": [[0, 0], [3, 15]]}'}, "pose"), ({"keyframes": '{"lip.gain": [[0, 2]]}'}, "lip"),
])
def test_an_edit_changes_only_its_factor(demo_tiny, changes, factor):
    track = demo_track(demo_tiny)
    edited = edit(track, **changes)
    assert edited.latents.shape == track.latents.shape and edited.fps == track.fps
    assert_only_changed(track, edited, {factor})


def test_edits_in_axis_units(demo_tiny):
    track = demo_track(demo_tiny)
    space = space_of(track)
    yaw = lambda t: space.axis_value(t.latents, "pose", "yaw")[0]  # noqa: E731  degrees
    turned = edit(track, yaw_offset=15.0)
    torch.testing.assert_close(yaw(turned) - yaw(track), torch.full((100,), 15.0), atol=1e-4, rtol=0)
    keyed = edit(track, keyframes='{"pose.yaw": [[0, 0], [3, 15]]}')
    delta = yaw(keyed) - yaw(track)
    assert abs(delta[0]) < 1e-4 and abs(delta[75] - 15.0) < 1e-4 and abs(delta[99] - 15.0) < 1e-4  # 3 s at 25 fps
    assert 0 < delta[40] < 15
    lips = coords(edit(track, lip_gain=0.0), "lip")
    torch.testing.assert_close(lips, coords(track, "lip").mean(1, keepdim=True).expand_as(lips), atol=1e-5, rtol=0)
    still = coords(edit(track, freeze_pose=True), "pose")
    torch.testing.assert_close(still, coords(track, "pose")[:, :1].expand_as(still), atol=1e-5, rtol=0)
    gaze = edit(track, look_at_camera=True, gaze_x_offset=0.25)
    torch.testing.assert_close(space.axis_value(gaze.latents, "gaze", "x"), torch.full((1, 100), 0.25), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(space.axis_value(gaze.latents, "gaze", "y"), torch.zeros(1, 100), atol=1e-5, rtol=0)


def test_blink_modes(demo_tiny):
    track = demo_track(demo_tiny, frames=250)  # 10 s
    space = space_of(track)
    closure = lambda t: space.axis_value(t.latents, "blink", "closure")[0]  # noqa: E731
    natural = edit(track, blinks="natural", blink_rate=20.0, blink_seed=3)
    assert torch.equal(natural.latents, edit(track, blinks="natural", blink_rate=20.0, blink_seed=3).latents)
    assert not torch.equal(natural.latents, edit(track, blinks="natural", blink_rate=20.0, blink_seed=4).latents)
    assert (closure(natural) > 0.8).any()
    timed = closure(edit(track, blinks="at times", blink_times="5.9, 1.9"))
    assert [k for k in range(250) if timed[k] > 0.999] == [50, 150]  # fully closed 0.1 s after each start
    removed = closure(edit(track, blinks="none"))
    open_level = torch.quantile(closure(track), 0.2)
    assert removed.max() <= open_level + 1e-5


def test_no_edit_returns_the_motion_itself():
    float_track = MotionTrack(torch.randn(1, 10, 512), 25.0)  # no basis, no layout: nothing is needed
    assert edit(float_track) is float_track
    assert edit(float_track, keyframes="  ", blink_times="1.0") is float_track


def test_edit_shows_the_edited_curves(demo_tiny):
    track = demo_track(demo_tiny, frames=20)
    ui = run_ui("DemoEditFactors", **NO_EDITS | {"motion": track, "yaw_offset": 30.0})
    curves = {c["name"]: c["values"] for c in ui["demo_curves"]}
    assert list(curves) == track.coefficient_names() and all(len(v) == 20 for v in curves.values())
    yaw = space_of(track).coordinate_index("pose", "yaw")
    assert curves["pose.yaw"][0] == pytest.approx(float(track.coefficients[0, 0, 6]) + 30.0 / yaw[1], abs=1e-3)


@pytest.mark.parametrize("keyframes, needle", [
    ('{"pose.yw": [[0, 0]]}', 'keyframes: track "pose.yw": unknown axis "yw"'),
    ('{"pose.yaw": [[0, 0], [-1, 3]]}', 'keyframes: track "pose.yaw" key 1: time -1.0 must be >= 0'),
    ('{"pose.yaw": {"mode": "add", "keys": [[0, 0]]}}', 'keyframes: track "pose.yaw": unknown mode "add"'),
    ('{"pose.yaw": [[0, 0]],}', "keyframes: invalid JSON at line 1 column 23"),
    ('{"head.gain": [[0, 2]]}', 'keyframes: track "head.gain": unknown factor "head"'),
])
def test_keyframe_errors_name_the_node_and_the_key(demo_tiny, keyframes, needle):
    with pytest.raises(ValueError) as info:
        edit(demo_track(demo_tiny, frames=10), keyframes=keyframes)
    assert str(info.value).startswith("DemoEditFactors: ") and needle in str(info.value)
    cls = nodes.NODE_CLASS_MAPPINGS["DemoEditFactors"]
    if "head" not in keyframes:  # grammar errors are caught before the run, when ComfyUI validates the prompt
        message = cls.VALIDATE_INPUTS(keyframes=keyframes)
        assert message.startswith("DemoEditFactors: ") and needle in message
    assert cls.VALIDATE_INPUTS(keyframes='{"pose.yaw": [[0, 0], [3, 15]]}', blink_times="0.5 1") is True
    assert "blink_times: 'soon'" in cls.VALIDATE_INPUTS(blink_times="1.0, soon")


def test_half_precision_model(demo_tiny):
    """A bfloat16 model's basis is orthonormal to ~1e-2 only: the factor space re-orthonormalises it."""
    import copy

    half = copy.deepcopy(demo_tiny).to(torch.bfloat16)
    track = demo_track(demo_tiny, frames=30)
    edited = edit(track, model=half, pose_gain=0.0)
    space = space_of(edited)
    assert torch.allclose(space.dictionary, space_of(track).dictionary, atol=1e-2)
    assert_only_changed(track, edited, {"pose"}, space)


def test_edit_errors(demo_tiny, demo_model):
    with pytest.raises(ValueError, match="^DemoEditFactors: motion: no factor layout.*Demo Calibrate Factors"):
        edit(MotionTrack(torch.randn(1, 10, 512), 25.0), pose_gain=0.5)
    with pytest.raises(ValueError, match="^DemoEditFactors: motion: latent width 512 does not match the model's 32"):
        edit(MotionTrack(torch.randn(1, 10, 512), 25.0), model=demo_tiny, pose_gain=0.5)
    with pytest.raises(ValueError, match="^DemoEditFactors: blink_times: '-1' must be"):
        edit(demo_track(demo_tiny, frames=10), blinks="at times", blink_times="-1")


# --------------------------------------------------------------------------------------------- Demo Mix Motion


def mix(base, **inputs):
    return run("DemoMixMotion", base=base, **{"relative": True, "length_mode": "loop", **inputs})[0]


def test_mix_takes_each_factor_from_its_source(demo_tiny):
    base, pose, gaze = (demo_track(demo_tiny, frames=50, seed=s) for s in (1, 2, 3))
    mixed = mix(base, relative=False, pose=pose, gaze=gaze)
    for factor, source in (("lip", base), ("pose", pose), ("gaze", gaze), ("blink", base), ("residual", base)):
        torch.testing.assert_close(coords(mixed, factor), coords(source, factor), atol=1e-5, rtol=0)
    relative = mix(base, pose=pose)
    expected = coords(base, "pose")[:, :1] + coords(pose, "pose") - coords(pose, "pose")[:, :1]
    torch.testing.assert_close(coords(relative, "pose"), expected, atol=1e-5, rtol=0)
    assert_only_changed(base, relative, {"pose"})
    assert mix(base) is base


@pytest.mark.parametrize("mode", ["loop", "pingpong", "hold"])
def test_mix_retimes_and_extends_short_sources(demo_tiny, mode):
    base = demo_track(demo_tiny, frames=60, fps=25.0)
    short = demo_track(demo_tiny, frames=10, fps=12.5, seed=5)  # 0.8 s: 20 frames at 25 fps
    mixed = mix(base, relative=False, length_mode=mode, lip=short)
    assert torch.allclose(coords(mixed, "lip")[:, 0:20:2], coords(short, "lip")[:, :10], atol=1e-5)
    after = coords(mixed, "lip")[:, 20]  # the first frame past the source's end
    expected = {"loop": coords(short, "lip")[:, 0], "hold": coords(short, "lip")[:, -1],
                "pingpong": coords(mixed, "lip")[:, 18]}[mode]
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=0)


def test_mix_errors(demo_tiny):
    base = demo_track(demo_tiny, frames=20)
    video = demo_track(demo_tiny, frames=20, relative=True)
    with pytest.raises(ValueError, match="^DemoMixMotion: pose: one of this source and the base holds motion relative"):
        mix(base, relative=False, pose=video)
    assert torch.isfinite(mix(base, pose=video).latents).all()  # relative transfer mixes both kinds
    with pytest.raises(ValueError, match="^DemoMixMotion: base: no factor layout"):
        mix(MotionTrack(torch.randn(1, 20, 512), 25.0), pose=MotionTrack(torch.randn(1, 20, 512), 25.0))


# ---------------------------------------------------------------------------------- conditioned Demo Sample Motion


def encode(model, seconds=1.0, image=None):
    portrait = run("DemoEncodePortrait", model=model, image=portrait_image(64, 64) if image is None else image,
                   crop="none", box_x=0, box_y=0, box_w=0, box_h=0, scale=1.6)[0]
    return portrait, run("DemoEncodeAudio", model=model, audio=speech(seconds), emotion="neutral")[0]


def sample(model, portrait, cond, fps=25.0, seed=0, **tracks):
    return run("DemoSampleMotion", model=model, portrait=portrait, audio_cond=cond, steps=2, solver="euler",
               a_cfg=2.0, e_cfg=1.0, seed=seed, fps=fps, **tracks)[0]


def test_conditioned_sampling_reproduces_the_pose_track(demo_tiny):
    portrait, cond = encode(demo_tiny, seconds=1.0)
    free = sample(demo_tiny, portrait, cond)
    pose = demo_track(demo_tiny, frames=25, seed=9)  # an absolute pose track, 1 s at 25 fps
    fixed = sample(demo_tiny, portrait, cond, pose_track=pose)
    assert (fixed.num_frames, fixed.fps, fixed.factors) == (25, 25.0, free.factors)
    torch.testing.assert_close(coords(fixed, "pose"), coords(pose, "pose"), atol=1e-4, rtol=0)
    assert not torch.allclose(coords(fixed, "lip"), coords(pose, "lip"), atol=1e-2)  # lips still from the speech
    # at 30 fps output the pose follows the track retimed to 30 fps (the curves are linear in time)
    at_30 = sample(demo_tiny, portrait, cond, fps=30.0, pose_track=pose)
    expected = space_of(pose).factor_coordinates(fit_track_frames(pose, 30.0, 30, "hold"), "pose")
    torch.testing.assert_close(coords(at_30, "pose"), expected, atol=1e-4, rtol=0)


def test_conditioning_on_tracks_of_other_rates_lengths_and_kinds(demo_tiny):
    portrait, cond = encode(demo_tiny, seconds=1.0)
    space = FactorSpace.from_track(demo_track(demo_tiny, frames=1))
    gaze = demo_track(demo_tiny, frames=20, fps=50.0, seed=4)  # 0.4 s at 50 fps: retimed, then ping-ponged
    fixed = sample(demo_tiny, portrait, cond, gaze_track=gaze, track_length="pingpong")
    expected = space.factor_coordinates(fit_track_frames(gaze, 25.0, 25, "pingpong"), "gaze")
    torch.testing.assert_close(coords(fixed, "gaze"), expected, atol=1e-4, rtol=0)
    offsets = demo_track(demo_tiny, frames=25, seed=6, relative=True)  # like Demo Motion From Video, relative on
    blinks = sample(demo_tiny, portrait, cond, blink_track=offsets)
    own = space.factor_coordinates(portrait.source_motion, "blink")[:, None]  # (1, 1, 1)
    torch.testing.assert_close(coords(blinks, "blink"), own + coords(offsets, "blink"), atol=1e-4, rtol=0)


def test_sampled_motion_carries_its_portraits_render_knots_and_edits_use_them(demo_tiny, monkeypatch):
    """Demo Sample Motion measures how the portrait renders the pose axes (here replaced by known knots: the
    measuring itself is tested in tests/motion/test_render_axes.py) and the track carries them; Demo Edit Factors
    asks for the coefficient that renders the degrees, with or without the model connected."""
    import demo_core.pipeline.factor_control as fc
    from demo_core.motion.render_axes import with_render_knots

    knots = ((-20.0, -1.0), (0.0, 0.0), (15.0, 0.8), (20.0, 1.2))  # 15° needs 0.8 units, not the encoder's 0.5
    seen = []

    def measured(model, h, feats, motion, axes):
        seen.append((tuple(h.shape), tuple(motion.shape), list(axes)))
        return with_render_knots(model.cfg.factors, {("pose", "yaw"): knots})

    monkeypatch.setattr(fc, "portrait_render_layout", measured)
    portrait, cond = encode(demo_tiny, seconds=1.0)
    track = sample(demo_tiny, portrait, cond)
    assert seen == [((1, 32), (1, 32), [("pose", "yaw"), ("pose", "pitch"), ("pose", "roll")])]
    assert FactorLayout.from_dict(track.factors).block("pose").axis_render[0] == knots
    keys = '{"pose.yaw": {"mode": "absolute", "keys": [[0, 15]]}}'
    for model in (None, demo_tiny):
        yaw = coords(edit(track, model=model, keyframes=keys), "pose")[..., 0]
        torch.testing.assert_close(yaw, torch.full_like(yaw, 0.8), atol=1e-5, rtol=0)
    plain = track.with_latents(track.latents, factors=demo_tiny.cfg.factors.to_dict())
    yaw = coords(edit(plain, model=demo_tiny, keyframes=keys), "pose")[..., 0]
    torch.testing.assert_close(yaw, torch.full_like(yaw, 0.5), atol=1e-5, rtol=0)  # 15° / 30° per unit


def test_motion_from_video_drives_the_pose(demo_tiny):
    portrait, cond = encode(demo_tiny, seconds=0.8)
    frames = torch.stack([portrait_image(64, 96, seed=2)[0, :, k:k + 64] for k in range(0, 24, 2)])  # a pan
    video, = run("DemoMotionFromVideo", model=demo_tiny, images=frames, fps=25.0, crop="none", scale=1.6,
                 relative=True, batch_size=8)
    assert video.relative and video.factors is not None and "pose.yaw" in video.coefficient_names()
    driven = sample(demo_tiny, portrait, cond, pose_track=video, gaze_track=video, track_length="hold")
    assert driven.num_frames == math.ceil(0.8 * 25)
    own = FactorSpace.from_track(video).factor_coordinates(portrait.source_motion, "pose")[:, None]
    target = own + FactorSpace.from_track(video).factor_coordinates(fit_track_frames(video, 25.0, 20, "hold"), "pose")
    torch.testing.assert_close(coords(driven, "pose"), target, atol=1e-4, rtol=0)
    mixed = mix(driven, pose=video)  # the same motion also works as a Demo Mix Motion source
    assert mixed.num_frames == driven.num_frames


def test_conditioning_a_float_model_needs_a_calibration(demo_model):
    portrait, cond = encode(demo_model, seconds=0.4)
    with pytest.raises(ValueError, match="^DemoSampleMotion: pose_track: no factor layout.*Demo Calibrate Factors"):
        sample(demo_model, portrait, cond, pose_track=MotionTrack(torch.zeros(1, 10, 512), 25.0))


# ------------------------------------------------------------------------- Demo Calibrate Factors (FLOAT family)


@pytest.fixture
def float_from_folder(tmp_path, monkeypatch):
    """The tiny FLOAT model loaded by Demo Load Model from a models folder in tmp_path (so it knows its file)."""
    require_shared()
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(TINY / "float_tiny.safetensors", models / "tiny.safetensors")
    monkeypatch.setenv("DEMO_MODELS_DIR", str(models))
    model, = run("DemoLoadModel", checkpoint="tiny.safetensors", device="cpu", dtype="float32")
    return model, models / "tiny.factors.json"


def calibrate(model, portrait, manual_map="", overwrite=False, **optional):
    return run("DemoCalibrateFactors", model=model, portrait=portrait, epsilon=optional.pop("epsilon", 0.5),
               overwrite=overwrite, manual_map=manual_map, **optional)


def test_calibration_writes_a_sidecar_and_never_overwrites(float_from_folder):
    model, sidecar = float_from_folder
    portrait, _ = encode(model, seconds=0.2, image=portrait_image(96, 80))
    report, same = calibrate(model, portrait)
    assert same is model and sidecar.is_file() and report.startswith("Saved factor calibration (measured)")
    assert str(sidecar) in report and "pose.c0" in report
    written = sidecar.read_bytes()
    assert json.loads(written)["source"] == "measured"
    manual = '{"lip": [0, 1], "pose": [2, 3, 4], "eyes": [5]}'
    report, _ = calibrate(model, portrait, manual_map=manual)
    assert sidecar.read_bytes() == written, "an existing sidecar is never replaced without overwrite"
    assert report.startswith("Kept the existing factor calibration (measured)") and "overwrite" in report
    report, _ = calibrate(model, portrait, manual_map=manual, overwrite=True)
    assert json.loads(sidecar.read_text())["directions"]["lip"] == [0, 1]
    assert "lip: lip.c0 … lip.c1 (directions 0, 1)" in report


def test_calibration_steps_each_direction_by_its_spread_in_a_motion(float_from_folder):
    model, sidecar = float_from_folder
    portrait, cond = encode(model, seconds=0.6, image=portrait_image(96, 80))
    motion = sample(model, portrait, cond)
    report, _ = calibrate(model, portrait, motion=motion, epsilon=2.0)
    assert report.startswith("Saved factor calibration (measured)")
    Q = model.motion_autoencoder.directions().detach().double()
    std = (motion.latents.double() @ Q).reshape(-1, Q.shape[1]).std(dim=0)
    expected = 2.0 * std.clamp_min(0.02 * float(std.max()))
    saved = torch.tensor(json.loads(sidecar.read_text())["settings"]["epsilon"], dtype=torch.float64)
    torch.testing.assert_close(saved, expected, rtol=1e-6, atol=0)
    still = MotionTrack(motion.latents[:, :1].expand(-1, 5, -1).clone(), motion.fps)
    with pytest.raises(ValueError, match="^DemoCalibrateFactors: motion: it does not move"):
        calibrate(model, portrait, motion=still, overwrite=True)
    with pytest.raises(ValueError, match="^DemoCalibrateFactors: motion: expected a motion of this model"):
        calibrate(model, portrait, motion=MotionTrack(torch.zeros(1, 5, 7), 25.0), overwrite=True)


def test_calibrated_float_model_edits_by_factor(float_from_folder):
    model, sidecar = float_from_folder
    portrait, cond = encode(model, seconds=0.6, image=portrait_image(96, 80))
    motion = sample(model, portrait, cond)
    assert motion.factors is None  # not calibrated yet
    with pytest.raises(ValueError, match="^DemoEditFactors: motion: no factor layout"):
        edit(motion, model=model, lip_gain=0.0)
    calibrate(model, portrait, manual_map='{"lip": [0, 1, 2], "pose": [3, 4, 5], "eyes": [6, 7]}')
    space = FactorSpace(model.motion_autoencoder.directions().detach().float(),
                        FactorLayout.from_dict(json.loads(sidecar.read_text())["layout"]),
                        torch.tensor(json.loads(sidecar.read_text())["rotation"]))
    quiet = edit(motion, model=model, lip_gain=0.0, gaze_gain=0.5, blink_gain=0.5)  # gaze and blink mean eyes
    assert quiet.coefficient_names()[:3] == ["lip.c0", "lip.c1", "lip.c2"]
    assert_only_changed(motion, quiet, {"lip", "eyes"}, space)
    keyed = edit(motion, model=model, keyframes='{"pose.c0": [[0, 0], [0.4, 0.5]]}')
    assert_only_changed(motion, keyed, {"pose"}, space)
    with pytest.raises(ValueError, match=r"^DemoEditFactors: pose.yaw offset: needs the semantic axis .*pose.c0"):
        edit(motion, model=model, yaw_offset=10.0)
    with pytest.raises(ValueError, match="^DemoEditFactors: look_at_camera: needs the semantic axis gaze.x"):
        edit(motion, model=model, look_at_camera=True)
    with pytest.raises(ValueError, match="^DemoEditFactors: blink_gain: 0.7 conflicts with another gain"):
        edit(motion, model=model, gaze_gain=0.5, blink_gain=0.7)
    resampled = sample(model, portrait, cond)  # sampled after the calibration: the motion names its factors
    assert resampled.coefficient_names()[:4] == ["lip.c0", "lip.c1", "lip.c2", "pose.c0"]
    assert_only_changed(resampled, edit(resampled, pose_gain=0.0), {"pose"}, space)  # no model needed now
    with pytest.raises(ValueError, match="^DemoMixMotion: blink: this model's 'eyes' factor already comes from gaze"):
        mix(motion, model=model, gaze=resampled, blink=resampled)
    other = sample(model, portrait, cond, seed=1)
    assert_only_changed(motion, mix(motion, model=model, blink=other), {"eyes"}, space)
    held = sample(model, portrait, cond, pose_track=resampled, gaze_track=resampled)
    torch.testing.assert_close(space.factor_coordinates(held.latents, "pose"),
                               space.factor_coordinates(resampled.latents, "pose"), atol=1e-4, rtol=0)


def test_calibration_refusals(demo_tiny, demo_model):
    portrait, _ = encode(demo_tiny, seconds=0.2)
    with pytest.raises(ValueError, match="^DemoCalibrateFactors: model: this DEMO-format model names its factors"):
        calibrate(demo_tiny, portrait)
    portrait, _ = encode(demo_model, seconds=0.2)
    with pytest.raises(ValueError, match="^DemoCalibrateFactors: model: .* load the model with Demo Load Model"):
        calibrate(demo_model, portrait)
