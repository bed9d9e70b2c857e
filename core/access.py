"""Who may do what on this server: the `public` and `workbench` profiles, which datasets a session may read and
what it may be shown. The limits that keep one visitor from exhausting a shared host are in core/limits.py (what a
public request may ask for), core/slots.py (one evaluation, a few photos at once) and core/public_runs.py (whose
run it is, and the quota).

- **workbench**: the owner's own machine. Any dataset folder, any training settings, full error texts.
- **public**: a server others can reach. Datasets only from an allowlist (the bundled sample plus the folders the
  operator lists), small training jobs on the sample, one evaluation at a time with a row cap, no server paths
  or exception names in anything shown, and a reference id instead of the details of an unexpected error.

The switch is `FACE_MODE` (`public` / `workbench`), from the environment or, on Streamlit Community Cloud, from
the app's secrets (read by the page layer and passed in). When it is unset, a session is `workbench` only when its
browser reaches the server over loopback (the owner running `streamlit run` and opening localhost) with no proxy
in between; every other session is `public`. An unknown value means `public`: a typo never opens the server.

Nothing here imports Streamlit: pages compute the session's profile with `session_profile`, bind it for the script
run with `bind_profile`, and core functions such as `core.datasets.load_dataset` read it with `current_profile`.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core import settings

log = logging.getLogger(__name__)

PUBLIC, WORKBENCH = "public", "workbench"
MODES = (PUBLIC, WORKBENCH)
SAMPLE_LABEL = "Bundled sample (300 UTKFace faces)"


# ------------------------------------------------------------------------------------------------ profiles

@dataclass(frozen=True)
class Profile:
    """What a session may do. `dataset_roots`: the only dataset folders a public session may read (resolved)."""
    name: str
    dataset_roots: tuple[Path, ...] = ()

    @property
    def public(self) -> bool:
        return self.name != WORKBENCH  # anything but an explicit workbench is treated as public

    def allows_folder(self, folder: str | Path) -> bool:
        """Workbench: any folder. Public: exactly one of the allowed roots, after resolving links and `..`."""
        if not self.public:
            return True
        try:
            wanted = Path(os.path.realpath(Path(str(folder).strip()).expanduser()))
        except (OSError, RuntimeError, ValueError):
            return False
        return wanted in self.dataset_roots

    def root_of(self, path: str | Path) -> Path | None:
        """The allowed root holding `path` (None when none does)."""
        resolved = Path(os.path.realpath(path))
        for root in self.dataset_roots:
            if resolved == root or root in resolved.parents:
                return root
        return None


WORKBENCH_PROFILE = Profile(WORKBENCH)


def allowed_dataset_roots() -> tuple[Path, ...]:
    """The dataset folders a public server offers: the bundled sample, $FACE_DATA_DIR and every folder of
    $FACE_DATASET_ROOTS, resolved, existing ones only, in that order, without repeats."""
    roots: list[Path] = []
    for candidate in (settings.SAMPLE_DIR, settings.data_dir(), *settings.dataset_roots()):
        resolved = Path(os.path.realpath(candidate))
        if not resolved.is_dir():
            _warn_once(f"Dataset root {candidate} is not a folder: not offered")
        elif resolved not in roots:
            roots.append(resolved)
    return tuple(roots)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # Profiles are computed on every page run: a misconfigured root is worth one line in the log, not thousands.
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def public_profile(roots: tuple[Path, ...] | None = None) -> Profile:
    roots = allowed_dataset_roots() if roots is None else tuple(Path(os.path.realpath(r)) for r in roots)
    return Profile(PUBLIC, roots)


def profile_named(mode: str) -> Profile:
    return WORKBENCH_PROFILE if mode == WORKBENCH else public_profile()


def dataset_choices(profile: Profile) -> dict[str, Path]:
    """Label → folder for a dataset picker. Labels never show a server path: the sample by its description,
    other roots by their folder name (with the parent's name where two share one)."""
    names = [root.name for root in profile.dataset_roots]
    choices = {}
    for root, name in zip(profile.dataset_roots, names, strict=True):
        if root == Path(os.path.realpath(settings.SAMPLE_DIR)):
            label = SAMPLE_LABEL
        else:
            label = f"{root.parent.name}/{name}" if names.count(name) > 1 else name
        choices[label] = root
    return choices


# ------------------------------------------------------------------------------------------ which profile

_FORWARDING_HEADERS = ("x-forwarded-for", "x-forwarded-host", "x-real-ip", "forwarded", "via")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def _is_loopback(address: str) -> bool:
    """Loopback, also as an IPv4-mapped IPv6 address: a dual-stack server (Streamlit's default on Linux) reports a
    browser on 127.0.0.1 as ::ffff:127.0.0.1, which Python 3.11 does not call loopback."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address == "localhost"
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def is_local_client(client_ip, headers: Mapping | None = None) -> bool:
    """Whether a session's browser runs on this machine: its address is loopback (Streamlit reports None for
    127.0.0.1 and ::1), no proxy header says it came from elsewhere, and the Host it asked for is this machine.
    A proxy on the same host makes every visitor look like loopback; the headers it adds give it away, and the
    README tells operators behind a header-less proxy to set FACE_MODE=public."""
    # Streamlit's AppTest hands pages a mock object as the address: no real connection has anything but str/None.
    if isinstance(client_ip, str) and client_ip and not _is_loopback(client_ip):
        return False
    headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    if any(name in headers for name in _FORWARDING_HEADERS):
        return False
    host = headers.get("host", "").strip().lower()
    if host:
        hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if hostname not in _LOCAL_HOSTS and not _is_loopback(hostname):
            return False
    return True


def resolve_mode(setting: str | None, client_ip=None, headers: Mapping | None = None) -> str:
    """`public` or `workbench`: an explicit setting wins (anything unknown → public); unset → workbench for a
    local client only."""
    if setting is not None and str(setting).strip():
        value = str(setting).strip().lower()
        if value in MODES:
            return value
        log.warning("FACE_MODE=%r is neither 'public' nor 'workbench': running as public", setting)
        return PUBLIC
    return WORKBENCH if is_local_client(client_ip, headers) else PUBLIC


def _secret_mode(secrets) -> str | None:
    """FACE_MODE from st.secrets (passed in by a page), None when there is none. Streamlit raises (a
    FileNotFoundError subclass) when no secrets file exists at all; a broken file must not break the page."""
    if secrets is None:
        return None
    try:
        value = secrets.get("FACE_MODE")
    except Exception:  # noqa: BLE001 - no secrets file, unreadable TOML: both mean "not set there"
        return None
    return None if value is None else str(value)


def session_profile(secrets=None, client_ip=None, headers: Mapping | None = None) -> Profile:
    """The profile of one browser session: FACE_MODE from the environment, else from `secrets` (st.secrets),
    else decided by where the client connects from (see `is_local_client`)."""
    return profile_named(resolve_mode(settings.face_mode() or _secret_mode(secrets), client_ip, headers))


def process_profile() -> Profile:
    """The profile of code that runs outside any session (the CLI, tests, background work): FACE_MODE from the
    environment; unset → workbench, since a command line runs on its owner's machine."""
    return profile_named(resolve_mode(settings.face_mode() or WORKBENCH))


