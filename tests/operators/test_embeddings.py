"""Embeddings: the default backbone on real photos, precision, user checkpoints, the content cache.

Checkpoints are torchvision models with random weights (``weights=None``: nothing is downloaded),
saved as a state_dict and as a whole model, read from a local file and from the local object store.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from operators import registry
from operators.cleaning.pcc import PCC, PccError
from operators.decode import decode_image
from operators.embeddings.backbone import (
    COMPILE_ENV,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INDUCTOR_CACHE_ENV,
    PRECISION_ENV,
    Embedder,
    SharedExclusiveLock,
    cpu_has_bf16,
    cpu_has_fp16,
    default_compile,
    default_precision,
    get_embedder,
    has_cxx_compiler,
    load_default_model,
    persistent_inductor_cache,
    preprocess,
    resize_batch,
)
from operators.embeddings.cache import EmbeddingCache, content_key
from operators.embeddings.checkpoint import (
    FINGERPRINTS,
    CheckpointError,
    checkpoint_embedder,
    fingerprint,
    load_checkpoint,
)
from operators.kinds import OperatorEnv
from operators.sample import Sample
from storage.objectstore.local import LocalObjectStore
from storage.uris import parse_uri
from tests.conftest import FASHION, PHOTOS

ROOT = Path(__file__).resolve().parents[2]
NATURAL = [
    "mate-Elephants",
    "mate-LadyBird",
    "opencv-baboon",
    "opencv-fruits",
    "opencv-butterfly",
    "opencv-home",
]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [np.array(decode_image((PHOTOS / f"{n}.jpg").read_bytes(), max_side=320).pixels) for n in NATURAL]


def _saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _direct(model: torch.nn.Module, images: list[np.ndarray]) -> np.ndarray:
    """Reference penultimate features of a torchvision classifier, computed without dsproc."""
    model = model.eval()
    head = "fc" if isinstance(model, torchvision.models.ResNet) else "classifier"
    setattr(model, head, torch.nn.Identity())
    with torch.inference_mode():
        x = torch.from_numpy(preprocess(images, 224, IMAGENET_MEAN, IMAGENET_STD))
        return torch.nn.functional.normalize(model(x), dim=1).numpy()


def test_default_embedder_matches_the_plain_model(photos: list[np.ndarray]) -> None:
    embedder = get_embedder("cpu")  # compiled (frozen, fixed batch) where a C++ compiler exists
    assert embedder.compiled == default_compile("cpu")
    rows = embedder.embed(photos, batch_size=4)
    assert rows.shape == (len(photos), 1280) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    plain = load_default_model().eval()  # a fresh copy: BatchNorm not folded, NCHW
    with torch.inference_mode():
        ref = plain.extract_features(torch.from_numpy(preprocess(photos))).mean(dim=(2, 3))
        ref = torch.nn.functional.normalize(ref, dim=1).numpy()
    floor = {"fp32": 0.9999, "fp16": 0.999, "bf16": 0.99, "bf16-mixed": 0.998}[embedder.precision]
    assert float((rows * ref).sum(axis=1).min()) > floor
    # Different photos are far apart; batch size does not change a row.
    assert float((rows @ rows.T - np.eye(len(rows))).max()) < 0.9
    np.testing.assert_allclose(embedder.embed(photos[::-1], batch_size=5)[::-1], rows, atol=1e-5)
    # A full batch runs the compiled graph, the rest eager: the same rows either way.
    doubled = embedder.embed(photos + photos, batch_size=12)
    np.testing.assert_allclose(doubled, np.concatenate([rows, rows]), atol=1e-5)


@pytest.mark.parametrize(("precision", "floor"), [("fp16", 0.999), ("bf16", 0.99), ("bf16-mixed", 0.998)])
def test_half_precision_autocast_agrees_with_fp32(
    photos: list[np.ndarray], precision: str, floor: float
) -> None:
    model = load_default_model()
    fp32 = Embedder(model, precision="fp32", compile=False).embed(photos)
    half = Embedder(model, precision=precision, compile=False)  # type: ignore[arg-type]
    assert half.model_id.endswith(f"/{precision}")
    assert float((half.embed(photos) * fp32).sum(axis=1).min()) >= floor


def test_half_precision_overflow_is_recomputed_in_fp32(photos: list[np.ndarray]) -> None:
    conv = torch.nn.Conv2d(3, 4, 1)
    torch.nn.init.constant_(conv.weight, 3e4)  # ~1e5 per pixel: beyond fp16's 65504
    model = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    fp32 = Embedder(model, dim=4, headless=True, precision="fp32", compile=False).embed(photos)
    fp16 = Embedder(model, dim=4, headless=True, precision="fp16", compile=False).embed(photos)
    assert np.isfinite(fp16).all()
    np.testing.assert_allclose(fp16, fp32, atol=1e-5)


def test_mixed_precision_keeps_the_stem_in_fp32_and_needs_the_lite_network() -> None:
    model = load_default_model()
    mixed = Embedder(model, precision="bf16-mixed", compile=False)
    assert mixed.model_id.endswith("/bf16-mixed")
    # A gradient: the image whose embedding bf16 throughout moves most (cosine 0.98 to fp32).
    ramp = np.repeat(np.linspace(0, 255, 224, dtype=np.float32)[None, :, None], 224, axis=0)
    image = np.repeat(ramp, 3, axis=2).astype(np.uint8)
    fp32 = Embedder(model, precision="fp32", compile=False).embed([image])
    assert float((mixed.embed([image]) * fp32).sum()) > 0.998
    # Other networks and CUDA have no known stem: they run fp32.
    assert Embedder(torch.nn.Flatten(), dim=3, headless=True, precision="bf16-mixed").precision == "fp32"


@pytest.mark.skipif(not has_cxx_compiler(), reason="inductor needs a C++ compiler; CI images have one")
def test_compiled_cpu_embedder_freezes_its_weights(photos: list[np.ndarray]) -> None:
    # Frozen means the weights are constants of the compiled graph (folded, prepacked for oneDNN):
    # changing the module afterwards no longer changes what the graph computes.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    embedder = Embedder(model, dim=8, headless=True, precision="fp32", compile=True, batch_size=4, lanes=1)
    pixels = resize_batch(photos[:4], 32)
    before = embedder.embed_resized(pixels)
    with torch.no_grad():
        for p in embedder.model.parameters():  # the embedder's own (BatchNorm-folded) copy
            p.add_(torch.randn_like(p))
    np.testing.assert_allclose(embedder.embed_resized(pixels), before, atol=1e-6)
    embedder.compiled = False  # the eager module does see the change
    assert np.abs(embedder.embed_resized(pixels) - before).max() > 1e-3


def test_lanes_embed_batches_side_by_side_with_the_same_rows(photos: list[np.ndarray]) -> None:
    model = load_default_model()
    pixels = resize_batch(photos, 176)
    one = Embedder(model, precision="fp32", compile=False, lanes=1).embed_resized(pixels)
    two = Embedder(model, precision="fp32", compile=False, lanes=2)
    np.testing.assert_array_equal(two.embed_resized(pixels), one)
    # Callers on several threads share the lanes; every caller gets its own rows.
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda k: two.embed_resized(pixels[k::3]), range(3)))
    for k, out in enumerate(outs):
        np.testing.assert_array_equal(out, one[k::3])


def test_default_embedder_serves_several_threads_at_once(photos: list[np.ndarray]) -> None:
    embedder = get_embedder("cpu")  # compiled where a C++ compiler exists; first calls compile alone
    pixels = resize_batch(photos[:48], 176)
    alone = embedder.embed_resized(pixels)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda k: embedder.embed_resized(pixels[k * 16 : k * 16 + 16]), range(3)))
    np.testing.assert_allclose(np.concatenate(outs), alone, atol=1e-6)


def test_shared_exclusive_lock_keeps_exclusive_holders_alone() -> None:
    gate = SharedExclusiveLock()
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    guard = threading.Lock()

    def hold(kind: str) -> None:
        with gate.exclusive() if kind == "x" else gate.shared():
            with guard:
                inside.append(kind)
                overlaps.append(tuple(inside))
            time.sleep(0.01)
            with guard:
                inside.remove(kind)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(hold, ["s", "x", "s", "s", "x", "s", "s", "x"] * 3))
    assert any(o.count("s") > 1 for o in overlaps)  # shared holders do overlap
    assert all(o == ("x",) for o in overlaps if "x" in o)  # an exclusive one never does


def test_precision_and_compile_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    # bf16 throughout is never chosen by itself: its minimum cosine on real photos is below 0.99.
    expected = "fp16" if cpu_has_fp16() else "bf16-mixed" if cpu_has_bf16() else "fp32"
    assert default_precision("cpu") == expected
    assert default_precision("cuda:0") == "fp32"
    assert default_compile("cpu") == has_cxx_compiler() and not default_compile("cuda")
    assert not Embedder(torch.nn.Flatten(), dim=3, headless=True).compiled  # checkpoints: eager
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert default_precision("cuda") == "bf16" and not default_compile("cpu")
    monkeypatch.setenv(COMPILE_ENV, "1")
    assert default_compile("cuda")
    monkeypatch.setenv(PRECISION_ENV, "fp8")
    with pytest.raises(ValueError, match="fp32, fp16, bf16, bf16-mixed"):
        default_precision("cpu")
    # Inductor's cache outlives /tmp unless TORCHINDUCTOR_CACHE_DIR says where it goes.
    monkeypatch.setenv(INDUCTOR_CACHE_ENV, "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    persistent_inductor_cache()
    assert os.environ[INDUCTOR_CACHE_ENV] == str(tmp_path / "dsproc" / "torchinductor")
    monkeypatch.setenv(INDUCTOR_CACHE_ENV, "/elsewhere")
    persistent_inductor_cache()
    assert os.environ[INDUCTOR_CACHE_ENV] == "/elsewhere"


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_fingerprints_match_torchvision(arch: str) -> None:
    with torch.device("meta"):
        state = torchvision.models.get_model(arch, weights=None).state_dict()
    family = "resnet" if arch.startswith("resnet") else "classifier"
    assert FINGERPRINTS[fingerprint(state, family)] == arch


def test_resnet18_state_dict_and_whole_model(photos: list[np.ndarray], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    as_state = _saved(model.state_dict())
    as_whole = _saved(model)
    as_reference_script = _saved(
        {"model": model.state_dict(), "epoch": 3, "args": argparse.Namespace(model="resnet18")}
    )
    as_data_parallel = _saved({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}})
    reference = _direct(model, photos)
    for data in (as_state, as_whole, as_reference_script, as_data_parallel):
        backbone = load_checkpoint(data, "r18.pth")
        assert backbone.arch == "resnet18" and backbone.dim == 512
        rows = checkpoint_embedder(data, "r18.pth").embed(photos)
        assert rows.shape == (len(photos), 512)
        assert float((rows * reference).sum(axis=1).min()) > 0.9999


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"not a checkpoint at all", "not a torch.save checkpoint"),
        (_saved({"w": torch.zeros(3)})[:200], "damaged or truncated"),
        (_saved({"epoch": 3}), "neither a model nor a state_dict"),
        (_saved(torchvision.models.squeezenet1_0(weights=None)), "holds a SqueezeNet model"),
        (_saved({"conv.weight": torch.zeros(2, 3, 3, 3)}), "cannot tell its architecture"),
        (_saved({"arch": "vgg11", "state_dict": {"x": torch.zeros(1)}}), "'vgg11' is not supported"),
    ],
)
def test_unusable_checkpoints_fail_clearly(data: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(data, "bad.pth")


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/dsproc-pwned",))


def test_pickled_code_is_refused_before_unpickling() -> None:
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(_saved({"model": _Exploit()}), "evil.pth")


def test_sidecar_names_the_architecture() -> None:
    state = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(CheckpointError, match="does not fit resnet34"):
        load_checkpoint(_saved(state), "r.pth", {"arch": "resnet34"})
    backbone = load_checkpoint(_saved(state), "r.pth", {"arch": "resnet18", "input_size": 160})
    assert (backbone.arch, backbone.input_size) == ("resnet18", 160)


def _fashion_samples(n: int) -> list[Sample]:
    out = []
    for path in sorted((FASHION / "Bag").glob("*.png"))[:n]:
        data = path.read_bytes()
        out.append(
            Sample(
                sample_id=path.stem,
                source=f"obs://f/{path.name}",
                name=path.name,
                data=data,
                pixels=decode_image(data).pixels,
            )
        )
    return out


def _env(store: LocalObjectStore, samples: list[Sample], cache: Path | None) -> OperatorEnv:
    def read_bytes(uri: str) -> bytes:  # what the worker's env does
        ref = parse_uri(uri)
        return store.get_bytes(ref.bucket, ref.key)

    def list_images(folder: str) -> Iterator[Sample]:
        yield from (replace(s) for s in samples)

    return OperatorEnv(cache_dir=cache, read_bytes=read_bytes, list_images=list_images)


def test_pcc_loads_checkpoints_from_a_file_and_from_the_object_store(tmp_path: Path) -> None:
    model = torchvision.models.resnet18(weights=None)
    local = tmp_path / "weights" / "resnet18.pth"
    local.parent.mkdir()
    local.write_bytes(_saved(model.state_dict()))
    store = LocalObjectStore(tmp_path / "store")
    store.ensure_bucket("models")
    store.put_bytes("models", "cls/whole.pt", _saved(model))
    store.put_bytes("models", "cls/bad.pth", b"\x00" * 64)
    store.put_bytes("models", "cls/plain.bin", _saved(model.state_dict()))
    store.put_bytes("models", "cls/plain.bin.json", json.dumps({"arch": "resnet18"}).encode())
    samples = _fashion_samples(6)
    ids = {}
    for path in (str(local), "obs://models/cls/whole.pt", "/models/cls/plain.bin"):
        op = registry.build("PCC", {"prototype_sample_path": "obs://ex/p/", "checkpoint_path": path})
        assert isinstance(op, PCC)
        op.begin(_env(store, samples[:3], tmp_path / "cache"))
        assert op.embedder.dim == 512 and "resnet18" in op.embedder.model_id
        op.observe([replace(s) for s in samples[3:]])
        verdicts = op.decide()
        assert len(verdicts) == 3
        assert all("resnet18" in v.evidence["model"] for v in verdicts.values())
        ids[path] = op.embedder.model_id
    # Same weights, same embeddings: state_dict and whole model rows agree.
    a = checkpoint_embedder(local.read_bytes(), "a").embed([s.pixels for s in samples])  # type: ignore[misc]
    b = checkpoint_embedder(store.get_bytes("models", "cls/whole.pt"), "b").embed([s.pixels for s in samples])  # type: ignore[misc]
    assert float((a * b).sum(axis=1).min()) > 0.9999

    for path, message in [
        ("obs://models/cls/bad.pth", "checkpoint_path: cannot load checkpoint obs://models/cls/bad.pth"),
        ("obs://models/cls/missing.pth", "neither a local file nor a readable object"),
        (str(tmp_path / "weights"), "is a folder"),
    ]:
        op = registry.build("PCC", {"prototype_sample_path": "obs://ex/p/", "checkpoint_path": path})
        with pytest.raises(PccError, match=message):
            op.begin(_env(store, samples[:3], None))


def test_embedding_cache(tmp_path: Path) -> None:
    (sample,) = _fashion_samples(1)
    key = content_key(sample)
    changed = replace(sample, pixels=np.ascontiguousarray(sample.pixels[::-1]), pixels_changed=True)  # type: ignore[index]
    assert content_key(changed) != key
    assert content_key(replace(sample, sample_id="other", name="x.png")) == key  # content, not name
    cache = EmbeddingCache(tmp_path, "model-a", 4)
    cache.put_many([(key, np.arange(4, dtype=np.float32))])
    np.testing.assert_array_equal(cache.get_many([key, b"x" * 32])[key], np.arange(4, dtype=np.float32))
    assert EmbeddingCache(tmp_path, "model-b", 4).get_many([key]) == {}  # keyed by model too
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    broken = EmbeddingCache(blocked, "model-a", 4)  # a file where the folder should be
    assert not broken.enabled and broken.get_many([key]) == {}
    broken.put_many([(key, np.zeros(4, np.float32))])


def test_importing_and_embedding_on_cpu_never_touches_cuda() -> None:
    code = (
        "import sys\n"
        "import operators.embeddings, operators.cleaning\n"
        "assert 'torch' not in sys.modules, 'torch imported at import time'\n"
        "import torch, numpy as np\n"
        "def refuse(*a, **k): raise RuntimeError('CUDA initialised')\n"
        "torch.cuda._lazy_init = refuse\n"
        "from operators import registry\n"
        "registry.registered()\n"
        "from operators.embeddings import get_embedder\n"
        "print(get_embedder('cpu').embed([np.zeros((40, 30, 3), np.uint8)]).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(1, 1280)" in done.stdout
