"""Predict pipeline figures, printed (no assertions). Run with `nice -n 19` while a training job holds the CPU.

    python tests/benchmarks/bench_predict.py              # latency: bytes → faces → predictions (LiteRT), 2 MP selfie
    python tests/benchmarks/bench_predict.py --detection  # which faces each detector pass finds, by face size
    python tests/benchmarks/bench_predict.py --calibrate  # UTKFace framing, measured with the detector
    python tests/benchmarks/bench_predict.py --margin [--model PATH]  # crops vs UTKFace's own, per margin

Faces come from UTKFace (--data, default ../shared/data/utkface). The latency goal: p50 ≤ 50 ms on 2 cores for
a ~2 MP selfie with one face, with the shipped model's .tflite under LiteRT, as the app's server runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from tests.photos import FACE_NAMES, Placed, compose, encode, face_images, selfie  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("FACE_SHARED_DIR", ROOT.parent / "shared")) / "data" / "utkface"


def percentiles(times_ms: list[float]) -> str:
    return f"p50 {np.percentile(times_ms, 50):6.1f} ms   p95 {np.percentile(times_ms, 95):6.1f} ms"


def timed(fn, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_latency(data_dir: Path, runs: int, model_path: Path) -> None:
    """The app's path (LiteRT on the model's .tflite, no TensorFlow in the process) end to end and by stage, then
    the Keras tf.function predictor it replaced, for the ratio (that part imports TensorFlow)."""
    from core.alignment import ONE_VIEW, VIEWS, align_crop, align_views
    from core.export import tflite_is_current
    from core.faces import FaceDetector
    from core.images import load_photo
    from core.predict import DRAFT_SIDE, Predictor, analyze_bytes

    tflite = model_path.with_suffix(".tflite")
    if not tflite_is_current(model_path):
        sys.exit(f"{tflite} is missing or older than {model_path.name}: "
                  f"python -m core export --model {model_path}")
    photo, _ = selfie(face_images(data_dir, 1)[0], size=(1600, 1200), side=640)
    data = encode(photo)
    detector = FaceDetector()
    lite = {"LiteRT Predictor, views + flip (app default)": Predictor(tflite),
            "LiteRT Predictor, one view + flip": Predictor(tflite, views=ONE_VIEW),
            "LiteRT Predictor, no TTA": Predictor(tflite, flip_tta=False, views=ONE_VIEW)}
    size = lite["LiteRT Predictor, no TTA"].img_size
    print(f"selfie: 1600×1200 JPEG, {len(data) / 1e3:.0f} kB, one face of 640 px; {tflite.name} ({size} px, "
          f"{tflite.stat().st_size / 1e6:.1f} MB float32); {runs} warm runs; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    results = {}
    for label, predictor in lite.items():
        assert len(analyze_bytes(data, predictor, detector).faces) == 1, "the benchmark selfie must show one face"
        results[label] = timed(lambda p=predictor: analyze_bytes(data, p, detector), runs)
        print(f"  end to end, {label:42s} {percentiles(results[label])}")

    print("stages (p50):")
    predictor = lite["LiteRT Predictor, views + flip (app default)"]
    work = load_photo(data, draft_side=DRAFT_SIDE)
    faces = detector.detect(work.image)
    crops = np.stack([align_crop(work.image, face, size) for face in faces])
    views = np.stack([align_views(work.image, face, size) for face in faces])
    stages = {
        f"decode (JPEG draft to {work.image.width}×{work.image.height})":
            lambda: load_photo(data, draft_side=DRAFT_SIDE),
        "decode at full resolution (for comparison)": lambda: load_photo(data),
        "detect (short + full range)": lambda: detector.detect(work.image),
        "detect, tiles forced on (+4 passes)": lambda: detector.detect(work.image, tiles="always"),
        "align + crop": lambda: [align_crop(work.image, face, size) for face in faces],
        f"align + crop, {len(VIEWS)} views": lambda: [align_views(work.image, face, size) for face in faces],
        "model, LiteRT Predictor, one view + flip": lambda: predictor.predict(crops),
        f"model, LiteRT Predictor, {len(VIEWS)} views + flips": lambda: predictor.predict(views),
        "model, LiteRT, 16 faces + flips (one call)": lambda: predictor.predict(np.repeat(crops, 16, axis=0)),
    }
    for label, fn in stages.items():
        print(f"  {label:44s} {percentiles(timed(fn, runs))}")
    leaked = sorted({"tensorflow", "keras"} & set(sys.modules))
    print(f"resident memory with LiteRT and MediaPipe only: {rss_mb():.0f} MB; TensorFlow/Keras imported: "
          f"{', '.join(leaked) or 'no'}")

    from core.predict import KerasPredictor
    from core.registry import load_model
    keras_predictor = KerasPredictor(load_model(model_path, allow_anywhere=True))
    print("the Keras tf.function predictor it replaced, flip TTA (timed alternately with LiteRT: same load):")
    for label, lite_fn, keras_fn in [
            ("end to end", lambda: analyze_bytes(data, predictor, detector),
             lambda: analyze_bytes(data, keras_predictor, detector)),
            ("model stage", lambda: predictor.predict(crops), lambda: keras_predictor.predict(crops))]:
        lite_ms, keras_ms = timed_alternately(lite_fn, keras_fn, runs)
        print(f"  {label:12s} LiteRT {percentiles(lite_ms)}   Keras {percentiles(keras_ms)}   "
              f"ratio (p50) {np.median(keras_ms) / np.median(lite_ms):.1f}×")
    print(f"resident memory once TensorFlow is loaded too: {rss_mb():.0f} MB")
    detector.close()


def timed_alternately(fn_a, fn_b, runs: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Two functions timed in turns, so both see the same machine load (a training job comes and goes)."""
    timed(fn_a, 0, warmup)
    timed(fn_b, 0, warmup)
    a, b = [], []
    for _ in range(runs):
        a += timed(fn_a, 1, 0)
        b += timed(fn_b, 1, 0)
    return a, b