_bound: contextvars.ContextVar[Profile | None] = contextvars.ContextVar("face_profile", default=None)


def bind_profile(profile: Profile) -> Profile:
    """Make `profile` the current one for this thread's script run (pages call it first thing on every run, so a
    session never inherits another's). Returns it, for `profile = bind_profile(session_profile(...))`."""
    _bound.set(profile)
    return profile


def current_profile() -> Profile:
    """The profile bound by the running page, else the process's (see `process_profile`)."""
    return _bound.get() or process_profile()


# ------------------------------------------------------------------------------------- what may be shown

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~])(?:/|~/)[^\s'\"()<>,;]*")
_EXCEPTION_NAME = re.compile(r"\(?\b[A-Z][A-Za-z0-9_]*(?:Error|Exception|Warning|Interrupt)\b\)?:?\s*")


def shown_path(path: str | Path, profile: Profile) -> str:
    """A path as this profile may show it: whole in the workbench; in public relative to its dataset root (the
    root itself by its picker label), else relative to the project, else its bare name."""
    if not profile.public:
        return str(path)
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    root = profile.root_of(resolved)
    if root is not None:
        if resolved == root:
            return next((label for label, folder in dataset_choices(profile).items() if folder == root), root.name)
        return resolved.relative_to(root).as_posix()
    for base in (settings.runs_dir(), settings.cache_dir(), settings.PROJECT_ROOT):
        with contextlib.suppress(ValueError, OSError):
            relative = resolved.relative_to(Path(os.path.realpath(base)))
            return relative.as_posix() if base == settings.PROJECT_ROOT else f"{base.name}/{relative.as_posix()}"
    return resolved.name or "the server"


def public_text(text: str, profile: Profile) -> str:
    """A message as this profile may show it: unchanged in the workbench; in public with every absolute path
    replaced by `shown_path` and exception class names removed."""
    if not profile.public:
        return text
    text = _ABSOLUTE_PATH.sub(lambda match: _shown_match(match.group(0), profile), text)
    return re.sub(r"\s{2,}", " ", _EXCEPTION_NAME.sub("", text)).strip()


def _shown_match(found: str, profile: Profile) -> str:
    # A path that ends a sentence or a clause takes its punctuation along: give that back after the path.
    path = found.rstrip(".:")
    if path in ("", "/", "~/"):  # a lone slash is punctuation ("age / gender"), not a path
        return found
    return shown_path(path, profile) + found[len(path):]


def shown_table(table, profile: Profile):
    """A copy of a table whose `path` column this profile may show (in public: relative to the dataset root)."""
    if not profile.public or "path" not in table.columns:
        return table
    return table.assign(path=[shown_path(p, profile) for p in table["path"]])


def unexpected_error(error: BaseException, profile: Profile, where: str) -> str:
    """Log an unexpected error with its traceback under a fresh reference id and return what to show: in public
    only the id, in the workbench the error's own words too."""
    reference = uuid.uuid4().hex[:8]
    log.error("Unexpected error on %s (reference %s)", where, reference, exc_info=error)
    message = f"Something went wrong on the server (reference {reference}); the details are in the server log."
    return message if profile.public else f"{message} {error}"
