"""An upload's files → the photos to analyse (core/uploads.py): zip archives opened in memory, within bounds."""

from __future__ import annotations

import io
import zipfile

from core import uploads


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_plain_files_pass_through_and_a_zip_gives_its_images_in_order():
    archive = _zip({"b/two.png": b"2", "a/one.jpg": b"1", "readme.txt": b"x", "__MACOSX/a/._one.jpg": b"",
                    ".hidden.jpg": b"h", "nested/": b""})
    photos, notes = uploads.expand([("me.jpg", b"me"), ("trip.zip", archive)])
    assert photos == [("me.jpg", b"me"), ("two.png", b"2"), ("one.jpg", b"1")]
    assert notes == []


def test_a_damaged_zip_is_a_note_not_an_error():
    photos, notes = uploads.expand([("trip.zip", b"PK\x03\x04 not really")])
    assert photos == [] and len(notes) == 1 and "trip.zip" in notes[0]


def test_a_zip_bomb_member_is_skipped_unread(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_MEMBER_BYTES", 1000)
    archive = _zip({"big.png": b"\0" * 50_000, "small.jpg": b"ok"}, zipfile.ZIP_DEFLATED)
    assert len(archive) < 1000  # the bomb is small until it is opened
    photos, notes = uploads.expand([("bomb.zip", archive)])
    assert photos == [("small.jpg", b"ok")]
    assert any("big.png" in note for note in notes)


def test_a_zip_with_too_many_images_is_cut_with_a_note(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_MEMBERS", 3)
    photos, notes = uploads.expand([("many.zip", _zip({f"{i}.jpg": b"x" for i in range(5)}))])
    assert [name for name, _ in photos] == ["0.jpg", "1.jpg", "2.jpg"] and len(notes) == 1


def test_a_zip_without_photos_says_so_and_only_the_name_makes_a_zip():
    photos, notes = uploads.expand([("docs.zip", _zip({"a.txt": b"x"})), ("photo.jpg", _zip({"b.jpg": b"y"}))])
    assert [name for name, _ in photos] == ["photo.jpg"]  # read as a photo: the decoder refuses it clearly
    assert len(notes) == 1 and "docs.zip" in notes[0] and "no photos" in notes[0]
