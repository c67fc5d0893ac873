"""User checkpoints: a torchvision classification model, its classifier head removed, as a backbone.

Accepted files (``torch.save``): a bare ``state_dict``; a dict holding one under ``state_dict`` /
``model_state_dict`` / ``model`` / ``net`` / ``weights`` (the torchvision reference scripts and the
PyTorch ImageNet example save these); or a whole model object. The architecture comes from the
file (``arch`` / ``architecture`` / ``model_name`` / ``args.model``), else from a sidecar JSON
(``{"arch": "resnet50"}``), else from matching the tensor names and shapes against every supported
architecture. Supported: ResNet-18/34/50/101/152, EfficientNet-B0…B7 and V2-S/M/L, MobileNet-V2 and
V3-Small/Large.

Safety: files are read with ``torch.load(weights_only=True)``. A whole-model pickle names classes;
only ``torch.nn`` / ``torchvision`` module classes (plus ``argparse.Namespace`` and numpy scalars)
are allow-listed, so a file naming anything else (``os.system``…) is refused before unpickling.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from operators.embeddings.backbone import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, Embedder
from operators.errors import OperatorError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
EFFICIENTNETS = (*(f"efficientnet_b{i}" for i in range(8)), *(f"efficientnet_v2_{s}" for s in "sml"))
MOBILENETS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
SUPPORTED = RESNETS + EFFICIENTNETS + MOBILENETS

_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "module")
_ARCH_KEYS = ("arch", "architecture", "model_name", "model", "network")
_PREFIXES = ("module.", "model.", "_orig_mod.", "backbone.")
_SAFE_MODULE_PREFIXES = ("torch.nn.modules.", "torchvision.models.", "torchvision.ops.")
_SAFE_EXTRA = {
    "argparse.Namespace",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
}


class CheckpointError(OperatorError):
    """A checkpoint that cannot be used; the message is safe to show as the task's ``error_msg``."""


@dataclass
class Backbone:
    """A headless torchvision model and what is needed to embed with it."""

    model: Any
    arch: str
    dim: int
    model_id: str
    input_size: int = INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    notes: list[str] = field(default_factory=list)


def parse_sidecar(data: bytes | None, source: str) -> dict[str, Any]:
    """The sidecar JSON (``{checkpoint}.json``): ``arch``, optional ``input_size``, ``mean``, ``std``."""
    if data is None:
        return {}
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint sidecar {source}.json is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint sidecar {source}.json must hold a JSON object")
    return meta


def _resolve_global(name: str) -> Any | None:
    """The object a pickle global names, only when it is allow-listed (never imports anything else)."""
    import torch

    module, _, attr = name.rpartition(".")
    if name in _SAFE_EXTRA:
        pass
    elif not name.startswith(_SAFE_MODULE_PREFIXES):
        return None
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if name in _SAFE_EXTRA or (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        return obj
    return None


def safe_load(data: bytes, source: str) -> Any:
    """``torch.load(weights_only=True)`` with torchvision/torch.nn module classes allow-listed."""
    import torch

    extra: list[Any] = []
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception:  # legacy (non-zip) files cannot be scanned; weights_only still guards them
        names = []
    refused = []
    for name in names:
        obj = _resolve_global(name)
        if obj is None:
            refused.append(name)
        else:
            extra.append(obj)
    if refused:
        raise CheckpointError(
            f"checkpoint {source} refers to {', '.join(sorted(refused)[:5])}, which is not a torch.nn or "
            "torchvision class; refusing to unpickle it (save model.state_dict() instead)"
        )
    try:
        with torch.serialization.safe_globals(extra):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(
            f"cannot load checkpoint {source}: not a readable PyTorch file ({reason})"
        ) from exc


def _arch_from(obj: Mapping[str, Any]) -> str | None:
    for key in _ARCH_KEYS:
        value = obj.get(key)
        if isinstance(value, str):
            return value
    args = obj.get("args")
    if isinstance(args, Mapping):
        value = args.get("model") or args.get("arch")
    else:
        value = getattr(args, "model", None) or getattr(args, "arch", None)
    return value if isinstance(value, str) else None


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, source: str) -> tuple[Any, str | None]:
    """(state_dict or nn.Module, architecture named in the file)."""
    import torch

    if isinstance(obj, torch.nn.Module) or _is_state_dict(obj):
        return obj, None
    if isinstance(obj, Mapping):
        arch = _arch_from(obj)
        for key in _STATE_KEYS:
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module) or _is_state_dict(inner):
                return inner, arch
    raise CheckpointError(
        f"checkpoint {source} holds neither a model nor a state_dict (found {type(obj).__name__}"
        + (f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else "")
        + ")"
    )


