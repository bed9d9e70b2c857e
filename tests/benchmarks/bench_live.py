"""The Live tab's frame callback (core/live.py), timed at 640×480 with 1 and 3 faces. Prints figures, asserts nothing.

    nice -n 19 python tests/benchmarks/bench_live.py [--seconds 5] [--model models/face_insight_v1.keras]

Frames are fed back to back, as from a camera faster than the callback, through `video_frame_callback` (av frame
in, av frame out, as streamlit-webrtc calls it) with the shipped model's .tflite under LiteRT and the app's
detector, as the server runs them. Two schedules: the model on every frame (what a frame costs end to end), and
the app's own (every k-th frame when the model cannot keep up with a 30 fps camera). The goal: ≥ 15 frames drawn
per second with the model refreshing at ≥ 5 Hz, on 2 cores. WebRTC's own VP8 decoding and encoding are not in
these figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from core.settings import SAMPLE_DIR  # noqa: E402
from tests.photos import Placed, compose  # noqa: E402

SIZE = (640, 480)
# Bundled sample faces, laid out as one person close to the camera, or three side by side
SCENES = {1: [Placed(320, 230, 230)], 3: [Placed(110, 240, 180), Placed(320, 240, 180), Placed(530, 240, 180)]}


def scene(count: int) -> np.ndarray:
    faces = [Image.open(path).convert("RGB") for path in sorted(SAMPLE_DIR.glob("*.jpg"))[1:1 + count]]
    return np.asarray(compose(faces, SCENES[count], SIZE, seed=7))


def timed_stream(analyzer, pixels: np.ndarray, seconds: float) -> tuple[int, float]:
    """(frames, wall seconds) of the callback fed back to back for about `seconds`, after a short warm-up."""
    import av
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    for _ in range(5):
        analyzer.video_frame_callback(frame)
    frames, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        analyzer.video_frame_callback(frame)
        frames += 1
    return frames, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per figure")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "face_insight_v1.keras")
    args = parser.parse_args()
    from core.export import tflite_is_current
    from core.faces import FaceDetector
    from core.live import LiveAnalyzer, LiveConfig, analyze_frame
    from core.predict import Predictor
    if not tflite_is_current(args.model):
        sys.exit(f"{args.model.with_suffix('.tflite')} is missing or older than the model: "
                 f"python -m core export --model {args.model}")
    predictor, detector = Predictor(args.model.with_suffix(".tflite")), FaceDetector()
    print(f"640×480 frames, {args.model.stem} ({predictor.img_size} px, flip TTA), {args.seconds:.0f} s each; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    schedules = {"model every frame": LiveConfig(max_frames_per_run=1), "app schedule": LiveConfig()}
    for count in SCENES:
        pixels = scene(count)
        found = len(analyze_frame(Image.fromarray(pixels), predictor, detector)[0])
        for name, config in schedules.items():
            analyzer = LiveAnalyzer(config)
            analyzer.use(predictor, detector)
            frames, seconds = timed_stream(analyzer, pixels, args.seconds)
            status = analyzer.status()
            print(f"  {count} face{'s' * (count > 1)} ({found} found), {name:18s} {frames / seconds:5.1f} frames/s "
                  f"drawn, model {status.model_hz:5.1f} Hz (every {status.frames_per_run} frames)")
    detector.close()


if __name__ == "__main__":
    main()
