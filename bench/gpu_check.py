"""One prepared GPU check for PCC: CUDA embeddings vs CPU ones, identical decisions, GPU throughput.

Run from the repository root on a machine with a CUDA GPU (exit status 0 = every check passed):

    python bench/gpu_check.py [--data DIR] [--throughput-images 4096]

1. ``import operators…`` and building a CPU embedder must not initialise CUDA (the Celery parent
   process never touches the GPU).
2. EfficientNet-Lite0 in fp32 eager on ``cuda`` (TF32 off) against fp32 eager on the CPU, on real
   images: minimum cosine must be ≥ 0.9999. The two defaults (CUDA: fp32 eager; CPU: compiled,
   fp16 on CPUs with native fp16, bf16-mixed on CPUs with native bf16, else fp32) must agree to
   ≥ 0.999 (≥ 0.998 for a bf16-mixed CPU default, its documented bound). bf16 autocast on CUDA is
   reported for information (≥ 0.99 expected).
3. PCC decisions through the operator itself (``OperatorEnv(device="cuda")`` vs ``"cpu"``), on the
   Fashion-MNIST protocol of tests/operators/test_pcc.py (Trouser + Bag wanted, 20 % contamination,
   with and without criticisms, 4 draws): with the CPU side compiled in fp32 (the CUDA default's
   precision), verdicts must be identical, sample by sample. Against the CPU default (whose
   precision follows the host CPU) the differing verdicts are reported, not failed.
4. Throughput: images/s of ``embed_resized`` at the batch size chosen for the free GPU memory,
   fp32 and bf16, after warm-up.

Images come from ``--data`` (default: ``shared/datasets`` in or beside the repository, holding
``fashion-mnist-500/`` and ``photos/``). Without them the script falls back to generated shapes (the
agreement and identity checks still run; the decisions are then on synthetic classes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def find_data(given: Path | None) -> Path | None:
    for cand in [given, ROOT / "shared" / "datasets", ROOT.parent / "shared" / "datasets"]:
        if cand is not None and (cand / "fashion-mnist-500").is_dir():
            return cand
    return None


def generated_classes(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """10 classes of drawn shapes (64×64), 50 images each, when the real datasets are absent."""
    import cv2

    out: dict[str, list[np.ndarray]] = {}
    for c in range(10):
        images = []
        for _ in range(50):
            img = np.full((64, 64, 3), int(rng.integers(0, 60)), np.uint8)
            colour = tuple(int(v) for v in rng.integers(120, 255, 3))
            centre = (int(rng.integers(20, 44)), int(rng.integers(20, 44)))
            size = int(rng.integers(8, 18))
            if c % 5 == 0:
                cv2.circle(img, centre, size, colour, -1)
            elif c % 5 == 1:
                cv2.rectangle(
                    img,
                    (centre[0] - size, centre[1] - size),
                    (centre[0] + size, centre[1] + size),
                    colour,
                    -1,
                )
            elif c % 5 == 2:
                cv2.line(img, (0, centre[1]), (63, centre[1] + size), colour, 3)
            elif c % 5 == 3:
                cv2.putText(img, str(c), (10, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.5, colour, 3)
            else:
                cv2.ellipse(img, centre, (size, size // 2), 30, 0, 360, colour, 2)
            if c >= 5:
                img = cv2.GaussianBlur(img, (7, 7), 0)
            images.append(img)
        out[f"class{c}"] = images
    return out


def load_fashion(data: Path) -> dict[str, list[np.ndarray]]:
    from operators.decode import decode_image

    root = data / "fashion-mnist-500"
    return {
        d.name: [np.array(decode_image(p.read_bytes()).pixels) for p in sorted(d.glob("*.png"))]
        for d in sorted(root.iterdir())
        if d.is_dir()
    }


def as_samples(label: str, images: list[np.ndarray]) -> list:
    from operators.sample import Sample

    return [
        Sample(
            sample_id=f"{label}-{i:03d}",
            source=f"obs://gpu-check/{label}/{i:03d}.png",
            name=f"{i:03d}.png",
            pixels=img,
        )
        for i, img in enumerate(images)
    ]


def pcc_verdicts(
    device: str, classes: dict[str, list], wanted: tuple[str, str], seed: int, crit: bool, cache: Path
) -> dict:
    """The operator's verdicts for one draw of the test protocol on ``device``.

    Each device has its own embedding cache (the draws share images), so CUDA decisions are never
    made from embeddings the CPU computed.
    """
    from operators import registry
    from operators.kinds import OperatorEnv

    rng = np.random.default_rng(seed)
    protos, samples = [], []
    for label in wanted:
        order = rng.permutation(len(classes[label]))
        protos += [classes[label][i] for i in order[:20]]
        samples += [classes[label][i] for i in order[20:50]]
    others = [c for c in classes if c not in wanted]
    pools = {c: list(rng.permutation(len(classes[c]))) for c in others}
    crits = [classes[c][pools[c].pop()] for c in others for _ in range(5)]
    samples += [classes[c][pools[c].pop()] for c in rng.choice(others, 15)]
    folders = {"obs://x/p/": protos, "obs://x/c/": crits}

    def list_images(folder: str):  # type: ignore[no-untyped-def]
        yield from (replace(s) for s in folders[folder])

    params = {
        "prototype_sample_path": "obs://x/p/",
        **({"criticism_sample_path": "obs://x/c/"} if crit else {}),
    }
    op = registry.build("PCC", params)
    op.begin(OperatorEnv(device=device, seed=seed, cache_dir=cache, list_images=list_images))  # type: ignore[attr-defined]
    for start in range(0, len(samples), 32):
        op.observe([replace(s) for s in samples[start : start + 32]])  # type: ignore[attr-defined]
    return op.decide()  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path)
    parser.add_argument("--throughput-images", type=int, default=4096)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script without a GPU")
    args = parser.parse_args()
    report: dict[str, object] = {}
    failures: list[str] = []

    import torch

    import operators.cleaning  # noqa: F401
    from operators.embeddings import backbone
    from operators.embeddings.backbone import Embedder, get_embedder, load_default_model, resize_batch

    get_embedder("cpu").embed([np.zeros((32, 32, 3), np.uint8)])
    report["cuda_initialised_by_cpu_path"] = torch.cuda.is_initialized()
    if torch.cuda.is_initialized():
        failures.append("importing operators / embedding on CPU initialised CUDA")
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device available"}))
        return 2
    report["device"] = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu (dry run)"

    def sync() -> None:
        if dev == "cuda":
            torch.cuda.synchronize()

    report["cpu_threads"] = torch.get_num_threads()

    data = find_data(args.data)
    rng = np.random.default_rng(0)
    if data is not None:
        raw = load_fashion(data)
        wanted = ("Trouser", "Bag")
        photos = sorted((data / "photos").glob("*.jpg"))
        from operators.decode import decode_image

        extra = [np.array(decode_image(p.read_bytes(), max_side=640).pixels) for p in photos]
        report["data"] = str(data)
    else:
        raw = generated_classes(rng)
        wanted = ("class0", "class1")
        extra = []
        report["data"] = "generated shapes (shared/datasets not found)"

    # 2. embeddings agree
    images = [img for imgs in raw.values() for img in imgs] + extra
    # the same arithmetic on both sides (fp32, eager) must agree tightly; the CPU default (compiled,
    # fp16 on CPUs with native fp16) is what the decisions below are compared with
    cpu = Embedder(load_default_model(), "cpu", precision="fp32", compile=False).embed(images, batch_size=64)
    cpu_default = get_embedder("cpu")
    report["cpu_default"] = {"precision": cpu_default.precision, "compiled": cpu_default.compiled}
    cpu_default_rows = cpu_default.embed(images, batch_size=64)
    gpu_embedder = get_embedder(dev)
    gpu = Embedder(load_default_model(), dev, precision="fp32", compile=False).embed(images, batch_size=256)
    cos = (cpu * gpu).sum(axis=1)
    report["fp32_cuda_vs_cpu_cos_min"] = float(cos.min())
    report["fp32_cuda_vs_cpu_cos_mean"] = float(cos.mean())
    if cos.min() < 0.9999:
        failures.append(f"CUDA fp32 embeddings differ from CPU: min cosine {cos.min():.6f}")
    cos_default = (cpu_default_rows * gpu_embedder.embed(images, batch_size=256)).sum(axis=1)
    report["default_cuda_vs_cpu_default_cos_min"] = float(cos_default.min())
    floor = 0.998 if cpu_default.precision == "bf16-mixed" else 0.999
    if cos_default.min() < floor:
        failures.append(f"default embeddings differ from the CPU default: min cosine {cos_default.min():.6f}")
    bf16 = Embedder(load_default_model(), dev, precision="bf16").embed(images, batch_size=256)
    report["bf16_cuda_vs_cpu_fp32_cos_min"] = float((cpu * bf16).sum(axis=1).min())

    # 3. identical decisions through the operator
    classes = {label: as_samples(label, imgs) for label, imgs in raw.items()}
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    fp32_cpu = Embedder(load_default_model(), "cpu", precision="fp32", compile=cpu_default.compiled)
    key = (backbone.DEFAULT_MODEL_ID, "cpu")
    if dev == "cpu":  # a dry run: the "device" side stands in for CUDA's fp32 default
        backbone._cache[key] = fp32_cpu
    on_device = {
        (seed, crit): pcc_verdicts(dev, classes, wanted, seed, crit, tmp / "device")
        for seed in range(4)
        for crit in (False, True)
    }
    for label, embedder in (("fp32", fp32_cpu), ("default", cpu_default)):
        backbone._cache[key] = embedder  # what the operator gets
        differing: list[dict[str, object]] = []
        compared = 0
        for (seed, crit), on_gpu in on_device.items():
            on_cpu = pcc_verdicts("cpu", classes, wanted, seed, crit, tmp / f"cpu-{label}")
            compared += len(on_cpu)
            for sid, v in on_cpu.items():
                g = on_gpu[sid]
                if v.keep != g.keep or v.evidence["rule"] != g.evidence["rule"]:
                    differing.append(
                        {
                            "draw": seed,
                            "criticisms": crit,
                            "sample": sid,
                            "cpu": v.evidence,
                            "gpu": g.evidence,
                        }
                    )
        report[f"decisions_compared_cpu_{label}"] = compared
        report[f"decisions_differing_cpu_{label}"] = len(differing)
        if differing:
            report[f"differences_cpu_{label}"] = differing[:10]
            if label == "fp32":
                failures.append(f"{len(differing)} PCC decisions differ between CPU (fp32) and CUDA")
    backbone._cache[key] = cpu_default

    # 4. throughput
    pixels = resize_batch([rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(256)])
    batch = np.concatenate([pixels] * max(1, args.throughput_images // len(pixels)))
    report["cuda_batch_size"] = gpu_embedder.batch_size
    for label, embedder in (
        ("fp32", gpu_embedder),
        ("bf16", Embedder(load_default_model(), dev, precision="bf16")),
    ):
        embedder.embed_resized(batch[: embedder.batch_size * 2])
        sync()
        start = time.perf_counter()
        embedder.embed_resized(batch)
        sync()
        report[f"cuda_{label}_images_per_s"] = round(len(batch) / (time.perf_counter() - start), 1)
    start = time.perf_counter()
    resize_batch(images[:1000])
    report["cpu_resize_images_per_s_one_thread"] = round(
        min(1000, len(images)) / (time.perf_counter() - start), 1
    )

    report["failures"] = failures
    print(json.dumps(report, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
