"""core/live.py: the WebRTC settings from secrets, the connection state the page tells, frame rates, and the frame
loop (every frame drawn, the model on every k-th when it cannot keep up, failures kept for the page) with stand-in
detector and model on a fake clock; then the real path (MediaPipe, the tiny model's .tflite, an av.VideoFrame)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core import live, slots
from core.datasets import RACES
from core.faces import Face
from core.live import ConnectionWatch, LiveAnalyzer, LiveConfig, LiveConfigError, RateMeter, ice_configuration
from core.predict import FacePrediction
from core.settings import SAMPLE_DIR
from tests.photos import Placed, compose

FRAME = (480, 640, 3)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class StandInDetector:
    """One face at a fixed place; each call costs `cost_s` on the fake clock (or raises `error`)."""

    def __init__(self, clock: Clock, cost_s: float = 0.0):
        self.clock, self.cost_s, self.calls, self.error = clock, cost_s, 0, None

    def detect(self, image, tiles=None):
        assert tiles == "never"
        self.calls += 1
        if self.error:
            raise self.error
        self.clock.now += self.cost_s
        return [Face((200, 150, 160, 160), 0.9, ((250, 200), (310, 200), (280, 240), (280, 280)), "short")]


class StandInPredictor:
    img_size = 32

    def predict(self, crops):
        assert crops.shape[1:] == (32, 32, 3)
        return [FacePrediction(30.0, 4.0, 0.8, {name: 0.2 for name in RACES})] * len(crops)


def stream(analyzer: LiveAnalyzer, clock: Clock, frames: int) -> list[np.ndarray]:
    """Frames 1/30 s apart through the analyzer, as the camera sends them; returns what it drew."""
    pixels = np.full(FRAME, 90, np.uint8)
    start, drawn = clock.now, []
    for i in range(frames):
        clock.now = max(clock.now, start + i / 30)  # the next frame, or later if the last one overran
        drawn.append(analyzer.process(pixels))
    return drawn


# ------------------------------------------------------------------------------------------ settings, state

class NoSecretsFile:
    def get(self, key, default=None):
        raise FileNotFoundError("No secrets found")  # what st.secrets does when the app has no secrets.toml


@pytest.mark.parametrize("secrets", [None, {}, {"webrtc": {}}, NoSecretsFile()])
def test_without_a_configuration_a_public_stun_server_is_used(secrets):
    assert ice_configuration(secrets) == {"iceServers": [dict(server) for server in live.DEFAULT_ICE_SERVERS]}


def test_a_turn_server_comes_from_the_secrets():
    secrets = {"webrtc": {"ice_servers": [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": ["turn:turn.example.org:80", "turns:turn.example.org:443?transport=tcp"],
         "username": "user", "credential": "secret"}]}}
    assert ice_configuration(secrets) == {"iceServers": [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org:80", "turns:turn.example.org:443?transport=tcp"],
         "username": "user", "credential": "secret"}]}


def test_the_readme_example_is_a_valid_configuration():
    import re
    import tomllib

    from tests.support import PROJECT_ROOT
    example = re.search(r"```toml\n(\[webrtc\].*?)```", (PROJECT_ROOT / "README.md").read_text(), re.S).group(1)
    servers = ice_configuration(tomllib.loads(example))["iceServers"]
    assert any(url.startswith("turn:") for server in servers for url in server["urls"])


@pytest.mark.parametrize("servers, says", [
    ("turn:turn.example.org", "non-empty list"),
    ([], "non-empty list"),
    ([{"username": "user"}], "needs `urls`"),
    ([{"urls": "http://turn.example.org"}], "stun:, turn: or turns:"),
])
def test_a_malformed_configuration_is_refused_with_what_to_fix(servers, says):
    with pytest.raises(LiveConfigError, match=says):
        ice_configuration({"webrtc": {"ice_servers": servers}})


def test_the_connection_state_tells_an_attempt_that_never_played():
    watch = ConnectionWatch()
    assert watch.update(False, False) == "idle"
    assert watch.update(False, True) == "connecting"
    assert watch.update(True, True) == "playing"
    assert watch.update(False, False) == "idle"  # stopped after playing: fine
    assert watch.update(False, True) == "connecting"
    assert watch.update(False, False) == "failed"  # gave up without ever playing
    assert watch.update(False, False) == "failed"  # stays said until the next try
    assert watch.update(False, True) == "connecting"
    assert watch.update(True, True) == "playing"


def test_rate_meter_counts_over_its_window():
    clock = Clock()
    meter = RateMeter(2.0, clock)
    assert meter.rate() == 0
    for _ in range(21):
        meter.tick()
        clock.now += 0.1
    assert meter.rate() == pytest.approx(10, rel=0.1)
    clock.now += 5  # the stream stopped
    assert meter.rate() == 0


@pytest.mark.parametrize("analysis_s, draw_s, expected", [
    (0.020, 0.005, 1),  # fits in a frame: the model runs on every one
    (0.090, 0.0, 3),
    (0.100, 0.013, 5),  # 100 ms of model over 20 ms of room per frame
    (1.000, 0.005, 6),  # capped: the model still refreshes
    (0.050, 0.040, 6),  # drawing alone exceeds a frame
])
def test_frames_per_run(analysis_s, draw_s, expected):
    assert live.frames_per_run(analysis_s, draw_s, 1 / 30, 6) == expected


# ------------------------------------------------------------------------------------------ the frame loop

def test_frames_go_back_untouched_until_a_model_is_given():
    clock = Clock()
    analyzer = LiveAnalyzer(clock=clock)
    frame = np.full(FRAME, 90, np.uint8)
    assert analyzer.process(frame) is frame
    assert analyzer.status().faces == 0 and analyzer.status().model_hz == 0


def test_a_fast_model_runs_on_every_frame_and_every_frame_is_labelled():
    clock = Clock()
    analyzer, detector = LiveAnalyzer(clock=clock), StandInDetector(clock, cost_s=0.010)
    analyzer.use(StandInPredictor(), detector)
    drawn = stream(analyzer, clock, 30)
    assert detector.calls == 30
    assert all((frame != 90).any() for frame in drawn)
    status = analyzer.status()
    assert status.frames_per_run == 1 and status.faces == 1
    assert status.drawn_fps == pytest.approx(30, rel=0.1) and status.model_hz == pytest.approx(30, rel=0.1)


def test_a_slow_model_runs_on_every_kth_frame_and_the_frames_between_still_carry_its_labels():
    clock = Clock()
    analyzer, detector = LiveAnalyzer(clock=clock), StandInDetector(clock, cost_s=0.090)
    analyzer.use(StandInPredictor(), detector)
    drawn = stream(analyzer, clock, 30)
    assert analyzer.status().frames_per_run == 3
    assert detector.calls == pytest.approx(30 / 3, abs=1)
    assert all((frame != 90).any() for frame in drawn)


def test_a_failing_frame_goes_back_unlabelled_and_the_page_is_told():
    clock = Clock()
    analyzer, detector = LiveAnalyzer(clock=clock), StandInDetector(clock)
    analyzer.use(StandInPredictor(), detector)
    detector.error = RuntimeError("detector gone")
    frame = np.full(FRAME, 90, np.uint8)
    assert analyzer.process(frame) is frame
    assert analyzer.status().error == "detector gone"
    detector.error = None
    analyzer.process(frame)
    assert analyzer.status().error is None


def test_a_stream_beyond_the_public_servers_seats_goes_back_unlabelled_until_one_frees():
    clock = Clock()
    seats = slots.Seats(1, lease_s=5.0, clock=clock)
    first, second = LiveAnalyzer(clock=clock), LiveAnalyzer(clock=clock)
    first_detector, second_detector = StandInDetector(clock), StandInDetector(clock)
    first.use(StandInPredictor(), first_detector, seats)
    second.use(StandInPredictor(), second_detector, seats)
    stream(first, clock, 3)
    frame = np.full(FRAME, 90, np.uint8)
    assert second.process(frame) is frame and second_detector.calls == 0
    assert second.status().error == slots.LIVE_BUSY
    clock.now += 6.0  # the first stream has sent nothing for longer than the lease: it has ended
    assert second.process(frame) is not frame and second_detector.calls == 1
    assert second.status().error is None
    assert first.process(frame) is frame  # now the first one waits


def test_another_model_starts_the_tracks_afresh():
    clock = Clock()
    analyzer, detector = LiveAnalyzer(clock=clock), StandInDetector(clock)
    analyzer.use(StandInPredictor(), detector)
    stream(analyzer, clock, 3)
    assert analyzer.status().faces == 1
    analyzer.use(StandInPredictor(), detector)
    assert analyzer.status().faces == 0


def test_the_live_config_aims_at_video_rate():
    config = LiveConfig()
    assert config.frame_budget_s == pytest.approx(1 / 30)
    assert 30 / config.max_frames_per_run >= 5  # the model refreshes at ≥ 5 Hz from a 30 fps camera


# ------------------------------------------------------------------------------------------ the real path

@pytest.fixture(scope="module")
def camera_frame() -> np.ndarray:
    """Two bundled sample faces on a 640×480 background, as a webcam would send them."""
    faces = [Image.open(path).convert("RGB") for path in sorted(SAMPLE_DIR.glob("*.jpg"))[:2]]
    return np.asarray(compose(faces, [Placed(170, 250, 220), Placed(470, 250, 220)], (640, 480), seed=4))


def test_a_video_frame_goes_through_detection_alignment_and_the_model(camera_frame, detector, tiny_residual_model):
    import av

    from core.predict import Predictor
    predictor = Predictor(tiny_residual_model.with_suffix(".tflite"))
    faces, predictions = live.analyze_frame(Image.fromarray(camera_frame), predictor, detector)
    assert len(faces) == len(predictions) == 2
    analyzer = LiveAnalyzer()
    analyzer.use(predictor, detector)
    returned = analyzer.video_frame_callback(av.VideoFrame.from_ndarray(camera_frame, format="rgb24"))
    pixels = returned.to_ndarray(format="rgb24")
    assert pixels.shape == camera_frame.shape
    assert (pixels != camera_frame).any(axis=-1).sum() > 2000  # two boxes and their labels
    assert analyzer.status().faces == 2 and analyzer.status().error is None
