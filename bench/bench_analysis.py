"""Feature analysis vs CleanVision, same files, same run, one core each.

Builds 1,000 640×480 JPEGs from the real photos in ``../shared/datasets/photos`` (seeded random
crops and resizes), then measures:

1. throughput (images/s on one core): our ``sys_data_analyse`` end to end (read bytes → guarded
   decode of a ≤ 512 px luma plane and an 80 px colour thumbnail → measure → summarise) against
   CleanVision's ``Imagelab(filepaths=...).find_issues({"blurry": {}, "dark": {}, "light": {}},
   n_jobs=1)``. Each timed run is a fresh process (one thread), after a 20-image warm-up, and the
   tools take turns so that they share the machine's load; CPU time is the per-core figure;
2. flag rates of both tools on Gaussian-blurred, dark (× 0.25) and over-exposed (× 2.5, clipped)
   copies of some of those images, and on the untouched originals.

CleanVision is a bench-only dependency (``pip install cleanvision``), never a project one.

    python bench/bench_analysis.py               # 1,000 images, 300 copies of each kind
    python bench/bench_analysis.py --count 200   # quicker
"""

from __future__ import annotations

import os

# One core, one thread everywhere, before numpy/cv2/torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators.analysis import FeatureAnalysis, SampleMetrics  # noqa: E402
from operators.analysis.metrics import issue_scores, issue_verdicts  # noqa: E402
from operators.registry import build  # noqa: E402

DEFAULT_PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
WIDTH, HEIGHT = 640, 480
MAX_UPSCALE = 1.3  # crops are at least 640/1.3 px wide: no photo is blown up into blur

# Graphics, renders and deliberately blurred demo images (same list as tests/operators/test_analysis.py).
NOT_PHOTOS = frozenset(
    {
        "mate-Elephants_3840x2160.jpg",
        "mate-Elephants_5640x3172.jpg",
        "mate-GreenTraditional.jpg",
        "opencv-Blender_Suzanne1.jpg",
        "opencv-Blender_Suzanne2.jpg",
        "opencv-HappyFish.jpg",
        "opencv-LinuxLogo.jpg",
        "opencv-WindowsLogo.jpg",
        "opencv-aloeGT.jpg",
        "opencv-cards.jpg",
        "opencv-chessboard.jpg",
        "opencv-detect_blob.jpg",
        "opencv-ellipses.jpg",
        "opencv-gradient.jpg",
        "opencv-imageTextN.jpg",
        "opencv-imageTextR.jpg",
        "opencv-ml.jpg",
        "opencv-notes.jpg",
        "opencv-opencv-logo-white.jpg",
        "opencv-opencv-logo.jpg",
        "opencv-pca_test1.jpg",
        "opencv-pic1.jpg",
        "opencv-pic2.jpg",
        "opencv-pic3.jpg",
        "opencv-pic4.jpg",
        "opencv-pic5.jpg",
        "opencv-pic6.jpg",
        "opencv-tmpl.jpg",
        "opencv-text_defocus.jpg",
        "opencv-text_motion.jpg",
        "opencv-licenseplate_motion.jpg",
    }
)

# Our issue name and CleanVision's for each kind of degraded copy.
KINDS: dict[str, tuple[str, str]] = {
    "blurred": ("blurry", "blurry"),
    "dark": ("dark", "dark"),
    "over_exposed": ("over_exposed", "light"),
}


def one_thread(pin: bool) -> str:
    """One compute thread in every library; optionally pinned to one CPU."""
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if pin and hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return f"one thread, pinned to CPU {cpu}"
    return "one thread, not pinned"


# --------------------------------------------------------------------------- data


def load_photos(folder: Path) -> list[np.ndarray]:
    """Real photos big enough for a 640×480 crop with at most ``MAX_UPSCALE`` enlargement."""
    photos = []
    for path in sorted(folder.glob("*.jpg")):
        if path.name in NOT_PHOTOS:
            continue
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        height, width = rgb.shape[:2]
        if width * MAX_UPSCALE >= WIDTH and height * MAX_UPSCALE >= HEIGHT:
            photos.append(rgb)
    if len(photos) < 20:
        raise SystemExit(f"only {len(photos)} usable photos in {folder}")
    return photos


