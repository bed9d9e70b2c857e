"""The Explore page driven like a user: counts, charts, the image grid and its pages, filters, bad folders."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import access
from core.browse import filter_table, short_labels
from core.datasets import DatasetError, load_dataset
from pages import explore

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "pages" / "explore.py"
SAMPLE_DIR = ROOT / "data" / "sample" / "utkface"
FAIRFACE_FIXTURE = Path(__file__).parent / "fixtures" / "fairface"
MATCHING = "Images matching the filters"


@pytest.fixture
def page(monkeypatch) -> AppTest:
    monkeypatch.delenv("FACE_DATA_DIR", raising=False)
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def grid(at: AppTest):
    """The grid, its captions without the number each face has on its page ("3. 26 y · male · White")."""
    images = at.get("image")
    assert len(images) == 1, "the grid is one st.image element holding a page of thumbnails"
    numbers = [caption.split(". ", 1)[0] for caption in images[0].captions]
    assert numbers == [str(i) for i in range(1, len(numbers) + 1)]
    return SimpleNamespace(value=images[0].value, captions=[c.split(". ", 1)[1] for c in images[0].captions])


def choose_folder(at: AppTest, folder) -> AppTest:
    at.text_input(key=explore.KEY_FOLDER).input(str(folder)).run()
    return at


def test_opens_on_the_bundled_sample_with_its_counts(page):
    table = load_dataset(None, SAMPLE_DIR).table
    assert page.text_input(key=explore.KEY_FOLDER).value == str(SAMPLE_DIR)
    assert metric(page, "Images") == f"{len(table):,}"
    assert metric(page, "Problems") == "0"
    assert metric(page, "Female") == f"{int((table['gender'] == 1).sum()):,}"
    assert metric(page, "Asian") == f"{int((table['race'] == 2).sum()):,}"
    assert metric(page, MATCHING) == f"{len(table):,}"
    assert not page.error


def test_env_folder_is_the_default(monkeypatch):
    monkeypatch.setenv("FACE_DATA_DIR", str(FAIRFACE_FIXTURE))
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert not at.exception and not at.error
    assert at.text_input(key=explore.KEY_FOLDER).value == str(FAIRFACE_FIXTURE)
    assert metric(at, "Images") == "13" and metric(at, "Problems") == "4"
    assert metric(at, "Southeast Asian") == "2"


def test_charts_are_drawn(page):
    assert len(page.get("plotly_chart")) == 4
    page.radio(key=explore.KEY_COLOR_BY).set_value("race").run()
    assert not page.exception and len(page.get("plotly_chart")) == 4


def test_grid_shows_one_page_of_labelled_thumbnails(page):
    table = load_dataset(None, SAMPLE_DIR).table
    first = grid(page)
    assert len(first.value) == explore.PER_PAGE
    assert first.captions == short_labels(table.iloc[: explore.PER_PAGE])
    pager = page.pagination(key=explore.KEY_PAGE)
    assert pager.num_pages == -(-len(table) // explore.PER_PAGE)
    pager.set_value(pager.num_pages).run()
    last = grid(page)
    assert len(last.value) == len(table) - (pager.num_pages - 1) * explore.PER_PAGE
    assert last.captions == short_labels(table.iloc[(pager.num_pages - 1) * explore.PER_PAGE:])
    assert len(page.get("download_button")) == 1


def test_filters_change_the_count_and_the_grid(page):
    table = load_dataset(None, SAMPLE_DIR).table
    page.multiselect(key=explore.KEY_GENDERS).select("female").run()
    female = filter_table(table, genders=["female"])
    assert metric(page, MATCHING) == f"{len(female):,}" != f"{len(table):,}"
    assert all("female" in caption for caption in grid(page).captions)

    page.slider(key=explore.KEY_AGE).set_value((20, 29)).run()
    page.multiselect(key=explore.KEY_RACES).select("Asian").run()
    narrow = filter_table(table, (20, 29), ["female"], ["Asian"])
    assert 0 < len(narrow) < len(female)
    assert metric(page, MATCHING) == f"{len(narrow):,}"
    assert grid(page).captions == short_labels(narrow.iloc[: explore.PER_PAGE])
    assert metric(page, "Images") == f"{len(table):,}"  # headline counts describe the whole dataset

    page.slider(key=explore.KEY_AGE).set_value((110, 116)).run()
    assert metric(page, MATCHING) == "0"
    assert "No image matches" in page.info[0].value and not page.get("image")


@pytest.mark.parametrize(("make_folder", "message"), [
    (lambda tmp: tmp / "does-not-exist", "Folder not found"),
    (lambda tmp: (tmp / "a.txt").write_text("x") and tmp / "a.txt", "is a file, not a folder"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "No UTKFace images"),
    (lambda tmp: "  ", "No folder given"),
])
def test_bad_folders_give_an_error_not_a_traceback(page, tmp_path, make_folder, message):
    choose_folder(page, make_folder(tmp_path))
    assert not page.exception
    assert len(page.error) == 1 and message in page.error[0].value
    assert not page.get("plotly_chart") and not page.get("image")


def test_problems_are_listed(page, tmp_path):
    good, bad = "30_1_2_20170101000000001.jpg.chip.jpg", "39_1_20170116174525125.jpg.chip.jpg"
    for name in (good, bad):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    choose_folder(page, tmp_path)
    assert not page.exception
    assert metric(page, "Images") == "1" and metric(page, "Problems") == "1"
    assert page.expander[0].label == "Skipped files (1)"
    problems = page.dataframe[0].value
    assert problems["file"].tolist() == [bad] and "race missing" in problems["problem"][0]


def test_kind_picker_and_adience(page, shared_dir):
    page.selectbox(key=explore.KEY_KIND).set_value("adience")
    choose_folder(page, shared_dir / "data" / "adience")
    assert not page.exception and not page.error
    assert metric(page, "Images") == "19" and metric(page, "Male") == "11" and metric(page, "Female") == "8"
    assert len(page.get("plotly_chart")) == 4 and len(grid(page).value) == 19

    page.selectbox(key=explore.KEY_KIND).set_value("fairface").run()
    assert "No FairFace label files" in page.error[0].value


def test_full_utkface_folder(page, shared_dir):
    choose_folder(page, shared_dir / "data" / "utkface")
    assert not page.exception
    assert metric(page, "Images") == "21,702" and metric(page, "Problems") == "3"
    assert len(grid(page).value) == explore.PER_PAGE  # never all 21,702 thumbnails


# ------------------------------------------------------------------------------------ the public profile

ABSOLUTE = re.compile(r"(?<![\w.])/(?:tmp|etc|proc|work|home|root)\b")


def _all_text(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "error", "warning", "info", "success")
             for e in getattr(at, kind)]
    parts += [str(w.options) + str(w.help) for w in at.selectbox]
    return "\n".join(map(str, parts))


@pytest.fixture
def public_page(monkeypatch, tmp_path) -> AppTest:
    """Explore as a visitor of a public server whose operator offers the sample and one more folder."""
    for name in ("FACE_DATA_DIR", "FACE_MODE"):
        monkeypatch.delenv(name, raising=False)
    offered = tmp_path / "faces"
    offered.mkdir()
    for name in ("30_1_2_20170101000000001.jpg.chip.jpg", "41_0_0_20170101000000002.jpg.chip.jpg"):
        Image.new("RGB", (8, 8)).save(offered / name)
    (offered / "credentials.env").write_text("TOKEN=x")
    monkeypatch.setenv("FACE_DATASET_ROOTS", str(offered))
    monkeypatch.setenv("FACE_MODE", "public")
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert not at.exception
    return at


def test_public_explore_offers_a_list_not_a_folder_box(public_page):
    assert not public_page.text_input  # nothing to type /etc or /proc/self into
    picker = public_page.selectbox(key=explore.KEY_DATASET)
    assert picker.options == ["Bundled sample (300 UTKFace faces)", "faces"]
    assert metric(public_page, "Images") == "300" and not public_page.error
    picker.set_value("faces").run()
    assert metric(public_page, "Images") == "2" and metric(public_page, "Problems") == "1"
    assert public_page.dataframe[0].value["file"].tolist() == ["credentials.env"]  # a name, never its content
    assert not ABSOLUTE.search(_all_text(public_page))


def test_a_public_session_cannot_reach_other_folders(public_page):
    """A forged widget value (the folder box's key) is ignored: the public page reads its list only, and
    load_dataset would refuse anything else anyway (tests/test_datasets.py)."""
    public_page.session_state[explore.KEY_FOLDER] = "/etc"
    public_page.run()
    assert not public_page.exception and metric(public_page, "Images") == "300"
    with pytest.raises(DatasetError, match="reads only the datasets it offers"):
        load_dataset(None, "/etc", access.public_profile())


def test_without_face_mode_a_remote_visitor_gets_the_public_page(monkeypatch):
    monkeypatch.delenv("FACE_MODE", raising=False)
    monkeypatch.delenv("FACE_DATA_DIR", raising=False)
    from streamlit.runtime import context

    for peer, headers in (("203.0.113.7", [("Host", "faces.example.org")]),  # another machine
                          ("127.0.0.1", [("Host", "localhost:8501"), ("X-Forwarded-For", "203.0.113.7")])):  # proxy
        client = SimpleNamespace(remote_ip=peer, headers=headers, cookies={})
        monkeypatch.setattr(context, "_get_client_context", lambda client=client: client)
        at = AppTest.from_file(str(PAGE), default_timeout=120).run()
        assert not at.exception and not at.text_input, peer
        assert at.selectbox(key=explore.KEY_DATASET).value == access.SAMPLE_LABEL


def test_face_mode_from_the_apps_secrets(monkeypatch):
    monkeypatch.delenv("FACE_MODE", raising=False)
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.secrets["FACE_MODE"] = "public"
    at.run()
    assert not at.exception and not at.text_input and at.selectbox(key=explore.KEY_DATASET)


def test_the_owner_on_this_machine_keeps_the_folder_box(page):
    """FACE_MODE unset and a local browser (AppTest has no remote address): the workbench."""
    assert page.text_input(key=explore.KEY_FOLDER).value == str(SAMPLE_DIR)
    choose_folder(page, "/etc")  # the owner's own machine: any folder may be read
    assert not page.exception and "No usable UTKFace images in /etc" in page.error[0].value


def test_unexpected_errors_show_a_reference_not_internals(public_page, monkeypatch):
    from core import browse

    def broken(*args, **kwargs):
        raise KeyError(f"{SAMPLE_DIR}/secret")
    monkeypatch.setattr(browse, "race_names", broken)  # the page imports it afresh on every run
    public_page.run()
    assert not public_page.exception
    shown = public_page.error[0].value
    assert re.search(r"reference [0-9a-f]{8}", shown) and "KeyError" not in shown and not ABSOLUTE.search(shown)


# ------------------------------------------------------------------ issue 20, item 7: sort, enlarge, cheap first

def test_the_grid_sorts_by_age_gender_race_and_file(page):
    table = load_dataset(None, SAMPLE_DIR).table
    sort = page.selectbox(key=explore.KEY_SORT)
    assert {"age", "gender", "race", "file"} <= {str(option).split()[0].lower() for option in sort.options}
    age_option = next(option for option in sort.options if option.lower().startswith("age"))
    sort.set_value(age_option).run()
    captions = grid(page).captions
    youngest = table["age"].sort_values().iloc[: explore.PER_PAGE]
    assert [int(caption.split(" y")[0]) for caption in captions] == [int(age) for age in youngest]
    race_option = next(option for option in sort.options if option.lower().startswith("race"))
    page.selectbox(key=explore.KEY_SORT).set_value(race_option).run()
    assert grid(page).captions[0].endswith("White")


def test_a_face_can_be_enlarged_with_its_labels(page):
    enlarge = page.selectbox(key=explore.KEY_ENLARGE)
    assert enlarge.value is None and len(enlarge.options) == explore.PER_PAGE
    enlarge.set_value(enlarge.options[2]).run()
    assert not page.exception
    table = load_dataset(None, SAMPLE_DIR).table
    row = table.iloc[2]
    big = [image for image in page.get("image") if len(image.value) == 1]
    assert big, "one enlarged face beside the grid"
    text = "\n".join(m.value for m in page.markdown)
    assert Path(row["path"]).name in text and f"{int(row['age'])}" in text


def test_the_faces_are_drawn_before_the_charts(monkeypatch, tmp_path):
    """The cheap parts first: counts and the grid come out before the Plotly figures are built (a broken chart
    builder stands in for a slow one; a folder of its own keeps the figure cache cold)."""
    import shutil

    from core import charts

    for path in sorted(SAMPLE_DIR.glob("*.jpg"))[:12]:
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(charts, "age_histogram", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("slow")))
    monkeypatch.setenv("FACE_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert metric(at, "Images") == "12"
    assert len(grid(at).value) == 12, "the grid was drawn before the charts were built"
