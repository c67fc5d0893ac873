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
        raise CheckpointError(f"cannot load checkpoint {source}: {_why(data, exc)}") from exc


def _why(data: bytes, exc: Exception) -> str:
    """A short reason for a failed ``torch.load`` (torch's own messages are long and generic)."""
    if not data:
        return "the file is empty"
    if data[:4] == b"PK\x03\x04":
        return "the file is a damaged or truncated torch.save archive"
    if data[:1] != b"\x80":
        return f"the file is not a torch.save checkpoint (it starts with {data[:8]!r})"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Unsupported" in ln or "error" in ln.lower()] or lines[-1:]
    detail = useful[0] if useful else ""
    return f"the legacy-format file cannot be read safely ({detail[:160] or exc.__class__.__name__})"


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
    return {k: v for k, v in state.items() if not k.startswith(head)}


# (tensor count, element count) of each architecture's weights without the classifier head and the
# BatchNorm step counters; tests/operators/test_embeddings.py checks these against torchvision.
FINGERPRINTS: dict[tuple[int, int], str] = {
    (100, 11186112): "resnet18",
    (180, 21301696): "resnet34",
    (265, 23561152): "resnet50",
    (520, 42605504): "resnet101",
    (775, 58295232): "resnet152",
    (309, 4049564): "efficientnet_b0",
    (437, 6575232): "efficientnet_b1",
    (437, 7768562): "efficientnet_b2",
    (494, 10783528): "efficientnet_b3",
    (608, 17673816): "efficientnet_b4",
    (736, 28513520): "efficientnet_b5",
    (850, 40960136): "efficientnet_b6",
    (1035, 64097680): "efficientnet_b7",
    (670, 20331360): "efficientnet_v2_s",
    (961, 53150388): "efficientnet_v2_m",
    (1329, 117746848): "efficientnet_v2_l",
    (260, 2257984): "mobilenet_v2",
    (206, 939120): "mobilenet_v3_small",
    (262, 2996352): "mobilenet_v3_large",
}


def fingerprint(state: Mapping[str, Any], arch_family: str) -> tuple[int, int]:
    """(tensor count, element count) of ``state`` without the head (``fc`` or ``classifier``)."""
    body = {k: v for k, v in _body(state, arch_family).items() if not k.endswith("num_batches_tracked")}
    return len(body), sum(int(v.numel()) for v in body.values())


def infer_arch(state: Mapping[str, Any]) -> str | None:
    """The supported architecture whose weights (head excluded) have the size of ``state``'s.

    A cheap lookup; the strict ``load_state_dict`` that follows checks every name and shape.
    """
    family = "resnet" if any(k.startswith("layer1.") for k in state) else "classifier"
    return FINGERPRINTS.get(fingerprint(state, family))


def _normalise_arch(name: str) -> str:
    arch = name.strip().lower().replace("-", "_")
    aliases = {"resnet_v1_50": "resnet50", "resnet_v1_101": "resnet101", "mobilenetv2": "mobilenet_v2"}
    arch = aliases.get(arch, arch)
    if arch.startswith("efficientnet") and not arch.startswith("efficientnet_"):
        arch = "efficientnet_" + arch[len("efficientnet") :]
    return arch


def _skeleton(arch: str) -> Any:
    """The architecture without memory (meta tensors): no random initialisation to pay for."""
    import torch
    import torchvision

    with torch.device("meta"):
        return torchvision.models.get_model(arch, weights=None)


def _assign(model: Any, state: Mapping[str, Any], source: str, arch: str) -> Any:
    """Load ``state`` into a meta-device ``model`` strictly (BatchNorm step counters may be absent)."""
    import torch

    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        detail = str(exc).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {source} does not fit {arch}: {detail[1].strip() if len(detail) > 1 else exc}"
        ) from exc
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {source} does not fit {arch}: missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]} ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors)"
        )
    for module in model.modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf is not None and buf.is_meta:
                module.register_buffer(name, torch.zeros(buf.shape, dtype=buf.dtype))
    return model


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
        model = _assign(_headless(_skeleton(arch), arch), _body(state, arch), source, arch)
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
            headless=True,
        )
        _loaded[key] = embedder
        while len(_loaded) > _KEEP:
            _loaded.popitem(last=False)
        return embedder
