"""The Predict page's Live tab (a piece of that page, not a page: the router never lists it): the webcam stream
through streamlit-webrtc, every frame analysed on the server by core/live.py and sent back with its labels.

The component calls the frame callback in its own thread, where no Streamlit call may run: the session's
`LiveAnalyzer` (kept in session state, so reruns keep its tracks) takes the shared model and detector from the
script run, and the page reads its measured rates back once a second in a fragment.

streamlit-webrtc is imported only once the visitor turns the stream on: aiortc's SRTP library crashes the process
when it loads after TensorFlow (which exports the symbols of its own BoringSSL), as in a test process that built
a Keras model, and the component cannot run under AppTest (it reaches into the Streamlit runtime, which AppTest
mocks). Asking first is also the polite way to start a camera.
"""

from __future__ import annotations

import streamlit as st

from core import access, slots
from core.faces import DetectorError, shared_detector
from core.live import VIDEO_CONSTRAINTS, ConnectionWatch, LiveAnalyzer, LiveConfigError, ice_configuration
from core.registry import ModelEntry, ModelError
from pages.common import predictor_for

KEY_ON = "predict.live_on"
KEY_STREAM = "predict.live"  # the component's own state lives under this key
KEY_ANALYZER = "predict.live_analyzer"
KEY_WATCH = "predict.live_watch"
PRIVACY = ("Frames are analysed in this server's memory as they arrive and dropped once drawn: nothing is "
           "recorded or stored.")
NO_CONNECTION = ("The live stream could not connect: the network between your browser and this server lets no "
                 "WebRTC video through (the app's operator can add a TURN server: see the README). The **Camera** "
                 "tab takes single photos and always works.")


def tabs_with_live(entry: ModelEntry | None, profile: access.Profile):
    """The Predict page's Upload, Camera and Live tabs, the Live one filled; returns the other two."""
    upload_tab, camera_tab, live = st.tabs(["Upload", "Camera", "Live"])
    with live:
        live_tab(entry, profile)
    return upload_tab, camera_tab


def live_tab(entry: ModelEntry | None, profile: access.Profile) -> None:
    """The webcam stream with labels drawn on it, and its measured frame rates while it plays. Messages are in
    words `profile` may show."""
    st.caption(PRIVACY)
    if entry is None or not st.toggle("Analyse my webcam live", key=KEY_ON):
        if KEY_ANALYZER in st.session_state:  # turned off: its live-stream seat (public servers) frees at once
            slots.live_seats.release(st.session_state[KEY_ANALYZER])
        return
    from streamlit_webrtc import WebRtcMode, webrtc_streamer  # only now: see the module's docstring
    try:
        rtc_configuration = ice_configuration(st.secrets)
    except LiveConfigError as error:
        st.error(str(error))
        return
    analyzer = st.session_state.setdefault(KEY_ANALYZER, LiveAnalyzer())
    seats = slots.live_seats if profile.public else None  # the owner's own machine: no cap
    if seats is not None and not seats.free_for(analyzer):
        st.warning(slots.LIVE_BUSY)
        return
    stream = webrtc_streamer(key=KEY_STREAM, mode=WebRtcMode.SENDRECV, rtc_configuration=rtc_configuration,
                             media_stream_constraints=VIDEO_CONSTRAINTS, async_processing=True,
                             video_frame_callback=analyzer.video_frame_callback)
    connection = st.session_state.setdefault(KEY_WATCH, ConnectionWatch()).update(stream.state.playing,
                                                                                  stream.state.signalling)
    if connection in ("connecting", "playing"):
        try:
            analyzer.use(predictor_for(entry), shared_detector(), seats)
        except (ModelError, DetectorError) as error:
            st.error(access.public_text(str(error), profile))
            return
    if connection == "connecting":
        st.info("Connecting… If the video does not start within a few seconds, use the **Camera** tab.")
    elif connection == "failed":
        st.warning(NO_CONNECTION)
    elif connection == "playing":
        live_figures(analyzer, profile)


@st.fragment(run_every=1.0)
def live_figures(analyzer: LiveAnalyzer, profile: access.Profile) -> None:
    """The stream's measured rates, refreshed every second without rerunning the page (a fragment's run does not
    run the page's top, so the profile comes in as an argument)."""
    status = analyzer.status()
    drawn_col, model_col, faces_col = st.columns(3)
    drawn_col.metric("Frames drawn per second", f"{status.drawn_fps:.1f}")
    model_col.metric("Model runs per second", f"{status.model_hz:.1f}",
                     help=f"The model runs on every frame it keeps up with, now every {status.frames_per_run}.")
    faces_col.metric("Faces", status.faces)
    if status.error:
        st.error(f"Frames are going back unlabelled: {access.public_text(status.error, profile)}")