# ------------------------------------------------------------------------------------------- detection

def bench_detection(data_dir: Path) -> None:
    """Faces of one size in 1600×1200 scenes (a row of 5, or 2 when large; 4 backgrounds each): faces found and
    false alarms per pass, then false alarms on face-free backgrounds."""
    from core.faces import FaceDetector
    from tests.photos import background
    faces = face_images(data_dir)
    detector = FaceDetector()
    passes = {
        "short-range alone": lambda img: detector._run(detector._short, np.asarray(img), "short"),
        "full-range alone": lambda img: detector._run(detector._full, np.asarray(img), "full"),
        "app (tiles auto)": lambda img: detector.detect(img),
        "app (tiles always)": lambda img: detector.detect(img, tiles="always"),
    }
    print("faces found / placed (false alarms) per face size, as % of the 1600 px long side; mean ms per photo")
    print(f"{'face':>9}  " + "".join(f"{name:>26}" for name in passes))
    for side in (32, 48, 64, 80, 100, 128, 160, 200, 260, 330, 420, 560):
        tally, placed = {name: [0, 0, 0.0] for name in passes}, 0
        for seed in range(4):
            count = 5 if side <= 260 else 2
            chosen = [faces[(seed * 5 + i) % len(faces)] for i in range(count)]
            step = 1600 / count
            places = [Placed(step * (i + 0.5), 600 + (i % 2 - 0.5) * side * 0.3, side) for i in range(count)]
            image = compose(chosen, places, (1600, 1200), seed + 10 * side)
            placed += count
            for name, run in passes.items():
                start = time.perf_counter()
                found = run(image)
                tally[name][2] += time.perf_counter() - start
                on_face = [f for f in found if any(p.contains(*f.center) and f.box[2] < 2 * p.side for p in places)]
                tally[name][0] += sum(any(p.contains(*f.center) for f in on_face) for p in places)
                tally[name][1] += len(found) - len(on_face)
        print(f"{side:>4} px {side / 16:>4.1f}%" + "".join(
            f"{f'{t[0]}/{placed} ({t[1]}) {t[2] / 4 * 1000:.0f} ms':>26}" for t in tally.values()))
    alarms = {name: sum(len(run(background((1600, 1200), 500 + seed))) for seed in range(40))
              for name, run in passes.items()}
    print("false alarms on 40 face-free backgrounds: " + ", ".join(f"{k} {v}" for k, v in alarms.items()))
    detector.close()