def random_view(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 4:3 crop (55–100 % of the largest that fits), resized to 640×480, maybe mirrored."""
    height, width = rgb.shape[:2]
    largest = min(width, height * WIDTH / HEIGHT)
    smallest = min(largest, WIDTH / MAX_UPSCALE)
    crop_w = rng.uniform(max(smallest, 0.55 * largest), largest)
    crop_h = crop_w * HEIGHT / WIDTH
    x = rng.uniform(0, width - crop_w)
    y = rng.uniform(0, height - crop_h)
    box = (round(x), round(y), round(x + crop_w), round(y + crop_h))
    view = Image.fromarray(rgb).crop(box).resize((WIDTH, HEIGHT), Image.LANCZOS)
    out = np.asarray(view)
    return out[:, ::-1] if rng.random() < 0.5 else out


def degrade(rgb: np.ndarray, kind: str) -> np.ndarray:
    if kind == "blurred":  # σ = 2 px at the 512 px analysis size (2.5 px at 640 px)
        return cv2.GaussianBlur(rgb, (0, 0), 2.0 * WIDTH / 512)
    factor = {"dark": 0.25, "over_exposed": 2.5}[kind]
    return np.clip(rgb.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, "JPEG", quality=quality)
    path.write_bytes(buffer.getvalue())


@dataclass
class Dataset:
    originals: list[Path]
    copies: dict[str, list[Path]]


def build_dataset(folder: Path, photos_dir: Path, count: int, copies: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    photos = load_photos(photos_dir)
    originals, views, qualities = [], [], []
    for index in range(count):
        view = random_view(photos[int(rng.integers(len(photos)))], rng)
        quality = int(rng.integers(80, 96))
        path = folder / "originals" / f"img{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(path, view, quality)
        originals.append(path)
        if index < copies:
            views.append(view)
            qualities.append(quality)
    degraded: dict[str, list[Path]] = {}
    for kind in KINDS:
        degraded[kind] = []
        for index, (view, quality) in enumerate(zip(views, qualities, strict=True)):
            path = folder / kind / f"img{index:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jpeg(path, degrade(view, kind), quality)
            degraded[kind].append(path)
    return Dataset(originals=originals, copies=degraded)


# --------------------------------------------------------------------------- the two tools


@dataclass
class Run:
    wall: float  # seconds, wall clock
    cpu: float  # seconds of this process's CPU time (all threads): immune to other load on the machine
    issues: dict[str, list[str]]  # file → issues found


def run_ours(op: FeatureAnalysis, paths: list[Path]) -> Run:
    """read → decode → measure → summarise, timed; and the issues found per file."""
    wall, cpu = time.perf_counter(), time.process_time()
    records: list[SampleMetrics] = []
    for path in paths:
        records.append(op.analyse(path.read_bytes(), sample_id=path.name, source=str(path)))
    op.summarize(records)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    issues = {}
    for record in records:
        if record.metrics is None:
            raise SystemExit(f"our decoder rejected a bench image: {record.source}: {record.error}")
        issues[record.source] = issue_verdicts(issue_scores(record.metrics), op.thresholds)
    return Run(wall, cpu, issues)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def run_cleanvision(paths: list[Path]) -> Run:
    from cleanvision import Imagelab

    wall, cpu = time.perf_counter(), time.process_time()
    with quiet():
        lab = Imagelab(filepaths=[str(path) for path in paths])
        lab.find_issues({"blurry": {}, "dark": {}, "light": {}}, n_jobs=1, verbose=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frame = lab.issues
    issues = {}
    for source, row in frame.iterrows():
        issues[str(source)] = [name for name in ("blurry", "dark", "light") if bool(row[f"is_{name}_issue"])]
    return Run(wall, cpu, issues)


TOOLS = {
    "dsproc": '{"op_list": "[]"}',
    "dsproc-flags": '{"op_list": "[brightness,blurriness]"}',
    "cleanvision": "",
}


def _child(tool: str, list_file: Path, out_file: Path, pin: bool) -> None:
    """One timed run in this (fresh) process, after a warm-up on the first 20 files; JSON to ``out_file``."""
    one_thread(pin)
    files = [Path(line) for line in list_file.read_text().splitlines() if line]
    if tool == "cleanvision":
        run_cleanvision(files[:20])
        run = run_cleanvision(files)
    else:
        op = build("sys_data_analyse", json.loads(TOOLS[tool]))
        assert isinstance(op, FeatureAnalysis)
        run_ours(op, files[:20])
        run = run_ours(op, files)
    out_file.write_text(json.dumps({"wall": run.wall, "cpu": run.cpu, "issues": run.issues}))


def run_tool(tool: str, paths: list[Path], pin: bool = False) -> Run:
    """Run ``tool`` on ``paths`` in a fresh process: neither tool inherits the other's heap or caches."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        list_file, out_file = Path(tmp) / "files.txt", Path(tmp) / "run.json"
        list_file.write_text("\n".join(str(path) for path in paths))
        command = [sys.executable, __file__, "--child", tool, str(list_file), str(out_file)]
        subprocess.run(command + (["--pin"] if pin else []), check=True, stdout=subprocess.DEVNULL)
        result = json.loads(out_file.read_text())
    return Run(result["wall"], result["cpu"], result["issues"])


def interleaved(rounds: int, *tools: Callable[[], Run]) -> list[list[Run]]:
    """``rounds`` × every tool in turn, so all of them see the same machine load."""
    runs: list[list[Run]] = [[] for _ in tools]
    for _ in range(rounds):
        for tool, results in zip(tools, runs, strict=True):
            results.append(tool())
    return runs


def fastest(runs: list[Run]) -> Run:
    """Fastest wall and CPU times of several runs (taken separately)."""
    return Run(min(run.wall for run in runs), min(run.cpu for run in runs), runs[-1].issues)


def rate(issues: dict[str, list[str]], paths: list[Path], issue: str | None) -> float:
    hits = 0
    for path in paths:
        found = issues[str(path)]
        hits += bool(found) if issue is None else issue in found
    return hits / len(paths)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--count", type=int, default=1000, help="640×480 originals to build and time")
    parser.add_argument("--copies", type=int, default=300, help="degraded copies of each kind")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved timed rounds; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the images here (default: temp dir)")
    parser.add_argument("--pin", action="store_true", help="pin each run to one CPU (sched_setaffinity)")
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "FILE_LIST", "OUT_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, list_file, out_file = args.child
        _child(tool, Path(list_file), Path(out_file), args.pin)
        return
    try:
        import cleanvision
    except ImportError:
        raise SystemExit("pip install cleanvision (bench only, not a project dependency)") from None

    pinned = "one thread per tool" + (", pinned to one CPU" if args.pin else "")
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        folder = args.workdir or Path(tmp)
        started = time.perf_counter()
        data = build_dataset(folder, args.photos, args.count, min(args.copies, args.count), args.seed)
        print(
            f"built {len(data.originals)} originals + {len(KINDS)}×{len(data.copies['blurred'])} copies "
            f"(640×480 JPEG q80–95) in {time.perf_counter() - started:.1f} s; {pinned}"
        )
        ours_runs, their_runs, flag_runs = interleaved(
            args.repeat,
            lambda: run_tool("dsproc", data.originals, args.pin),
            lambda: run_tool("cleanvision", data.originals, args.pin),
            lambda: run_tool("dsproc-flags", data.originals, args.pin),
        )
        ours, theirs, flags = fastest(ours_runs), fastest(their_runs), fastest(flag_runs)
        n = len(data.originals)
        print(
            f"\nthroughput on {n} images, one thread each, images/s "
            f"(fastest of {args.repeat} interleaved rounds):"
        )
        print(f"  {'':<52}{'per CPU-second':>16}{'wall clock':>12}")
        for label, run in (
            ("dsproc sys_data_analyse (6 metrics + 3 flags)", ours),
            ("dsproc, op_list=[brightness,blurriness] (3 flags)", flags),
            (f"CleanVision {cleanvision.__version__} find_issues(blurry, dark, light)", theirs),
        ):
            print(f"  {label:<52}{n / run.cpu:>16.1f}{n / run.wall:>12.1f}")
        cpu_ratio, wall_ratio = theirs.cpu / ours.cpu, theirs.wall / ours.wall
        print(f"  {'ratio dsproc (6 metrics) / CleanVision':<52}{cpu_ratio:>15.2f}x{wall_ratio:>11.2f}x")
        paired = ", ".join(f"{t.cpu / o.cpu:.2f}x" for o, t in zip(ours_runs, their_runs, strict=True))
        print(f"  CPU-time ratio in each round: {paired}")
        print(
            f"  machine load average over the last minute: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
        )

        print("\nflag rates (share of images flagged):")
        print(f"  {'set':<34}{'dsproc':>10}{'CleanVision':>14}")
        print(
            f"  {'originals, any issue':<34}{rate(ours.issues, data.originals, None):>10.1%}"
            f"{rate(theirs.issues, data.originals, None):>14.1%}"
        )
        for kind, (ours_issue, cv_issue) in KINDS.items():
            paths = data.copies[kind]
            ours_found = run_tool("dsproc", paths).issues
            cv_found = run_tool("cleanvision", paths).issues
            label = f"{kind} copies → {ours_issue}/{cv_issue}"
            ours_rate, cv_rate = rate(ours_found, paths, ours_issue), rate(cv_found, paths, cv_issue)
            print(f"  {label:<34}{ours_rate:>10.1%}{cv_rate:>14.1%}")
        for issue, cv_issue in (("blurry", "blurry"), ("dark", "dark"), ("over_exposed", "light")):
            label = f"originals → {issue}/{cv_issue}"
            print(
                f"  {label:<34}{rate(ours.issues, data.originals, issue):>10.1%}"
                f"{rate(theirs.issues, data.originals, cv_issue):>14.1%}"
            )


if __name__ == "__main__":
    main()
