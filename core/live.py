"""The Live tab's video path: each webcam frame → faces → predictions → labels drawn on it, at video rate.

A frame takes the uploads' path (core.faces `FaceDetector.detect` and `align_crop`, core.predict `Predictor`,
`annotate`), without the tiles: at 640×480 they would cost four more detector passes per frame, for faces under ~15%
of the picture (someone three metres behind the camera's subject), and with one cut per face where uploads average
five shifted ones (core.alignment.VIEWS): five times the model's cost, which a stream spends on frames. Faces are
tracked across frames and their labels smoothed (core/tracking.py). The model runs on every frame when detection,
model and drawing fit in one frame's time (`LiveConfig.frame_budget_s`); otherwise on every k-th frame, the frames
between drawn from the last result with the boxes carried along by each face's velocity, k chosen from the measured
costs so that the frames drawn keep up with the camera.

`LiveAnalyzer.video_frame_callback` is what streamlit-webrtc calls, in its own worker thread, once per frame: it
never touches Streamlit, and a failure is kept for the page to show (a callback that raises ends the stream). The
predictor and detector are the server's shared ones (their own locks serialise calls from several streams and
uploads). Frames live in memory only, for the time it takes to draw on them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.alignment import align_crop
from core.drawing import annotate
from core.errors import UserError
from core.faces import Face, FaceDetector
from core.predict import FacePrediction, Predictor
from core.slots import LIVE_BUSY, Seats
from core.tracking import FaceTracker, TrackerConfig

LOGGER = logging.getLogger(__name__)
# Without a configuration: a public STUN server, enough where browser and server can reach each other directly
DEFAULT_ICE_SERVERS = ({"urls": ["stun:stun.l.google.com:19302"]},)
VIDEO_CONSTRAINTS = {"video": {"width": 640, "height": 480}, "audio": False}  # the size the budget is set for


@dataclass(frozen=True)
class LiveConfig:
    frame_budget_s: float = 1 / 30  # a webcam's usual 30 fps: the model runs every frame when it fits in this
    max_frames_per_run: int = 6  # the model runs at least every 6th frame: ≥ 5 Hz from a 30 fps camera
    cost_smoothing: float = 0.2  # weight of the latest timing in the running cost estimates
    rate_window_s: float = 2.0  # the frame rates shown are counted over this window
    tracker: TrackerConfig = TrackerConfig()


@dataclass(frozen=True)
class LiveStatus:
    """What the page shows about a stream: measured rates, faces on screen, the last failure."""
    drawn_fps: float
    model_hz: float
    frames_per_run: int  # the model runs on every n-th frame
    faces: int
    error: str | None = None


class LiveConfigError(UserError):
    """The app's WebRTC settings (secrets) are malformed; the message says what to fix."""


def ice_configuration(secrets: Mapping | None) -> dict:
    """The RTC configuration for browser and server: `ice_servers` of the secrets' `[webrtc]` table (a TURN server,
    for hosts where the two cannot reach each other directly), else a public STUN server. Raises
    LiveConfigError for a table that is there but malformed."""
    try:
        table = (secrets or {}).get("webrtc")
    except Exception:  # noqa: BLE001 - Streamlit raises when there is no secrets file at all: nothing configured
        table = None
    servers = (table or {}).get("ice_servers")
    if servers is None:
        return {"iceServers": [dict(server) for server in DEFAULT_ICE_SERVERS]}
    if isinstance(servers, (str, Mapping)) or not servers:
        raise LiveConfigError("[webrtc] ice_servers in the app's secrets must be a non-empty list of servers.")
    return {"iceServers": [_ice_server(server) for server in servers]}


def _ice_server(server) -> dict:
    if not isinstance(server, Mapping) or "urls" not in server:
        raise LiveConfigError("Each entry of [webrtc] ice_servers needs `urls` (e.g. \"turn:host:3478\").")
    urls = [server["urls"]] if isinstance(server["urls"], str) else list(server["urls"])
    if not urls or not all(isinstance(url, str) and url.startswith(("stun:", "turn:", "turns:")) for url in urls):
        raise LiveConfigError(f"ICE server urls must start with stun:, turn: or turns:, not {server['urls']!r}.")
    extra = {key: str(server[key]) for key in ("username", "credential") if key in server}
    return {"urls": urls, **extra}


class ConnectionWatch:
    """The stream's connection as the page tells it, from the component's two flags over successive script runs:
    "idle", "connecting" (offer sent, no media yet), "playing", or "failed" (an attempt ended without ever
    playing: the network between browser and server lets no WebRTC through), which stays until the next try."""

    def __init__(self):
        self._trying = False
        self._failed = False

    def update(self, playing: bool, signalling: bool) -> str:
        if playing:
            self._trying = self._failed = False
            return "playing"
        if signalling:
            self._trying, self._failed = True, False
            return "connecting"
        if self._trying:
            self._trying, self._failed = False, True
        return "failed" if self._failed else "idle"


def analyze_frame(image: Image.Image, predictor: Predictor,
                  detector: FaceDetector) -> tuple[list[Face], list[FacePrediction]]:
    """Every face of one video frame and its prediction, all faces in one model call."""
    faces = detector.detect(image, tiles="never")
    if not faces:
        return [], []
    crops = np.stack([align_crop(image, face, predictor.img_size) for face in faces])
    return faces, predictor.predict(crops)