# ------------------------------------------------------------------------------------ calibration, margin

def _padded_detections(paths: list[Path], detector) -> list[tuple[Path, object]]:
    """Each 200 px UTKFace image in the middle of a 400 px black canvas (black, as UTKFace pads): the detector
    then sees the face at a comfortable size, with nothing cut off by the image border."""
    found = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        if image.size != (200, 200):
            continue
        canvas = Image.new("RGB", (400, 400))
        canvas.paste(image, (100, 100))
        faces = detector.detect(canvas, tiles="never")
        if faces:
            found.append((path, max(faces, key=lambda f: f.score)))
    return found


def _sample(data_dir: Path, count: int, seed: int, only: set[str] | None = None) -> list[Path]:
    paths = sorted(p for p in data_dir.glob("*.jpg") if only is None or p.name in only)
    return [paths[i] for i in np.random.default_rng(seed).choice(len(paths), min(count, len(paths)), replace=False)]


def _test_names(model_path: str | None) -> set[str] | None:
    """Only the model's test faces, never trained on: a run's split.csv, or a shipped model's <name>.split.csv."""
    if not model_path:
        return None
    path = Path(model_path)
    split_file = next((f for f in (path.parent / "split.csv", path.with_suffix(".split.csv")) if f.is_file()), None)
    if split_file is None:
        return None
    import pandas as pd
    split = pd.read_csv(split_file)
    return {Path(p).name for p in split.loc[split["split"] == "test", "path"]}


def bench_calibrate(data_dir: Path, count: int) -> None:
    from core.faces import FaceDetector
    with FaceDetector() as detector:
        found = _padded_detections(_sample(data_dir, count, seed=1), detector)
    kp = np.array([face.keypoints for _, face in found]) - 100  # into the 200 px image's coordinates
    boxes = np.array([face.box for _, face in found])
    eyes = (kp[:, 0] + kp[:, 1]) / 2
    span = np.linalg.norm(kp[:, 1] - kp[:, 0], axis=1) + np.linalg.norm(kp[:, 3] - eyes, axis=1)
    angle = np.degrees(np.arctan2(kp[:, 1, 1] - kp[:, 0, 1], kp[:, 1, 0] - kp[:, 0, 0]))

    def line(label, values, unit=""):
        print(f"  {label:46s} median {np.median(values):7.3f}{unit}  spread (std) {np.std(values):6.3f}{unit}")
    print(f"{len(found)} of {count} UTKFace images with a face found")
    line("crop side / (eye distance + eye-to-mouth)", 200 / span)
    line("relative error of that estimate", 200 / span / np.median(200 / span) - 1)
    line("crop side / BlazeFace box width", 200 / boxes[:, 2])
    line("relative error of that estimate", 200 / boxes[:, 2] / np.median(200 / boxes[:, 2]) - 1)
    line("eye line height / crop side", eyes[:, 1] / 200)
    line("eye midpoint x / crop side", eyes[:, 0] / 200)
    line("eye line angle (UTKFace is levelled)", angle, "°")
    line("box top / crop side (forehead margin)", (boxes[:, 1] - 100) / 200)
    line("box bottom / crop side", (boxes[:, 1] + boxes[:, 3] - 100) / 200)


