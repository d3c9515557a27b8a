"""comfyui-demo: DEMO talking portraits for ComfyUI.

ComfyUI imports this file as the package ``custom_nodes/<pack>``; the nodes live in the ``nodes``
subpackage (relative import: ComfyUI has a top-level module of its own called ``nodes``), and the
engine ``demo_core`` is imported by its absolute name, so the pack folder is put on ``sys.path``.

The node mappings are loaded on first access (PEP 562 ``__getattr__``), which ComfyUI does right
after importing this file.  Importing the file alone stays cheap and cannot fail: pytest imports it
as the parent package of ``tests/`` when the checkout folder name is a valid identifier, and test
collection must not depend on the whole engine importing.
"""

import importlib
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

WEB_DIRECTORY = "./web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def __getattr__(name):
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        nodes = importlib.import_module(".nodes", __name__)
        globals().update(NODE_CLASS_MAPPINGS=nodes.NODE_CLASS_MAPPINGS,
                         NODE_DISPLAY_NAME_MAPPINGS=nodes.NODE_DISPLAY_NAME_MAPPINGS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
