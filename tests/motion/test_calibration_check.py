"""Subspace overlaps between calibrated and true factor blocks (demo_core.motion.calibration_check)."""

from __future__ import annotations

import math

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.calibration import calibrate_factors
from demo_core.motion.calibration_check import (active_directions, calibration_overlaps, direction_report,
                                                subspace_overlap, true_directions)
from demo_core.motion.factor_sidecar import calibration_from_directions
from demo_core.motion.factors import FactorBlock, FactorLayout, default_factor_layout
from tests.motion.factor_helpers import orthonormal
from tests.motion.test_calibration import TRUE, AnalyticRenderer

W, M = 16, 12


def test_subspace_overlap_identical_orthogonal_and_partial():
    Q = orthonormal(10, 6, seed=0)
    assert subspace_overlap(Q[:, :3], Q[:, :3]) == pytest.approx(1.0, abs=1e-12)
    assert subspace_overlap(Q[:, :3], Q[:, 3:]) == pytest.approx(0.0, abs=1e-12)
    assert subspace_overlap(Q[:, :2], Q[:, :3]) == pytest.approx(2 / 3, abs=1e-12)  # a missing dimension
    assert subspace_overlap(Q[:, :3], Q[:, 1:5]) == pytest.approx(2 / 4, abs=1e-12)  # 2 shared of max(3, 4)
    # one direction at angle θ to its true one: cos²θ per angle, averaged
    th = 0.3
    b = torch.stack([Q[:, 0], math.cos(th) * Q[:, 1] + math.sin(th) * Q[:, 4]], 1)
    assert subspace_overlap(Q[:, :2], b) == pytest.approx((1 + math.cos(th) ** 2) / 2, abs=1e-12)
    assert math.isnan(subspace_overlap(Q[:, :0], Q[:, :0]))
    assert subspace_overlap(Q[:, :2], Q[:, :0]) == 0.0


def test_subspace_overlap_is_invariant_to_rotations_within_each_subspace():
    Q = orthonormal(10, 6, seed=1)
    A, B = Q[:, :3], torch.linalg.qr(Q[:, :4] + 0.3 * Q[:, 4:5])[0]  # B leans out of span(Q[:, :4])
    Ra, Rb = orthonormal(3, 3, seed=2), orthonormal(4, 4, seed=3)
    ref = subspace_overlap(A, B)
    assert 0 < ref < 0.75
    assert subspace_overlap(A @ Ra, B @ Rb) == pytest.approx(ref, abs=1e-12)
    assert subspace_overlap(B, A) == pytest.approx(ref, abs=1e-12)
    with pytest.raises(DemoInputError, match="different spaces"):
        subspace_overlap(A, orthonormal(8, 2))
    with pytest.raises(DemoInputError, match="A:"):
        subspace_overlap(Q[:, 0], A)


def test_true_directions_put_gaze_and_blink_in_eyes():
    assert true_directions(default_factor_layout()) == {
        "pose": [6, 7, 8, 9, 10, 11], "lip": [0, 1, 2, 3, 4, 5], "eyes": [12, 13, 14]}
    assert true_directions(FactorLayout((FactorBlock("pose", 2), FactorBlock("blink", 1)))) == {
        "pose": [0, 1], "lip": [], "eyes": [2]}


def test_active_directions():
    g = torch.Generator().manual_seed(0)
    lam = torch.randn(50, 4, generator=g) * torch.tensor([1.0, 0.3, 1e-4, 0.0]) + 5.0
    assert active_directions(lam).tolist() == [True, True, False, False]
    assert active_directions(lam, 0.5).tolist() == [True, False, False, False]
    with pytest.raises(DemoInputError, match="lam"):
        active_directions(lam[:1])


# the analytic renderer of test_calibration, its dictionary columns reordered into a DEMO-style layout:
# lip (3), pose (3), gaze (1: its direction 3), blink (1: its direction 11), residual (4)
ORDER = TRUE["lip"] + TRUE["pose"] + [3, 11] + TRUE["residual"]
LAYOUT = FactorLayout((FactorBlock("lip", 3, axes=("open",), axis_units=("",), axis_scale=(1.0,)),
                       FactorBlock("pose", 3), FactorBlock("gaze", 1), FactorBlock("blink", 1),
                       FactorBlock("residual", 4)))


@pytest.fixture(scope="module")
def permuted():
    Q = orthonormal(W, M, seed=2, dtype=torch.float32)
    rest = torch.randn(W, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    Qp = Q[:, ORDER]  # column k of Qp = the renderer's direction ORDER[k]: layout order
    cal = calibrate_factors(AnalyticRenderer(Q, rest.double()), rest, Qp, batch_size=6)
    return Qp, cal


def test_calibration_of_a_known_layout_recovers_every_block(permuted):
    Qp, cal = permuted
    assert calibration_overlaps(cal, LAYOUT, Qp) == pytest.approx({"pose": 1.0, "lip": 1.0, "eyes": 1.0}, abs=1e-6)
    report = {r["direction"]: r for r in direction_report(cal, LAYOUT)}
    assert [report[i]["true"] for i in (0, 1, 3, 6, 7, 8)] == ["lip.open", "lip.c1", "pose.c0", "gaze.c0",
                                                               "blink.c0", "residual.c0"]
    assert all(r["calibrated"] == r["true_block"] for r in report.values())
    assert [report[i]["true_block"] for i in (6, 7)] == ["eyes", "eyes"]


def test_overlaps_of_a_wrong_calibration_and_of_active_directions(permuted):
    Qp = permuted[0]
    # pose direction 4 put into lip, blink (7) left in residual
    wrong = calibration_from_directions({"lip": [0, 1, 2, 4], "pose": [3, 5], "eyes": [6]}, M)
    got = calibration_overlaps(wrong, LAYOUT, Qp)
    assert got == pytest.approx({"pose": 2 / 3, "lip": 3 / 4, "eyes": 1 / 2}, abs=1e-6)
    # blink (7) and the lip direction 2 unused: only active directions count, on both sides
    active = torch.ones(M, dtype=torch.bool)
    active[[2, 7]] = False
    got = calibration_overlaps(wrong, LAYOUT, Qp, active=active)
    assert got == pytest.approx({"pose": 2 / 3, "lip": 2 / 3, "eyes": 1.0}, abs=1e-6)
    # a block with no active direction on either side has no figure
    active[[6]] = False
    assert math.isnan(calibration_overlaps(wrong, LAYOUT, Qp, active=active)["eyes"])
    # the true blocks may also be given directly
    assert calibration_overlaps(wrong, {"pose": [3, 4, 5]}, Qp)["pose"] == pytest.approx(2 / 3)
    with pytest.raises(DemoInputError, match="active"):
        calibration_overlaps(wrong, LAYOUT, Qp, active=[True] * 3)
    with pytest.raises(DemoInputError, match="Q"):
        calibration_overlaps(wrong, LAYOUT, Qp[:, :5])
