"""Phone timings: HTS labels and espeak-ng synthesis."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from demo_core.synthetic.sentences import SENTENCES, sentence_indices
from demo_core.synthetic.speech import SAMPLE_RATE, Voice, espeak_synthesize, load_arctic, parse_lab, sample_voice
from demo_core.synthetic.visemes import _ESPEAK, phone_to_visemes
from tests.conftest import SHARED, require_shared

SPEECH = SHARED / "data" / "speech"
HAS_ESPEAK = importlib.util.find_spec("espeakng_loader") is not None
needs_espeak = pytest.mark.skipif(
    not HAS_ESPEAK, reason="espeakng-loader is not installed (pip install espeakng-loader)")


def test_parse_lab_arctic():
    phones = parse_lab(require_shared(SPEECH / "arctic_a0009_phone.lab"))
    assert len(phones) == 40
    assert phones[0] == (0.0, 0.13, "sil") and phones[1].phone == "hh" and phones[-1].phone == "sil"
    assert abs(phones[-1].end - 3.075) < 1e-9
    for a, b in zip(phones, phones[1:]):
        assert a.end == pytest.approx(b.start) and a.start < a.end


def test_load_arctic_covers_the_audio():
    clip = load_arctic(require_shared(SPEECH / "arctic_a0009.wav"), SPEECH / "arctic_a0009_phone.lab")
    assert clip.sample_rate == SAMPLE_RATE and clip.waveform.dtype == np.float32
    assert 3.0 < clip.seconds < 3.2 and clip.phones[-1].end == pytest.approx(clip.seconds)


def test_sentence_split():
    train, test = sentence_indices("train"), sentence_indices("test")
    assert len(SENTENCES) == 200 and len(set(SENTENCES)) == 200
    assert len(test) == 20 and not set(train) & set(test) and len(train) + len(test) == 200


@needs_espeak
def test_espeak_audio_and_monotonic_phone_events():
    clip = espeak_synthesize("Maybe the blue boat will move at noon.", Voice("en-us+f3", 170, 55, 50))
    wav = clip.waveform
    assert wav.dtype == np.float32 and wav.ndim == 1 and clip.sample_rate == SAMPLE_RATE
    assert 1.0 < clip.seconds < 5.0 and 0.5 < float(np.abs(wav).max()) <= 1.0
    starts = [p.start for p in clip.phones]
    assert starts == sorted(starts) and starts[0] == 0.0
    for a, b in zip(clip.phones, clip.phones[1:]):
        assert a.end == pytest.approx(b.start) and a.end > a.start
    assert clip.phones[-1].end == pytest.approx(clip.seconds)
    names = [p.phone for p in clip.phones]
    assert {"m", "b"} <= set(names)  # Maybe, blue, boat, move
    # Sound is present where phones are speech and near zero in the leading silence.
    first = next(p for p in clip.phones if not p.phone.startswith("_"))
    speech = wav[int(first.start * SAMPLE_RATE):]
    assert np.abs(speech).max() > 0.3


@needs_espeak
def test_espeak_voices_vary_and_phones_map_to_visemes():
    g = torch.Generator().manual_seed(3)
    lengths, unknown = set(), set()
    for i in range(6):
        clip = espeak_synthesize(SENTENCES[i * 7], sample_voice(g))
        lengths.add(round(clip.seconds, 2))
        for p in clip.phones:
            if not p.phone.startswith("_") and p.phone not in _ESPEAK:
                unknown.add(p.phone)
            assert phone_to_visemes(p.phone)
    assert len(lengths) == 6
    assert not unknown, f"espeak phones without an explicit viseme: {sorted(unknown)}"
