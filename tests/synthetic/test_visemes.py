"""Viseme timing against the ARCTIC phone labels."""

from __future__ import annotations

import pytest
import torch

from demo_core.synthetic.speech import Phone, parse_lab
from demo_core.synthetic.visemes import (VISEME_NAMES, frame_times, mouth_track, num_frames, phone_to_visemes,
                                         viseme_track)
from tests.conftest import SHARED, require_shared

LEAD = 0.035
FPS = 25.0
OPEN_VOWELS = {"aa", "ae", "ao", "eh", "ey", "ay", "aw"}


@pytest.fixture(scope="module")
def a0009():
    phones = parse_lab(require_shared(SHARED / "data" / "speech" / "arctic_a0009_phone.lab"))
    n = num_frames(phones[-1].end, FPS)
    return phones, n, mouth_track(phones, n, FPS, lead=LEAD)


def _frames_in(p: Phone, n: int, pad: float = 0.0):
    t = frame_times(n, FPS)
    return ((t >= p.start - LEAD - pad) & (t < p.end - LEAD + pad)).nonzero().flatten()


def test_frame_count_and_times():
    assert num_frames(3.075, 25) == 77 and num_frames(2.0, 25) == 50 and num_frames(2.0001, 25) == 51
    assert frame_times(3, 25).tolist() == [0.0, 0.04, 0.08]


def test_phone_mapping():
    assert phone_to_visemes("p") == phone_to_visemes("b") == phone_to_visemes("m") == ("PBM",)
    assert phone_to_visemes("sil") == phone_to_visemes("_:") == phone_to_visemes("pau") == ("sil",)
    assert phone_to_visemes("ay") == ("AA", "IY") and phone_to_visemes("'aI") == ("AA", "IY")
    assert phone_to_visemes("uw") == phone_to_visemes("u:") == ("UW",)
    assert phone_to_visemes("AA1") == ("AA",) and phone_to_visemes("zz9") in (("DNL",), ("AH",))


def test_shapes_and_ranges(a0009):
    phones, n, tr = a0009
    assert n == 77 and set(tr) == {"mouth_open", "mouth_width", "mouth_round"}
    for v in tr.values():
        assert v.shape == (n,) and v.dtype == torch.float32
    assert 0 <= float(tr["mouth_open"].min()) and float(tr["mouth_open"].max()) <= 1


def test_mouth_opens_at_open_vowels(a0009):
    phones, n, tr = a0009
    checked = 0
    for p in phones:
        if p.phone in OPEN_VOWELS:
            idx = _frames_in(p, n, pad=0.02)
            assert len(idx) > 0
            assert float(tr["mouth_open"][idx].max()) > 0.3, f"{p} not open"
            checked += 1
    assert checked >= 5


def test_mouth_closes_at_bilabials_and_silence(a0009):
    phones, n, tr = a0009
    for p in phones:
        if p.phone in ("p", "b", "m"):
            idx = _frames_in(p, n)
            assert len(idx) > 0 and float(tr["mouth_open"][idx].min()) < 0.12, f"{p} not closed"
    lead_sil, tail_sil = phones[0], phones[-1]
    t = frame_times(n, FPS)
    quiet = (t < lead_sil.end - 0.1) | (t > tail_sil.start + 0.05)
    assert float(tr["mouth_open"][quiet].max()) < 0.05


def test_look_ahead_opens_before_the_sound(a0009):
    phones, n, _ = a0009
    no_lead = mouth_track(phones, n, FPS, lead=0.0)["mouth_open"]
    with_lead = mouth_track(phones, n, FPS, lead=LEAD)["mouth_open"]
    first_speech = phones[1].start
    k = int(first_speech * FPS)  # last frame before the first phone starts
    assert with_lead[k] > no_lead[k] and with_lead[k] > 0.02


def test_rounding_and_spreading_follow_the_vowel():
    phones = [Phone(0.0, 0.3, "sil"), Phone(0.3, 0.6, "uw"), Phone(0.6, 0.9, "sil"), Phone(0.9, 1.2, "iy"),
              Phone(1.2, 1.6, "sil")]
    tr = mouth_track(phones, num_frames(1.6), FPS)
    assert float(tr["mouth_round"][11]) > 0.7 and float(tr["mouth_width"][11]) < -0.4
    assert float(tr["mouth_width"][26]) > 0.6 and float(tr["mouth_round"][26]) < 0.1


def test_viseme_track_alignment(a0009):
    phones, n, _ = a0009
    vis = viseme_track(phones, n, FPS)
    for k in range(n):
        t = k / FPS
        p = next(q for q in phones if q.start <= t < q.end) if t < phones[-1].end else phones[-1]
        assert VISEME_NAMES[int(vis[k])] in phone_to_visemes(p.phone)
