"""Error types raised at the engine's boundary.

Every public entry point checks its inputs and raises one of these with a message that names the
input, what was expected and what was received.  Both derive from ``ValueError`` so callers that
only know the standard library still catch them.
"""

from __future__ import annotations

__all__ = ["DemoInputError", "CheckpointError"]


class DemoInputError(ValueError):
    """An input (image, audio, parameter, file) does not meet the documented expectation."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, truncated, unsafe, or not matching the model."""
