"""ComfyUI nodes of comfyui-demo: thin V1 wrappers over ``demo_core``.

``NODE_CONFIG`` is the one registry: node id → class and display name; both ComfyUI mappings are
generated from it.  Importing this package registers the ``models/demo`` folder with ComfyUI
(when running inside it).
"""

from . import comfy_host
from .audio import DemoEncodeAudio
from .calibration import DemoCalibrateFactors
from .editing import DemoEditFactors, DemoMixMotion
from .io import DemoLoadMotion, DemoPreviewMotion, DemoSaveMotion
from .loaders import DemoLoadModel
from .motion import DemoMotionFromVideo, DemoSampleMotion
from .portrait import DemoEncodePortrait, DemoPasteBack
from .render import DemoRenderFrames, DemoRenderToVideo

__all__ = ["NODE_CONFIG", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

comfy_host.register_models_folder()

NODE_CONFIG = {
    "DemoLoadModel": {"class": DemoLoadModel, "name": "Demo Load Model"},
    "DemoEncodePortrait": {"class": DemoEncodePortrait, "name": "Demo Encode Portrait"},
    "DemoEncodeAudio": {"class": DemoEncodeAudio, "name": "Demo Encode Audio"},
    "DemoSampleMotion": {"class": DemoSampleMotion, "name": "Demo Sample Motion"},
    "DemoMotionFromVideo": {"class": DemoMotionFromVideo, "name": "Demo Motion From Video"},
    "DemoEditFactors": {"class": DemoEditFactors, "name": "Demo Edit Factors"},
    "DemoMixMotion": {"class": DemoMixMotion, "name": "Demo Mix Motion"},
    "DemoCalibrateFactors": {"class": DemoCalibrateFactors, "name": "Demo Calibrate Factors"},
    "DemoRenderFrames": {"class": DemoRenderFrames, "name": "Demo Render Frames"},
    "DemoRenderToVideo": {"class": DemoRenderToVideo, "name": "Demo Render To Video"},
    "DemoPasteBack": {"class": DemoPasteBack, "name": "Demo Paste Back"},
    "DemoSaveMotion": {"class": DemoSaveMotion, "name": "Demo Save Motion"},
    "DemoLoadMotion": {"class": DemoLoadMotion, "name": "Demo Load Motion"},
    "DemoPreviewMotion": {"class": DemoPreviewMotion, "name": "Demo Preview Motion"},
}

NODE_CLASS_MAPPINGS = {node_id: entry["class"] for node_id, entry in NODE_CONFIG.items()}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: entry["name"] for node_id, entry in NODE_CONFIG.items()}
