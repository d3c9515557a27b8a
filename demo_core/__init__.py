"""DEMO engine: disentangled motion-latent flow matching for talking portraits.

Pure PyTorch; never imports ComfyUI.  Usable from Python and from ``python -m demo_core``.
"""

__version__ = "0.1.0"
