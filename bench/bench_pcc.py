"""PCC quality: kept-set precision/recall against the plain max-cosine rule, same data, same run.

Protocol (issue 5), on the full Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (IDX files
under /usr/share/datasets/fashion-mnist, parsed here; ``--per-class`` training images of every
class form the pool the draws come from):

* distinct: two wanted classes given by 20 prototype images each; 100 more images of each wanted
  class as samples; contamination from the other 8 classes at 20 % of the samples; criticisms
  are 5 other images of each contaminating class.
* hard, wanted pair: the same with the confusable pairs as the wanted classes (Shirt + T-shirt,
  Pullover + Coat): the contamination then holds their look-alikes (Coat, Pullover, Dress…).
* hard, A vs B: one wanted class A (20 prototypes, 100 samples) contaminated only by its look-alike
  B at 20 %; criticisms are 20 images of B.
* photos (``../shared/datasets/photos``): wanted = the chessboard calibration photos
  (``opencv-left01…``/``right01…``) and the MATE nature wallpapers; everything else (paintings, logos,
  scenes, test charts) is unwanted. 6 prototypes per wanted class, 20 % contamination, 8 criticisms.

Methods: PCC with the defaults (``simlarity_threshold`` 0.9, ``embedding_distance`` 0.2,
``n_clusters`` auto), without and with criticisms, through ``operators.cleaning.functional.score``
(the operator's decision code); the plain rule "keep when the cosine to the nearest prototype ≥ θ"
with θ tuned for the best F1 on a separate draw of the *same* scenario (favourable to the
baseline) and with θ tuned once on Trouser + Bag and reused (what a user setting one threshold
gets); with criticisms, the plain 1-NN rule "keep when the nearest exemplar is a prototype".
Means over ``--draws`` draws, with the worst draw in brackets.

    python bench/bench_pcc.py [--per-class 300] [--draws 5] [--cache /tmp/dsproc-bench-cache]

Embeddings are cached by content (``EmbeddingCache``), so a second run only re-scores.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
CLS = {n: i for i, n in enumerate(NAMES)}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic 0x0000 + dtype byte + ndim byte, big-endian dims, data."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if raw[:2] != b"\x00\x00":
        raise ValueError(f"{path} is not an IDX file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    dtype, ndim = np.dtype(dtypes[raw[2]]), raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} values for dims {dims}")
    return data.reshape(dims)


def fashion_pool(per_class: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``per_class`` random training images of every class (28×28 grey → RGB) and their labels."""
    images = read_idx(FASHION_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    if images.shape != (60000, 28, 28) or labels.shape != (60000,):
        raise ValueError(f"unexpected Fashion-MNIST shapes {images.shape} {labels.shape}")
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    )
    return [np.repeat(images[i][:, :, None], 3, axis=2) for i in chosen], labels[chosen]


def photo_pool() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """The photos, labelled 0 = calibration board, 1 = nature wallpaper, 2 = anything else."""
    from operators.decode import decode_image

    paths = sorted(PHOTOS.glob("*.jpg"))
    images, labels = [], []
    for p in paths:
        images.append(np.array(decode_image(p.read_bytes(), max_side=640).pixels))
        stem = p.stem
        board = stem.startswith(("opencv-left", "opencv-right")) and stem[-2:].isdigit()
        labels.append(0 if board else 1 if stem.startswith("mate-") else 2)
    return images, np.array(labels), [p.name for p in paths]


def embed_all(images: list[np.ndarray], cache_dir: Path) -> np.ndarray:
    """Default-backbone embeddings, cached by pixel content."""
    from operators.embeddings.backbone import get_embedder, resize_batch
    from operators.embeddings.cache import EmbeddingCache, content_key
    from operators.sample import Sample

    embedder = get_embedder("cpu")
    cache = EmbeddingCache(cache_dir, embedder.model_id, embedder.dim)
    keys = [content_key(Sample(sample_id="", source="", name="", pixels=img)) for img in images]
    found = cache.get_many(keys)
    out = np.empty((len(images), embedder.dim), np.float32)
    todo = [i for i, k in enumerate(keys) if k not in found]
    start = time.perf_counter()
    for s in range(0, len(todo), 64):
        part = todo[s : s + 64]
        rows = embedder.embed_resized(resize_batch([images[i] for i in part]))
        out[part] = rows
        cache.put_many((keys[i], r) for i, r in zip(part, rows, strict=True))
    if todo:
        rate = len(todo) / (time.perf_counter() - start)
        print(f"# embedded {len(todo)} images ({rate:.1f}/s, {embedder.model_id}); {len(found)} from cache")
    for i, k in enumerate(keys):
        if k in found:
            out[i] = found[k]
    cache.close()
    return out


