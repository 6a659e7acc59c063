"""From (model, image) to tensors and plotly figures: branch activations, Grad-CAMs, aux heads,
input attributions. No Gradio here: everything works from a notebook."""

from .attributions import Attribution, Method
from .explorer import HEADS, Ablation, Exploration, Explorer, Knockout, Prediction, ablate, classify, explore
from .images import ImageError, load_image

__all__ = [
    "HEADS",
    "Attribution",
    "Method",
    "Ablation",
    "Exploration",
    "Explorer",
    "Knockout",
    "Prediction",
    "ImageError",
    "ablate",
    "classify",
    "explore",
    "load_image",
]
