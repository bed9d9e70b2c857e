"""Settings for hosting (Streamlit Community Cloud or any server): .streamlit/config.toml as Streamlit itself reads
it, the served app's behaviour (error details hidden and logged, XSRF enforced), packages.txt against the native
libraries MediaPipe and OpenCV really load, and requirements.txt as pip would read it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support import PROJECT_ROOT, launch, start_app, stop_app

CONFIG = PROJECT_ROOT / ".streamlit" / "config.toml"
PACKAGES = PROJECT_ROOT / "packages.txt"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
README = PROJECT_ROOT / "README.md"
# Native libraries the wheels link against that a slim Debian image lacks, and the Debian package of each.
NATIVE_LIBRARIES = {"libGL.so.1": "libgl1", "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
                    "libEGL.so.1": "libegl1", "libGLESv2.so.2": "libgles2"}
DEV_ONLY = {"pytest", "ruff", "playwright"}
SECRET = "db-password-hunter2"  # an exception message that must never reach a browser


def _config() -> dict:
    return tomllib.loads(CONFIG.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- config.toml

def test_config_is_set_for_hosting():
    config = _config()
    server, client = config["server"], config["client"]
    assert isinstance(server["maxUploadSize"], int) and 5 <= server["maxUploadSize"] <= 25  # MB: photos, not videos
    assert client["showErrorDetails"] == "none"  # users get a generic message; the log keeps the traceback
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True  # Streamlit turns XSRF off when CORS protection is off
    assert server["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert client["toolbarMode"] == "viewer"  # no developer menu (rerun, clear cache…) for visitors


def test_every_setting_is_one_streamlit_knows():
    """A misspelt key is silently ignored by Streamlit: a typo in `enableXsrfProtection` would switch it off."""
    from streamlit import config as st_config

    known = set(st_config._config_options_template)

    def keys(table: dict, prefix: str = ""):  # nested tables ([theme.dark]) are sections of their own
        for key, value in table.items():
            yield from keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]

    unknown = [key for key in keys(_config()) if key not in known]
    assert unknown == []


def test_streamlit_reads_these_settings_from_the_project_folder():
    code = ("import json; from streamlit import config as c; c.get_config_options(force_reparse=True); "
            "keys = ['server.maxUploadSize', 'client.showErrorDetails', 'server.enableXsrfProtection', "
            "'server.enableCORS', 'client.toolbarMode']; "
            "print(json.dumps({k: [c.get_option(k), c.get_where_defined(k)] for k in keys}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    options = json.loads(result.stdout.strip().splitlines()[-1])
    assert options["server.maxUploadSize"][0] == _config()["server"]["maxUploadSize"]
    assert options["client.showErrorDetails"][0] == "none"
    assert options["server.enableXsrfProtection"][0] is True and options["server.enableCORS"][0] is True
    for key in ("server.maxUploadSize", "client.showErrorDetails", "server.enableXsrfProtection"):
        assert options[key][1].endswith(str(Path(".streamlit") / "config.toml")), (key, options[key][1])


@pytest.fixture(scope="module")
def failing_app(tmp_path_factory):
    """A one-line app that raises, served with the project's config (the server starts in the project folder)."""
    workdir = tmp_path_factory.mktemp("failing_app")
    script = workdir / "boom.py"
    script.write_text(f"import streamlit as st\nst.title('Boom')\nraise RuntimeError({SECRET!r})\n")
    process, url = start_app(workdir, script=str(script), startup_s=120)
    try:
        yield url, workdir / "streamlit.log"
    finally:
        stop_app(process)


def test_the_served_app_refuses_uploads_without_the_xsrf_token(failing_app):
    url, _ = failing_app
    request = urllib.request.Request(f"{url}/_stcore/upload_file/some-session/some-file", data=b"x" * 100,
                                     method="PUT", headers={"Content-Type": "application/octet-stream"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403


@pytest.mark.browser
def test_error_details_are_hidden_from_users_and_logged(failing_app):
    from playwright.sync_api import sync_playwright

    url, log = failing_app
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(url)
            page.locator('[data-testid="stException"]').wait_for(timeout=120_000)
            shown = page.locator("body").inner_text()
        finally:
            browser.close()
    assert "redacted" in shown and SECRET not in shown and "Traceback" not in shown
    assert SECRET in log.read_text(errors="replace")  # the operator still sees what went wrong


# ------------------------------------------------------------------------------------------- packages.txt

def _packages() -> list[str]:
    return PACKAGES.read_text(encoding="utf-8").split()


def test_packages_txt_is_plain_debian_names_for_the_native_libraries():
    lines = PACKAGES.read_text(encoding="utf-8").splitlines()
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", line) for line in lines), lines  # apt-get reads names only
    assert set(_packages()) == set(NATIVE_LIBRARIES.values())


def test_the_wheels_load_exactly_those_libraries_from_those_packages():
    """Ask the dynamic linker what OpenCV (from mediapipe) and MediaPipe's task library load, and dpkg which
    package owns each: packages.txt must hold the ones a slim image lacks."""
    if not (shutil.which("ldd") and shutil.which("dpkg")):
        pytest.skip("ldd and dpkg are needed to check native libraries (Debian/Ubuntu only)")
    import cv2
    import mediapipe

    binaries = [*Path(cv2.__file__).parent.glob("cv2*.so"),
                *Path(mediapipe.__file__).parent.glob("tasks/c/libmediapipe*.so")]
    assert len(binaries) >= 2, binaries
    resolved = {}
    for binary in binaries:
        output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60).stdout
        assert "not found" not in output, output
        resolved.update(re.findall(r"^\s*(\S+) => (/\S+)", output, flags=re.M))
    for library, package in NATIVE_LIBRARIES.items():
        assert library in resolved, f"{library} is no longer loaded: drop {package} from packages.txt?"
        owner = subprocess.run(["dpkg", "-S", str(Path(resolved[library]).resolve())], capture_output=True,
                               text=True, timeout=60).stdout
        assert owner.split(":")[0] == package, (library, owner)


# ---------------------------------------------------------------------------------------- requirements.txt

def _requirements() -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()]
    return [Requirement(line) for line in lines if line]