def _strip(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop wrapper prefixes (DataParallel ``module.``, Lightning ``model.``, compile ``_orig_mod.``)."""
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                changed = True
    return out


_HEAD_BY_CLASS = {
    "ResNet": "fc",
    "EfficientNet": "classifier",
    "MobileNetV2": "classifier",
    "MobileNetV3": "classifier",
}


def _head_name(arch: str) -> str:
    return "fc" if arch.startswith("resnet") else "classifier"


def _body(state: Mapping[str, Any], arch: str) -> dict[str, Any]:
    head = _head_name(arch) + "."
    return {
        k: v for k, v in state.items() if not k.startswith(head) and not k.endswith("num_batches_tracked")
    }


def _skeleton(arch: str) -> Any:
    import torch
    import torchvision

    with torch.device("meta"):
        return torchvision.models.get_model(arch, weights=None)


def _signature(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def infer_arch(state: Mapping[str, Any]) -> str | None:
    """The supported architecture whose tensor names and shapes (head excluded) match ``state``."""
    family = RESNETS if any(k.startswith("layer1.") for k in state) else EFFICIENTNETS + MOBILENETS
    for arch in family:
        want = _signature(_body(state, arch))
        if want == _signature(_body(_skeleton(arch).state_dict(), arch)):
            return arch
    return None


def _normalise_arch(name: str) -> str:
    arch = name.strip().lower().replace("-", "_")
    aliases = {"resnet_v1_50": "resnet50", "resnet_v1_101": "resnet101", "mobilenetv2": "mobilenet_v2"}
    arch = aliases.get(arch, arch)
    if arch.startswith("efficientnet") and not arch.startswith("efficientnet_"):
        arch = "efficientnet_" + arch[len("efficientnet") :]
    return arch


def _headless(model: Any, arch: str) -> Any:
    import torch

    setattr(model, _head_name(arch), torch.nn.Identity())
    return model


def _dim_of(model: Any) -> int:
    import torch

    with torch.inference_mode():
        return int(model.eval()(torch.zeros(1, 3, 64, 64)).shape[1])


def load_checkpoint(data: bytes, source: str, sidecar: Mapping[str, Any] | None = None) -> Backbone:
    """A ``Backbone`` from checkpoint bytes; ``CheckpointError`` (clear message) when unusable."""
    import torch
    import torchvision

    meta = dict(sidecar or {})
    obj, file_arch = _unwrap(safe_load(data, source), source)
    named = file_arch or next((meta[k] for k in _ARCH_KEYS if isinstance(meta.get(k), str)), None)
    digest = hashlib.sha256(data).hexdigest()[:16]

    if isinstance(obj, torch.nn.Module):
        head = _HEAD_BY_CLASS.get(type(obj).__name__)
        if head is None or not type(obj).__module__.startswith("torchvision.models."):
            raise CheckpointError(
                f"checkpoint {source} holds a {type(obj).__name__} model; supported: {', '.join(SUPPORTED)}"
            )
        inferred = None if named else infer_arch(obj.state_dict())
        arch = _normalise_arch(named) if named else (inferred or type(obj).__name__.lower())
        model = obj
        setattr(model, head, torch.nn.Identity())
    else:
        state = _strip(obj)
        arch = _normalise_arch(named) if named else infer_arch(state)
        if arch is None:
            raise CheckpointError(
                f"checkpoint {source}: cannot tell its architecture from the tensor names; name it in a "
                f'sidecar {source}.json like {{"arch": "resnet50"}} (supported: {", ".join(SUPPORTED)})'
            )
        if arch not in SUPPORTED:
            raise CheckpointError(
                f"checkpoint {source}: architecture {arch!r} is not supported "
                f"(supported: {', '.join(SUPPORTED)})"
            )
        model = _headless(torchvision.models.get_model(arch, weights=None), arch)
        result = model.load_state_dict(_body(state, arch), strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise CheckpointError(
                f"checkpoint {source} does not fit {arch}: missing {missing[:3]}, "
                f"unexpected {result.unexpected_keys[:3]} ({len(missing)} missing, "
                f"{len(result.unexpected_keys)} unexpected tensors)"
            )
    model = model.float().eval()
    try:
        dim = _dim_of(model)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {source}: the model does not run on an image ({exc})") from exc
    size = int(meta.get("input_size", INPUT_SIZE))
    mean = tuple(float(v) for v in meta.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in meta.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3 or not 16 <= size <= 1024:
        raise CheckpointError(f"checkpoint sidecar {source}.json: mean/std need 3 values, input_size 16–1024")
    return Backbone(
        model=model,
        arch=arch,
        dim=dim,
        model_id=f"ckpt-{digest}-{arch}",
        input_size=size,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
    )


_lock = threading.Lock()
_loaded: OrderedDict[tuple[str, str, str], Embedder] = OrderedDict()
_KEEP = 2


def checkpoint_embedder(
    data: bytes, source: str, device: str = "cpu", sidecar: Mapping[str, Any] | None = None
) -> Embedder:
    """An ``Embedder`` for a user checkpoint; the last two loaded are kept per process."""
    key = (hashlib.sha256(data).hexdigest(), json.dumps(dict(sidecar or {}), sort_keys=True), device)
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        backbone = load_checkpoint(data, source, sidecar)
        embedder = Embedder(
            backbone.model,
            device,
            backbone.dim,
            model_id=backbone.model_id,
            input_size=backbone.input_size,
            mean=backbone.mean,
            std=backbone.std,
            features=backbone.model,
        )
        _loaded[key] = embedder
        while len(_loaded) > _KEEP:
            _loaded.popitem(last=False)
        return embedder