def bench_margin(data_dir: Path, count: int, model_path: str | None) -> None:
    """Re-find held-out UTKFace faces pasted into scenes at random sizes and tilts, crop them with each framing,
    and compare with the original picture (what the model was trained on): mean absolute pixel difference at
    96 px, and, with --model, the model's own errors on each framing."""
    from core.alignment import CROP_SIDE_PER_KEYPOINT_SPAN as CHOSEN
    from core.alignment import align_crop
    from core.datasets import parse_utkface_name
    from core.faces import FaceDetector
    rng = np.random.default_rng(5)
    variants = {f"×{f:.2f} of calibrated side" + (" (chosen)" if f == 1 else ""): {"side_factor": CHOSEN * f}
                for f in (0.8, 0.9, 1.0, 1.1, 1.25, 1.5)}
    variants["chosen side, not levelled"] = {"side_factor": CHOSEN, "level": False}
    variants["BlazeFace box as is (no margin, no levelling)"] = "box"
    crops = {name: [] for name in variants}
    references, labels = [], []
    with FaceDetector() as detector:
        only = _test_names(model_path)
        if only is not None:
            print(f"using only the {len(only)} test faces of the model's run")
        for path in _sample(data_dir, count, seed=99, only=only):  # a different sample from the calibration's
            face_image = Image.open(path).convert("RGB")
            side, angle = float(rng.uniform(150, 500)), float(rng.uniform(-25, 25))
            place = Placed(float(rng.uniform(350, 1250)), float(rng.uniform(350, 850)), side, angle)
            scene = compose([face_image], [place], (1600, 1200), seed=int(rng.integers(1000)))
            found = [f for f in detector.detect(scene) if place.contains(*f.center)]
            if not found:
                continue
            face = found[0]
            for name, options in variants.items():
                if options == "box":
                    x, y, w, h = face.box
                    crop = scene.crop((round(x), round(y), round(x + w), round(y + h))).resize((96, 96))
                    crops[name].append(np.asarray(crop))
                else:
                    crops[name].append(align_crop(scene, face, 96, **options))
            references.append(np.asarray(face_image.resize((96, 96), Image.Resampling.BILINEAR)))
            labels.append(parse_utkface_name(path.name))
    references = np.stack(references).astype(np.float32)
    print(f"{len(references)} of {count} held-out faces found (pasted at 150–500 px, tilted ±25°)")
    predictor = None
    if model_path:
        from core.export import ensure_tflite
        from core.predict import Predictor
        predictor = Predictor(ensure_tflite(model_path, in_process=True))  # as the app predicts
        ages = np.array([age for age, _, _ in labels], float)
        genders = np.array([g for _, g, _ in labels])
        races = np.array([r for _, _, r in labels])
        if predictor.img_size != 96:
            print(f"(model input is {predictor.img_size} px: crops are resized for it)")
    for name, batch in crops.items():
        batch = np.stack(batch)
        diff = np.abs(batch.astype(np.float32) - references).mean()
        text = f"  {name:48s} pixel MAE vs UTKFace original {diff:5.1f}"
        if predictor is not None:
            if predictor.img_size != 96:
                batch = np.stack([np.asarray(Image.fromarray(c).resize((predictor.img_size,) * 2)) for c in batch])
            preds = predictor.predict(batch)
            age_mae = np.mean(np.abs(np.array([p.age for p in preds]) - ages))
            gender = np.mean(np.array([int(p.female_prob >= 0.5) for p in preds]) == genders)
            race = np.mean(np.array([int(np.argmax(list(p.race_probs.values()))) for p in preds]) == races)
            text += f"   age MAE {age_mae:5.2f}   gender acc {gender:.3f}   race acc {race:.3f}"
        print(text)
    if predictor is not None:
        preds = predictor.predict(references.astype(np.uint8))
        age_mae = np.mean(np.abs(np.array([p.age for p in preds]) - ages))
        print(f"  {'(the UTKFace originals themselves)':48s} {'':30s}   age MAE {age_mae:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UTKFace folder (needs the FACE_NAMES)")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--detection", action="store_true")
    parser.add_argument("--calibrate", type=int, nargs="?", const=1500, default=0, metavar="N")
    parser.add_argument("--margin", type=int, nargs="?", const=400, default=0, metavar="N")
    parser.add_argument("--model", help="with --margin: a trained .keras model to score each framing; for latency, "
                                         "the .keras whose .tflite is timed (default: the shipped model)")
    args = parser.parse_args()
    if not (args.data / FACE_NAMES[0]).is_file():
        sys.exit(f"UTKFace images not found in {args.data} (use --data)")
    if args.detection:
        bench_detection(args.data)
    elif args.calibrate:
        bench_calibrate(args.data, args.calibrate)
    elif args.margin:
        bench_margin(args.data, args.margin, args.model)
    else:
        from core import settings
        from core.registry import DEFAULT_MODEL_NAME
        bench_latency(args.data, args.runs, Path(args.model or settings.MODELS_DIR / f"{DEFAULT_MODEL_NAME}.keras"))


if __name__ == "__main__":
    main()
