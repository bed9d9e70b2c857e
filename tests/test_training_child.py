"""The training process's side of the pipe (core.training_child): its Progress reaches the server as deltas, only
what changed, counters throttled and everything else at once; a public run is labelled as its owner's the moment
its folder is reported. The whole child, for real, is in tests/test_jobs.py."""

from __future__ import annotations

import pytest

from core import public_runs, training_child
from core.children import SPAWN, SharedFlag
from core.training_child import StreamingProgress


@pytest.fixture
def pipe():
    reader, writer = SPAWN.Pipe(duplex=False)
    yield reader, writer
    reader.close()


def test_changes_arrive_as_deltas_of_what_changed(pipe, monkeypatch):
    monkeypatch.setattr(training_child, "PUBLISH_SECONDS", 60.0)  # no throttled update gets through on time
    reader, writer = pipe
    progress = StreamingProgress(epochs=2, stop_event=SharedFlag()).attach(writer, None)
    progress.update(status="running", message="Epoch 1")
    first = reader.recv()
    assert first["set"]["status"] == "running" and first["set"]["epochs"] == 2
    progress.update(epoch=1, batch=3)  # counters only: held back by the throttle
    assert not reader.poll(0.3)
    progress.record_epoch({"epoch": 1, "loss": 1.5})  # an epoch end goes at once, with what was held back
    delta = reader.recv()
    assert delta["history"] == [{"epoch": 1, "loss": 1.5}] and delta["set"] == {"epoch": 1, "batch": 3}
    progress.close()
    with pytest.raises(EOFError):  # nothing was left to send, and the child's end is closed
        reader.recv()


def test_a_public_run_is_labelled_when_its_folder_is_reported(pipe, tmp_path):
    reader, writer = pipe
    run = tmp_path / "20250101-000000-custom_cnn"
    run.mkdir()
    progress = StreamingProgress(epochs=1, stop_event=SharedFlag()).attach(writer, None, owner="visitor")
    progress.update(run_dir=str(run))
    assert public_runs.run_owner(run) == "visitor"
    assert reader.recv()["set"]["run_dir"] == str(run)
    progress.close()
