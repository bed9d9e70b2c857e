"""An upload's files → the photos to analyse: plain image files as they are, zip archives opened in memory.

A zip is untrusted like any upload: only its members named like images are read, each only when the archive
declares it no bigger than a photo can be (a zip bomb is tiny until opened, so the declared size is checked before
reading, and the read itself is capped), at most MAX_MEMBERS of them. Nothing is written to disk."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from core.images import EXTENSIONS

MAX_MEMBERS = 16  # images taken from one archive; the page's per-upload cap (core.images) applies after
MAX_MEMBER_BYTES = 25 * 2**20  # the largest image a member may be: a 40 MP phone JPEG is ~15 MB


def is_zip(name: str) -> bool:
    """By its name, as the upload widget allowed it: a photo's name decides it is read as a photo (and a document
    that is a zip inside, named .jpg, gets the image decoder's own clear refusal)."""
    return name.lower().endswith(".zip")


def expand(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(name, bytes) of every photo in `files`, zips replaced by their image members in archive order, and a note
    per archive or member left out (for the user)."""
    photos, notes = [], []
    for name, data in files:
        if not is_zip(name):
            photos.append((name, data))
            continue
        members, archive_notes = _zip_images(name, data)
        photos += members
        notes += archive_notes
    return photos, notes


def _is_image_name(member: str) -> bool:
    path = PurePosixPath(member)
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
    return not hidden and path.suffix.lower().lstrip(".") in EXTENSIONS


def _zip_images(name: str, data: bytes) -> tuple[list[tuple[str, bytes]], list[str]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist() if not info.is_dir() and _is_image_name(info.filename)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return [], [f"**{name}** is not a readable zip archive."]
    photos, notes = [], []
    if not infos:
        return [], [f"**{name}** holds no photos ({', '.join(EXTENSIONS)})."]
    if len(infos) > MAX_MEMBERS:
        notes.append(f"**{name}** holds {len(infos)} images: only the first {MAX_MEMBERS} are analysed.")
        infos = infos[:MAX_MEMBERS]
    for info in infos:
        member = PurePosixPath(info.filename).name
        if info.file_size > MAX_MEMBER_BYTES:
            notes.append(f"**{member}** in {name} is {info.file_size / 2**20:.0f} MB unpacked, more than the "
                         f"{MAX_MEMBER_BYTES // 2**20} MB a photo may be: left out.")
            continue
        try:
            with archive.open(info) as stream:
                content = stream.read(MAX_MEMBER_BYTES + 1)  # a lying header cannot make this read more
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
            notes.append(f"**{member}** in {name} cannot be unpacked (damaged or encrypted): left out.")
            continue
        if len(content) > MAX_MEMBER_BYTES:
            notes.append(f"**{member}** in {name} is larger than it claims: left out.")
            continue
        photos.append((member, content))
    return photos, notes