@dataclass
class Draw:
    samples: np.ndarray  # indices into the pool
    wanted: np.ndarray  # bool per sample
    prototypes: np.ndarray
    criticisms: np.ndarray


def draw_scenario(
    rng: np.random.Generator,
    labels: np.ndarray,
    wanted: tuple[int, ...],
    contaminants: tuple[int, ...],
    n_proto: int,
    n_samples: int,
    crit_per_class: int,
    contamination: float = 0.2,
) -> Draw:
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in set(wanted) | set(contaminants)}
    protos = [pools[c].pop() for c in wanted for _ in range(n_proto)]
    good = [pools[c].pop() for c in wanted for _ in range(min(n_samples, len(pools[c]) - 0))]
    crits = [pools[c].pop() for c in contaminants for _ in range(crit_per_class)]
    n_bad = round(len(good) * contamination / (1 - contamination))
    bad = []
    for c in rng.choice(contaminants, n_bad):
        if pools[c]:
            bad.append(pools[c].pop())
    samples = np.array(good + bad)
    return Draw(
        samples, np.r_[np.ones(len(good), bool), np.zeros(len(bad), bool)], np.array(protos), np.array(crits)
    )


def precision_recall(keep: np.ndarray, wanted: np.ndarray) -> tuple[float, float]:
    tp = int((keep & wanted).sum())
    return tp / max(int(keep.sum()), 1), tp / max(int(wanted.sum()), 1)


def max_cosine(emb: np.ndarray, d: Draw) -> np.ndarray:
    return (emb[d.samples] @ emb[d.prototypes].T).max(axis=1)


def tune_threshold(emb: np.ndarray, d: Draw) -> float:
    """The max-cosine threshold with the best F1 on this draw."""
    s = max_cosine(emb, d)
    best, best_f1 = 0.0, -1.0
    for t in np.unique(s):
        p, r = precision_recall(s >= t, d.wanted)
        f1 = 2 * p * r / max(p + r, 1e-9)
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def pcc(emb: np.ndarray, d: Draw, criticisms: bool, seed: int) -> np.ndarray:
    from operators.cleaning import functional as F

    store = F.RowStore(emb.shape[1])
    store.append(emb[d.samples])
    try:
        crit = emb[d.criticisms] if criticisms else None
        return F.score(store, emb[d.prototypes], crit, F.PccConfig(), np.random.default_rng(seed)).keep
    finally:
        store.close()


Method = Callable[[np.ndarray, Draw, int], np.ndarray]


def evaluate(
    title: str, emb: np.ndarray, draws: list[Draw], calibration: Draw, transfer: float | None
) -> dict[str, tuple[float, float]]:
    tuned = tune_threshold(emb, calibration)
    methods: dict[str, Method] = {
        "PCC (defaults)": lambda e, d, s: pcc(e, d, False, s),
        f"max-cos θ tuned here ({tuned:.3f})": lambda e, d, s: max_cosine(e, d) >= tuned,
    }
    if transfer is not None:
        methods[f"max-cos θ from Trouser+Bag ({transfer:.3f})"] = lambda e, d, s: max_cosine(e, d) >= transfer
    methods["PCC + criticisms"] = lambda e, d, s: pcc(e, d, True, s)
    methods["1-NN: nearest exemplar is a prototype"] = lambda e, d, s: (
        max_cosine(e, d) > (e[d.samples] @ e[d.criticisms].T).max(axis=1)
    )
    n, n_wanted = len(draws[0].samples), int(draws[0].wanted.sum())
    print(f"\n{title}  ({len(draws)} draws, {n} samples, {n_wanted} wanted)")
    summary = {}
    kept: dict[str, list[np.ndarray]] = {}
    for name, method in methods.items():
        kept[name] = [method(emb, d, i) for i, d in enumerate(draws)]
        pr = np.array([precision_recall(k, d.wanted) for k, d in zip(kept[name], draws, strict=True)])
        summary[name] = report(name, pr)
    # The same ranking question without any threshold choice: max-cosine cut at PCC's recall, per draw.
    for pcc_name, label in (
        ("PCC (defaults)", "max-cos at PCC's recall"),
        ("PCC + criticisms", "max-cos at PCC+crit's recall"),
    ):
        pr = np.array(
            [
                at_recall(max_cosine(emb, d), d.wanted, precision_recall(k, d.wanted)[1])
                for k, d in zip(kept[pcc_name], draws, strict=True)
            ]
        )
        summary[label] = report(label, pr)
    return summary


