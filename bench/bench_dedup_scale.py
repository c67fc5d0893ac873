"""Near-duplicate search at scale: synthetic 1280-d embeddings with planted duplicate pairs.

Runs the same code the SimDeduplication operator runs after embedding (``RowStore`` of fp16 rows,
PCA-reduced candidate search in faiss with the operator's k and candidate radius at the default
threshold — cosine ≥ 0.6 —, cosines on the full vectors, saturation repair, keeper selection on
the pairs whose content similarity (1 + cos) / 2 reaches 0.9) and reports time, peak memory and
the share of planted pairs recovered. The layout check needs thumbnails, which synthetic rows do
not have; its cost is per candidate pair and is reported by bench_dedup.py.

Peak memory is the process's resident high-water mark (VmHWM), reset after the synthetic data is
built (the data itself, 2.5 KB per row in fp16, is part of what the operator holds and is counted).

The synthetic rows imitate EfficientNet-Lite0 pooled features: a shared mean direction (unrelated
images have cosine ≈ 0.3–0.5), a 96-d structured part and isotropic noise, unit length. A planted
duplicate of row x is ``cos·x + sin·u`` with ``u`` a unit vector orthogonal to x (half structured,
half isotropic), so its cosine to x is exactly ``cos``, drawn uniformly from [0.82, 0.99] (all above
the default threshold, similarity 0.9 ⇔ cosine 0.8).

    python bench/bench_dedup_scale.py --n 1000000          # one size
    python bench/bench_dedup_scale.py --n 100000 300000    # several, then a labelled extrapolation
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators.selection.dedup import NEIGHBOURS, min_cosine, pick_keepers  # noqa: E402
from operators.selection.neighbours import RowStore, near_pairs  # noqa: E402

DIM = 1280
STRUCT = 96
DUP_SHARE = 0.05  # planted duplicates per base row
THRESHOLD = 0.9


def peak_rss_mb() -> float:
    """VmHWM of this process (falls back to ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5), so the next peak is the dedup's own."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthesize(n: int, seed: int = 0, block: int = 20_000) -> tuple[RowStore, np.ndarray, np.ndarray]:
    """``n`` rows in a RowStore, the last ``n_dup`` being planted duplicates of random earlier rows."""
    rng = np.random.default_rng(seed)
    mean = _unit(rng.standard_normal((1, DIM)).astype(np.float32)) * 0.7
    basis = rng.standard_normal((STRUCT, DIM)).astype(np.float32) / np.sqrt(DIM)
    n_dup = int(n * DUP_SHARE / (1 + DUP_SHARE))
    n_base = n - n_dup
    store = RowStore()
    for start in range(0, n_base, block):
        m = min(block, n_base - start)
        z = rng.standard_normal((m, STRUCT)).astype(np.float32)
        iso = rng.standard_normal((m, DIM)).astype(np.float32) * (0.35 / np.sqrt(DIM))
        store.append(_unit(mean + z @ basis * 0.9 + iso))
    originals = np.sort(rng.choice(n_base, size=n_dup, replace=False))
    for start in range(0, n_dup, block):
        src = originals[start : start + block]
        x = store.rows(src)
        m = len(src)
        u = rng.standard_normal((m, STRUCT)).astype(np.float32) @ basis
        u = _unit(u) + _unit(rng.standard_normal((m, DIM)).astype(np.float32))
        u -= np.sum(u * x, axis=1, keepdims=True) * x
        u = _unit(u)
        c = rng.uniform(0.82, 0.99, size=(m, 1)).astype(np.float32)
        store.append(_unit(c * x + np.sqrt(1 - c * c) * u))
    dups = np.arange(n_base, n)
    return store, originals, dups


def run(n: int, seed: int) -> dict[str, float]:
    t0 = time.perf_counter()
    store, originals, dups = synthesize(n, seed)
    t_gen = time.perf_counter() - t0
    rss_synthesis = peak_rss_mb()
    reset_peak()
    t1 = time.perf_counter()
    rows = np.arange(len(store))
    min_cos, content_cos = min_cosine(THRESHOLD), 2 * THRESHOLD - 1
    found = near_pairs(store, rows, min_cos, k=NEIGHBOURS, seed=seed, saturation_cos=content_cos)
    a, b, cos = found.a, found.b, found.cos
    rounds = 1
    saturated = found.saturated
    while len(saturated) > 1 and rounds < 4:
        more = near_pairs(
            store, saturated, min_cos, k=NEIGHBOURS, seed=seed + rounds, saturation_cos=content_cos
        )
        a, b, cos = np.concatenate([a, more.a]), np.concatenate([b, more.b]), np.concatenate([cos, more.cos])
        saturated = more.saturated
        rounds += 1
    t_search = time.perf_counter() - t1
    t2 = time.perf_counter()
    dup = cos >= content_cos
    rank = np.arange(len(store))  # earlier rows are better: the originals are kept
    match, _ = pick_keepers(len(store), a[dup], b[dup], cos[dup], rank)
    t_pick = time.perf_counter() - t2
    planted = set(zip(originals.tolist(), dups.tolist(), strict=True))
    got = set(zip(np.minimum(a, b)[dup].tolist(), np.maximum(a, b)[dup].tolist(), strict=True))
    return {
        "n": n,
        "planted_pairs": len(planted),
        "candidates": len(a),
        "pairs_found": len(got),
        "recovered": len(planted & got) / len(planted),
        "dups_deleted": float((match[dups] >= 0).mean()),
        "wrongly_deleted": int((match[: len(store) - len(dups)] >= 0).sum()),
        "generate_s": t_gen,
        "search_s": t_search,
        "pick_s": t_pick,
        "dedup_s": t_search + t_pick,
        "rss_synthesis_mb": rss_synthesis,
        "peak_rss_mb": peak_rss_mb(),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = []
    for n in args.n:
        r = run(n, args.seed)
        results.append(r)
        print(
            f"N={r['n']:>9,}  planted pairs {r['planted_pairs']:,}  recovered {r['recovered']:.4f}  "
            f"planted copies deleted {r['dups_deleted']:.4f}  originals deleted {r['wrongly_deleted']}  "
            f"candidates {r['candidates']:,}  search {r['search_s']:.1f} s  keepers {r['pick_s']:.1f} s  "
            f"dedup total {r['dedup_s']:.1f} s  peak RSS during dedup {r['peak_rss_mb']:.0f} MB  "
            f"(synthesis {r['generate_s']:.1f} s, peak {r['rss_synthesis_mb']:.0f} MB)  rounds {r['rounds']}",
            flush=True,
        )
    if len(results) >= 2 and results[-1]["n"] < 1_000_000:
        n1, n2 = results[-2]["n"], results[-1]["n"]
        t1, t2 = results[-2]["dedup_s"], results[-1]["dedup_s"]
        slope = np.log(t2 / t1) / np.log(n2 / n1)
        est = t2 * (1_000_000 / n2) ** slope
        mem = results[-1]["peak_rss_mb"] * 1_000_000 / n2
        print(
            f"EXTRAPOLATED (not measured) to N=1,000,000: dedup ≈ {est:.0f} s (time ∝ N^{slope:.2f}), "
            f"peak RSS ≈ {mem:.0f} MB if memory scales linearly"
        )


if __name__ == "__main__":
    main()
