"""What the Predict page keeps and hands out of its analyses: results remembered per photo by content, the summary
table of an upload, and the downloads (CSV, JSON, the annotated photo as PNG).

Remembering by content (a hash of the bytes with everything else the answer depends on) is what lets a rerun, a
click on any other widget, show the same photos' results without detecting and predicting again (4–6 s for a few
group photos on 2 cores). Only small things are kept: the faces, their crops and a preview; the photo itself is
decoded again from the upload's bytes for display (milliseconds, against seconds of analysis)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections import OrderedDict

import pandas as pd

from core.images import DISPLAY_MAX_SIDE, SESSION_PREVIEW_SIDE, load_photo, shrink_for_display
from core.predict import DRAFT_SIDE, Analysis

MAX_REMEMBERED = 16  # analyses a session keeps: a few uploads' worth, each ~100 KB with its crops and preview


def photo_key(data: bytes, *options) -> str:
    """The cache key of a photo's analysis: its bytes and every option it depends on (model version, search…)."""
    digest = hashlib.sha256(data)
    digest.update(repr(options).encode())
    return digest.hexdigest()


def remember(store: OrderedDict, key: str, analysis: Analysis) -> None:
    """Keep an analysis (its photo cut to a preview) under `key`, the oldest forgotten beyond MAX_REMEMBERED."""
    store[key] = shrink(analysis, preview=True)
    store.move_to_end(key)
    while len(store) > MAX_REMEMBERED:
        store.popitem(last=False)


def recall(store: OrderedDict, key: str, data: bytes) -> Analysis | None:
    """A remembered analysis with its photo decoded again from `data` at display size, None when not known."""
    kept = store.get(key)
    if kept is None:
        return None
    store.move_to_end(key)
    return dataclasses.replace(kept, image=shrink_for_display(load_photo(data, draft_side=DRAFT_SIDE).image,
                                                              DISPLAY_MAX_SIDE))


def face_rows(name: str, analysis: Analysis) -> list[dict]:
    """One row per face, with plain column names: what the CSV download holds. A group-head model's rows also
    carry its age group; a model without a race head (Adience's) leaves the race cells empty."""
    rows = []
    for result in analysis.faces:
        p = result.prediction
        x, y, w, h = result.face.pixel_box(analysis.full_size)
        group = {"age group": p.age_group, "age group probability": round(p.age_group_probs[p.age_group], 3)
                 } if p.age_group else {}
        rows.append({"photo": name, "face": result.number, "age (years)": round(p.age, 1),
                     "age ± (years)": round(p.age_std, 1), **group, "gender": p.gender,
                     "gender probability": round(p.gender_prob, 3), "race": p.race,
                     "race probability": round(p.race_probs[p.race], 3) if p.race else None, "box left": x,
                     "box top": y, "box width": w, "box height": h})
    return rows


def _short_age(prediction) -> str:
    """A face's age for the summary table: its years, or a group-head model's age group."""
    return prediction.age_group or f"{prediction.age:.0f}"


def summary_table(outcomes: list[tuple[str, Analysis | None, str]]) -> pd.DataFrame:
    """One row per photo of an upload, from (name, analysis or None, what happened when there is none)."""
    rows = []
    for name, analysis, problem in outcomes:
        faces = analysis.faces if analysis is not None else []
        rows.append({"photo": name, "faces": len(faces),
                     "ages": ", ".join(_short_age(r.prediction) for r in faces) or "—",
                     "genders": ", ".join(r.prediction.gender for r in faces) or "—",
                     "races": ", ".join(r.prediction.race or "—" for r in faces) or "—",
                     "note": problem or (analysis.note if analysis is not None and analysis.note else "")})
    return pd.DataFrame(rows, columns=["photo", "faces", "ages", "genders", "races", "note"])


def results_csv(analyses: list[tuple[str, Analysis]]) -> bytes:
    rows = [row for name, analysis in analyses for row in face_rows(name, analysis)]
    return pd.DataFrame(rows).to_csv(index=False).encode()


def results_json(analyses: list[tuple[str, Analysis]]) -> bytes:
    """Every photo's faces as `python -m core predict` writes them (box in full-resolution pixels)."""
    return json.dumps([{"image": name, **analysis.to_dict()} for name, analysis in analyses], indent=1).encode()


def annotated_png(analysis: Analysis) -> bytes:
    buffer = io.BytesIO()
    analysis.annotated().save(buffer, "PNG", compress_level=3)  # fast: this runs on every script run
    return buffer.getvalue()


def shrink(analysis: Analysis, preview: bool = False) -> Analysis:
    """The analysis with its photo cut to display size, or to the preview a session keeps (boxes refer to
    `full_size`)."""
    side = SESSION_PREVIEW_SIDE if preview else DISPLAY_MAX_SIDE
    return dataclasses.replace(analysis, image=shrink_for_display(analysis.image, side))