def report(name: str, pr: np.ndarray) -> tuple[float, float]:
    p, r = pr.mean(axis=0)
    print(f"  {name:<44} P {p:.3f} (min {pr[:, 0].min():.3f})   R {r:.3f} (min {pr[:, 1].min():.3f})")
    return float(p), float(r)


def at_recall(score: np.ndarray, wanted: np.ndarray, recall: float) -> tuple[float, float]:
    """Precision/recall of ``score ≥ θ`` with θ the highest cut that reaches ``recall``."""
    theta = np.sort(score[wanted])[::-1][max(0, int(np.ceil(recall * wanted.sum())) - 1)]
    return precision_recall(score >= theta, wanted)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dsproc-bench-cache"))
    args = parser.parse_args()
    print(
        f"# bench_pcc: per-class pool {args.per_class}, {args.draws} draws, load avg {os.getloadavg()[0]:.1f}"
    )

    images, labels = fashion_pool(args.per_class, args.seed)
    emb = embed_all(images, args.cache)
    rng = np.random.default_rng(args.seed)

    def scenario(
        wanted: tuple[str, ...], contaminants: tuple[str, ...] | None, crit: int
    ) -> tuple[list[Draw], Draw]:
        w = tuple(CLS[n] for n in wanted)
        c = tuple(CLS[n] for n in contaminants) if contaminants else tuple(i for i in range(10) if i not in w)
        make = lambda: draw_scenario(rng, labels, w, c, 20, 100, crit)  # noqa: E731
        return [make() for _ in range(args.draws)], make()

    base_draws, base_cal = scenario(("Trouser", "Bag"), None, 5)
    transfer = tune_threshold(emb, base_cal)
    results = {}
    results["Trouser+Bag"] = evaluate(
        "Fashion-MNIST distinct: Trouser + Bag", emb, base_draws, base_cal, transfer
    )
    for pair in (("Sneaker", "Bag"), ("Trouser", "Sandal")):
        draws, cal = scenario(pair, None, 5)
        results["+".join(pair)] = evaluate(
            f"Fashion-MNIST distinct: {' + '.join(pair)}", emb, draws, cal, transfer
        )
    for pair in (("Shirt", "T-shirt"), ("Pullover", "Coat")):
        draws, cal = scenario(pair, None, 5)
        results["+".join(pair)] = evaluate(
            f"Fashion-MNIST hard, wanted pair: {' + '.join(pair)}", emb, draws, cal, transfer
        )
    for a, b in (("Shirt", "T-shirt"), ("T-shirt", "Shirt"), ("Pullover", "Coat"), ("Coat", "Pullover")):
        draws, cal = scenario((a,), (b,), 20)
        results[f"{a} vs {b}"] = evaluate(f"Fashion-MNIST hard, {a} vs {b}", emb, draws, cal, transfer)

    photos, plabels, _ = photo_pool()
    pemb = embed_all(photos, args.cache)
    prng = np.random.default_rng(args.seed)
    pdraws = [draw_scenario(prng, plabels, (0, 1), (2,), 6, 100, 8) for _ in range(args.draws)]
    pcal = draw_scenario(prng, plabels, (0, 1), (2,), 6, 100, 8)
    results["photos"] = evaluate(
        "photos: calibration boards + nature wallpapers vs the rest", pemb, pdraws, pcal, transfer
    )
    print(f"\n# load avg at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
