"""Node error messages start with the node id.

The engine raises :class:`~demo_core.errors.DemoInputError` / ``CheckpointError`` (both
``ValueError``) with messages naming the input; :func:`node_errors` re-raises them, and the
host-side ``ValueError``/``FileNotFoundError`` of ``comfy_host``, as ``"<NodeId>: <message>"`` so
the ComfyUI error dialog says which node failed.  Other exceptions (ComfyUI's interrupt, out of
memory) pass through unchanged.
"""

from __future__ import annotations

import functools

__all__ = ["node_errors", "node_error"]


def node_error(node_id: str, err: Exception) -> Exception:
    """``err`` with its message prefixed by ``node_id`` (same type when it can be rebuilt)."""
    message = f"{node_id}: {err}"
    try:
        return type(err)(message)
    except TypeError:  # an exception type whose constructor takes other arguments
        return ValueError(message)


def node_errors(method):
    """Decorate a node's FUNCTION method so its input errors name the node."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            node_id = type(self).__name__
            if str(err).startswith(f"{node_id}:"):
                raise
            raise node_error(node_id, err) from err

    return wrapper
