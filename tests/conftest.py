"""Shared test helpers: the FLOAT reference fixtures in ../shared and tolerance checks.

Tests that read ``../shared`` run in CI (``CI=true``), where the folder always exists beside the
checkout, and are skipped with a clear reason elsewhere when it is absent (a user's clone).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("DEMO_SHARED_DIR", ROOT.parent / "shared"))
FLOAT_REF = SHARED / "reference" / "float"
TINY = FLOAT_REF / "tiny"

torch.set_num_threads(min(2, torch.get_num_threads()))


def require_shared(path: Path = SHARED) -> Path:
    """Return ``path`` if it exists; fail in CI, skip with a reason elsewhere."""
    if path.exists():
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{path} is missing in CI: the shared reference data must sit beside the checkout")
    pytest.skip(f"{path} not found: the shared reference data is only beside the project checkout and in CI")


def load_fixture(name: str) -> dict[str, torch.Tensor]:
    """Load ``tiny/<name>.safetensors`` as a dict of tensors."""
    from safetensors.torch import load_file

    return load_file(str(require_shared(TINY / f"{name}.safetensors")))


def tiny_config() -> dict:
    return json.loads((require_shared(TINY) / "config.json").read_text())


def assert_close_ref(cand: torch.Tensor, ref: torch.Tensor, name: str = "", atol: float = 1e-4, rtol: float = 1e-4):
    """|cand - ref| <= atol + rtol * |ref| elementwise (the fixtures' acceptance rule)."""
    assert cand.shape == ref.shape, f"{name}: shape {tuple(cand.shape)} != reference {tuple(ref.shape)}"
    cand = cand.detach().to(torch.float64)
    ref = ref.detach().to(torch.float64)
    err = (cand - ref).abs()
    bound = atol + rtol * ref.abs()
    bad = err > bound
    assert not bool(bad.any()), (
        f"{name}: {int(bad.sum())} of {ref.numel()} values off; worst |diff| {float(err.max()):.3e}"
    )


@pytest.fixture
def single_thread():
    """One intra-op thread: tiny models gain nothing from two, and on a busy machine OpenMP barriers across two
    oversubscribed threads make the first steps seconds long."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def float_tiny_model():
    """The FLOAT tiny fixture model (random weights, 64×64, wav2vec2 audio encoder, emotion encoder)."""
    from demo_core.models.loader import load_model

    return load_model(require_shared(TINY / "float_tiny.safetensors"))[0]


@pytest.fixture(scope="session")
def tiny_weights() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(require_shared(TINY / "float_tiny.safetensors")))


@pytest.fixture(scope="session")
def tiny_cfg() -> dict:
    return tiny_config()
