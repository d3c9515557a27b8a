"""Length matching of driving tracks: loop, ping-pong, hold, and cutting."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.length_matching import length_indices, match_length


def test_index_patterns():
    assert length_indices(4, 10, "loop").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert length_indices(4, 10, "pingpong").tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert length_indices(4, 7, "hold").tolist() == [0, 1, 2, 3, 3, 3, 3]
    for mode in ("loop", "pingpong", "hold"):
        assert length_indices(4, 3, mode).tolist() == [0, 1, 2]  # a longer source is cut
        assert length_indices(1, 3, mode).tolist() == [0, 0, 0]
        assert length_indices(4, 0, mode).tolist() == []


def test_match_length_on_trajectories():
    x = torch.arange(3.0).view(1, 3, 1).expand(2, 3, 5)  # (B, T, W)
    out = match_length(x, 7, "pingpong")
    assert out.shape == (2, 7, 5)
    assert out[0, :, 0].tolist() == [0, 1, 2, 1, 0, 1, 2]
    assert torch.equal(match_length(x, 3), x) and match_length(x, 3).data_ptr() != x.data_ptr()
    with pytest.raises(DemoInputError, match="mode"):
        match_length(x, 5, "mirror")
    with pytest.raises(DemoInputError, match="num_frames"):
        match_length(x, -1)
    with pytest.raises(DemoInputError, match="x"):
        match_length(torch.zeros(2, 0, 5), 4)