class RateMeter:
    """Events per second over the last `window_s` seconds."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()

    def tick(self) -> None:
        self._times.append(self._clock())
        self._forget(self._times[-1])

    def rate(self) -> float:
        now = self._clock()
        self._forget(now)
        if len(self._times) < 2:
            return 0.0
        # n events span n - 1 intervals; a stream that stopped decays to 0 as its events leave the window
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()


def frames_per_run(analysis_s: float, draw_s: float, budget_s: float, most: int) -> int:
    """The least k for which running the model on every k-th frame keeps up: (analysis + k · draw) / k ≤ budget,
    at most `most` (past it the frames fall behind the camera, and the model still refreshes)."""
    if analysis_s + draw_s <= budget_s:
        return 1
    room = budget_s - draw_s
    return most if room <= 0 else max(1, min(most, math.ceil(analysis_s / room)))


class LiveAnalyzer:
    """One video stream's frame loop: tracker, timings and rates. `use` gives it the model and detector (until
    then frames go back as they came); `process` draws on one RGB frame; `status` is for the page."""

    def __init__(self, config: LiveConfig = LiveConfig(), clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()  # `use` and `status` run in the script thread, frames in the stream's
        self._model: tuple[Predictor, FaceDetector] | None = None
        self._tracker = FaceTracker(config.tracker)
        self._drawn = RateMeter(config.rate_window_s, clock)
        self._runs = RateMeter(config.rate_window_s, clock)
        self._analysis_s: float | None = None
        self._draw_s: float | None = None
        self._since_run = 0  # frames drawn since the model last ran
        self._error: str | None = None
        self._seats: Seats | None = None

    def use(self, predictor: Predictor, detector: FaceDetector, seats: Seats | None = None) -> None:
        """Predict with this model from the next frame on; another model starts the tracks afresh. With `seats`
        (a public server's), a frame is analysed only while this stream holds one of them."""
        with self._lock:
            self._seats = seats
            if self._model is not None and self._model[0] is predictor and self._model[1] is detector:
                return
            self._model = (predictor, detector)
            self._tracker = FaceTracker(self.config.tracker)
            self._analysis_s = None
            self._error = None

    def status(self) -> LiveStatus:
        with self._lock:
            return LiveStatus(self._drawn.rate(), self._runs.rate(), self._frames_per_run(),
                              len(self._tracker.tracks), self._error)

    def video_frame_callback(self, frame):
        """streamlit-webrtc's per-frame hook: an av.VideoFrame in, the drawn one out (same timing, set by the
        component)."""
        import av
        drawn = self.process(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(drawn, format="rgb24")

    def process(self, pixels: np.ndarray) -> np.ndarray:
        """One (height, width, 3) RGB uint8 frame with every tracked face's box and label drawn on it."""
        now = self._clock()
        with self._lock:
            model, due, seats = self._model, self._since_run + 1 >= self._frames_per_run(), self._seats
        if model is None:
            self._count_frame(None, None)
            return pixels
        if seats is not None and not seats.hold(self):  # every seat taken by other streams: back as it came
            with self._lock:
                self._drawn.tick()
                self._error = LIVE_BUSY
            return pixels
        image = Image.fromarray(pixels)
        try:
            analysis_s = self._run_model(now, image, *model) if due else None
            drawing = self._clock()
            drawn = self._draw(now, image, pixels)
        except Exception as error:  # noqa: BLE001 - a callback that raises ends the stream: keep it for the page
            LOGGER.exception("live frame failed")
            with self._lock:
                self._error = str(error) or type(error).__name__
            return pixels
        self._count_frame(analysis_s, self._clock() - drawing)
        return drawn

    def _run_model(self, now: float, image: Image.Image, predictor: Predictor, detector: FaceDetector) -> float:
        """Detect and predict on this frame, update the tracks; returns the seconds it took."""
        faces, predictions = analyze_frame(image, predictor, detector)
        with self._lock:
            self._tracker.update(now, faces, predictions)
        return self._clock() - now

    def _draw(self, now: float, image: Image.Image, pixels: np.ndarray) -> np.ndarray:
        with self._lock:
            shown = self._tracker.faces_at(now)
        if not shown:
            return pixels
        return np.asarray(annotate(image, [face for face, _ in shown], [prediction for _, prediction in shown]))

    def _count_frame(self, analysis_s: float | None, draw_s: float | None) -> None:
        with self._lock:
            self._drawn.tick()
            if draw_s is not None:
                self._draw_s = self._smoothed(self._draw_s, draw_s)
            if analysis_s is None:
                self._since_run += 1
                return
            self._runs.tick()
            self._analysis_s = self._smoothed(self._analysis_s, analysis_s)
            self._since_run = 0
            self._error = None

    def _smoothed(self, average: float | None, sample: float) -> float:
        return sample if average is None else average + self.config.cost_smoothing * (sample - average)

    def _frames_per_run(self) -> int:
        if self._analysis_s is None:  # not measured yet: run, and measure
            return 1
        return frames_per_run(self._analysis_s, self._draw_s or 0.0, self.config.frame_budget_s,
                              self.config.max_frames_per_run)