def test_requirements_are_plain_bounded_and_runtime_only():
    requirements = _requirements()
    names = {r.name.lower() for r in requirements}
    assert {"streamlit", "keras", "mediapipe", "plotly", "pillow"} <= names
    assert not names & DEV_ONLY  # Community Cloud installs requirements.txt only: keep the app image lean
    assert not any("opencv" in name for name in names)  # mediapipe brings opencv-contrib-python; two cv2 clash
    assert all(r.url is None for r in requirements)  # no git or file URLs: the host resolves from PyPI
    for r in requirements:
        bounded = any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)
        assert bounded or r.name.lower() in ("pillow", "matplotlib"), f"{r} has no upper bound"


def test_community_cloud_gets_tensorflow_cpu():
    """The host is Linux x86-64: the marker must pick the CPU-only wheel there (half the download, no CUDA)."""
    linux = {"platform_system": "Linux", "platform_machine": "x86_64", "sys_platform": "linux"}
    picked = [r.name for r in _requirements()
              if "tensorflow" in r.name and (r.marker is None or r.marker.evaluate(linux))]
    assert picked == ["tensorflow-cpu"]


def test_installed_versions_satisfy_the_requirements():
    """What the tests run against is what the host will install."""
    for requirement in _requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = metadata.version(requirement.name)
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement.name} {version}"


def test_readme_names_the_python_version_for_the_host():
    """Community Cloud picks the Python version in the app's settings, not from any file: the README must say
    which (the project's minimum, the version CI and the benchmarks use)."""
    minimum = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = minimum.removeprefix(">=")
    section = README.read_text(encoding="utf-8").split("## Deploying on Streamlit Community Cloud", 1)
    assert len(section) == 2, "README lacks the deployment section"
    assert f"Python {version}" in section[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------------------------ public hosting

def test_disconnected_sessions_are_freed_soon():
    ttl = _config()["server"]["disconnectedSessionTTL"]
    assert isinstance(ttl, int) and 30 <= ttl <= 120  # seconds; Streamlit's default is 120


def _deploy_section() -> str:
    return README.read_text(encoding="utf-8").split("## Deploying on Streamlit Community Cloud", 1)[1].split(
        "\n## ", 1)[0]


def test_the_community_cloud_steps_set_the_public_mode_explicitly():
    section = _deploy_section()
    steps = section.split("`.streamlit/config.toml` holds", 1)[0]
    assert 'FACE_MODE = "public"' in steps and "No secrets are needed" not in steps
    hosting = section.split("### Hosting publicly", 1)[1]
    for words in ("FACE_MODE", "FACE_DATASET_ROOTS", "loopback", "X-Forwarded-For", "reference id",
                  "FACE_CACHE_MAX_MB", "interrupted"):
        assert words in hosting, words


CI_RUN = PROJECT_ROOT / ".ci" / "run"


def _audit_verdict_script() -> str:
    """The Python that .ci/run feeds pip-audit's report to (the heredoc of its audit_verdict function)."""
    text = CI_RUN.read_text(encoding="utf-8")
    return text.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


def _verdict(tmp_path, report, *ignored) -> subprocess.CompletedProcess:
    path = tmp_path / "report.json"
    if report is not None:
        path.write_text(json.dumps(report) if not isinstance(report, str) else report)
    return subprocess.run([sys.executable, "-c", _audit_verdict_script(), str(path), *ignored],
                          capture_output=True, text=True, timeout=60)


def test_ci_audits_the_installed_set_before_the_tests():
    text = CI_RUN.read_text(encoding="utf-8")
    audit, tests = text.index("pip-audit\" -r"), text.index("&& python -m pytest -q")
    assert audit < tests  # pytest's summary stays the last thing CI prints
    assert "pip freeze" in text and "--no-deps --disable-pip" in text


def test_the_audit_fails_on_a_known_vulnerability_only(tmp_path):
    vulnerable = {"dependencies": [
        {"name": "pillow", "version": "9.0.0", "vulns": [{"id": "PYSEC-2022-1", "aliases": ["CVE-2022-0001"],
                                                         "fix_versions": ["9.0.1"]}]},
        {"name": "numpy", "version": "2.4.0", "vulns": []}]}
    found = _verdict(tmp_path, vulnerable)
    assert found.returncode == 1 and "pillow 9.0.0 has PYSEC-2022-1 (fixed in 9.0.1)" in found.stdout
    assert _verdict(tmp_path, vulnerable, "CVE-2022-0001").returncode == 0  # ignored by an alias, on purpose
    clean = _verdict(tmp_path, {"dependencies": [{"name": "numpy", "version": "2.4.0", "vulns": []}]})
    assert clean.returncode == 0 and "no known vulnerability in 1 packages" in clean.stdout


@pytest.mark.parametrize("report", [
    None,  # pip-audit could not reach the service and wrote nothing
    "{not json",
    {"dependencies": [{"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be audited"}]},
])
def test_an_unreachable_audit_service_never_fails_ci(tmp_path, report):
    result = _verdict(tmp_path, report)
    assert result.returncode == 0 and "skipped" in result.stdout, result.stdout + result.stderr
