"""Image embeddings from CNN backbones (default: pretrained EfficientNet-Lite0, installed offline)."""

from operators.embeddings.backbone import Embedder, get_embedder

__all__ = ["Embedder", "get_embedder"]
