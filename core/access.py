"""Who may do what on this server: the `public` and `workbench` profiles, and the limits that keep one visitor
from exhausting or exploring a shared host.

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
import dataclasses
import ipaddress
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from core import settings
from core.errors import UserError

log = logging.getLogger(__name__)

PUBLIC, WORKBENCH = "public", "workbench"
MODES = (PUBLIC, WORKBENCH)
SAMPLE_LABEL = "Bundled sample (300 UTKFace faces)"


class Busy(UserError):
    """A shared resource (the evaluation slot, the photo analysis slots) is taken; the message says so (pages show
    it as a warning: trying again later is all it asks)."""


class AccessError(UserError):
    """A request the session's profile does not allow; the message says why in words fit for a visitor."""


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
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address == "localhost"


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


# ------------------------------------------------------------------------------------------ shared limits

PHOTO_ANALYSES_AT_ONCE = 2  # decoding and detection peak at a few hundred MB per photo: two bound the server
PHOTO_WAIT_SECONDS = 30.0
PUBLIC_MAX_EVAL_ROWS = 2000  # ~16 s of CPU on a 2-core host, where all 21.7k UTKFace faces took 175 s

_evaluation_lock = threading.Lock()
_photo_slots = threading.BoundedSemaphore(PHOTO_ANALYSES_AT_ONCE)


@contextlib.contextmanager
def evaluation_slot() -> Iterator[None]:
    """Hold the server's one evaluation slot, or raise Busy at once (a visitor should not wait minutes)."""
    if not _evaluation_lock.acquire(blocking=False):
        raise Busy("Another evaluation is running on this server: try again when it has finished.")
    try:
        yield
    finally:
        _evaluation_lock.release()


def evaluation_running() -> bool:
    return _evaluation_lock.locked()


@contextlib.contextmanager
def photo_analysis_slot(timeout_s: float = PHOTO_WAIT_SECONDS) -> Iterator[None]:
    """Hold one of the server's PHOTO_ANALYSES_AT_ONCE slots for decoding and analysing one photo; waits up to
    `timeout_s` for one to free, then raises Busy."""
    if not _photo_slots.acquire(timeout=timeout_s):
        raise Busy("The server is busy analysing other photos: try again in a moment.")
    try:
        yield
    finally:
        _photo_slots.release()


def evaluation_rows(table, profile: Profile):
    """(rows to evaluate, note or None): in public at most PUBLIC_MAX_EVAL_ROWS, a fixed seeded sample so a
    repeat visit hits the same stored results."""
    if not profile.public or len(table) <= PUBLIC_MAX_EVAL_ROWS:
        return table, None
    sample = table.sample(n=PUBLIC_MAX_EVAL_ROWS, random_state=0).sort_index().reset_index(drop=True)
    return sample, (f"This public server scores a fixed sample of {PUBLIC_MAX_EVAL_ROWS:,} of the "
                    f"{len(table):,} images.")


# --------------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainingLimits:
    """What one public training job may ask for, and what its process may use."""
    max_img_size: int = 64
    max_epochs: int = 5
    max_batch_size: int = 32
    architectures: tuple[str, ...] = ("custom_cnn", "multitask_cnn", "residual_cnn")  # no ResNet-50: 25 M params
    max_runs: int = 8  # public runs kept in runs/; the oldest finished ones are deleted beyond that
    # Address space (RLIMIT_AS, virtual: more than resident) of the training process. Measured on 2 cores: TensorFlow
    # maps 1.7 GB at import, and fitting a 64 px residual CNN peaks at 3.3 GB virtual / 1.2 GB resident.
    memory_bytes: int = 6 * 1024 ** 3
    cpu_seconds: int = 30 * 60  # CPU time, both cores counted: a wide margin over 5 epochs at 64 px on 300 images


def public_training_limits() -> TrainingLimits:
    return TrainingLimits()


def _field(cfg, name: str, default=None):
    """A TrainConfig's or its to_dict()'s field; `model.x` reaches into the model part."""
    data = cfg if isinstance(cfg, Mapping) else dataclasses.asdict(cfg)
    for part in name.split("."):
        data = data.get(part, default) if isinstance(data, Mapping) else default
    return data


def _inside(path: str, folders) -> bool:
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    return any(Path(os.path.realpath(folder)) in resolved.parents for folder in folders)


def check_training_request(cfg, profile: Profile, limits: TrainingLimits | None = None) -> list[str]:
    """Why this profile may not run this training request (a TrainConfig or its dict), one sentence each; [] when
    it may. The workbench may run anything the engine accepts."""
    if not profile.public:
        return []
    limits = limits or public_training_limits()
    problems = []
    folder = _field(cfg, "data_dir") or str(settings.data_dir())
    if Path(os.path.realpath(Path(folder).expanduser())) != Path(os.path.realpath(settings.SAMPLE_DIR)):
        problems.append("This public server trains on its bundled sample only.")
    if _field(cfg, "dataset", "utkface") != "utkface":
        problems.append("The bundled sample is a UTKFace dataset: choose the UTKFace kind.")
    if _field(cfg, "model.arch") not in limits.architectures:
        problems.append(f"Architectures on this server: {', '.join(limits.architectures)}.")
    checks = (("model.img_size", limits.max_img_size, "Image size", " px"), ("epochs", limits.max_epochs, "Epochs", ""),
              ("batch_size", limits.max_batch_size, "Batch size", ""))
    for name, most, label, unit in checks:
        value = _field(cfg, name)
        if not isinstance(value, int | float) or value > most:
            problems.append(f"{label} is at most {most}{unit} on this server.")
    known = (settings.MODELS_DIR, settings.runs_dir())
    for name, label in (("init_from", "a model to start from"), ("split_file", "a split file")):
        value = _field(cfg, name) or ""
        if value and not _inside(value, known):
            problems.append(f"Only the server's own models and runs can be used as {label}.")
    if _field(cfg, "out_dir"):
        problems.append("Runs are written to the server's runs folder only.")
    return problems


def require_training_allowed(cfg, profile: Profile, limits: TrainingLimits | None = None) -> None:
    """Raise AccessError listing every problem `check_training_request` finds."""
    problems = check_training_request(cfg, profile, limits)
    if problems:
        raise AccessError(" ".join(problems))


def can_control_job(profile: Profile, job_owner: str | None, session_owner: str | None) -> bool:
    """Whether a session may stop (and watch) a job: in the workbench always; in public only the session that
    started it."""
    return not profile.public or (job_owner is not None and job_owner == session_owner)


def visible_runs(run_names, profile: Profile, owned: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The runs a session may list: all in the workbench; in public only those its own jobs wrote."""
    return [name for name in run_names if not profile.public or name in owned]


PUBLIC_RUN_MARKER = "public.json"  # written into a run folder started by a public session


def mark_public_run(run_dir: str | Path, owner: str) -> None:
    """Label a run as a public visitor's: enforce_runs_quota may delete it, and only `owner` sees it."""
    from core.atomic import atomic_write_text
    atomic_write_text(Path(run_dir) / PUBLIC_RUN_MARKER, json.dumps({"owner": owner}) + "\n")


def run_owner(run_dir: str | Path) -> str | None:
    from core.atomic import read_json_object
    marker = read_json_object(Path(run_dir) / PUBLIC_RUN_MARKER)
    return None if marker is None else str(marker.get("owner"))


def enforce_runs_quota(runs_dir: str | Path, max_runs: int) -> list[Path]:
    """Delete the oldest public runs (marked by `mark_public_run`) until at most `max_runs` remain; runs still in
    progress are kept and so is every run not marked public. Call with `limits.max_runs - 1` before starting a
    public job. Returns the folders deleted."""
    from core.housekeeping import run_in_progress
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    public = sorted((run for run in runs_dir.iterdir() if run.is_dir() and not run.is_symlink()
                     and (run / PUBLIC_RUN_MARKER).is_file()), key=_age_key)
    deleted = []
    for run in public:
        if len(public) - len(deleted) <= max(max_runs, 0):
            break
        if run_in_progress(run):
            continue
        shutil.rmtree(run, ignore_errors=True)
        log.info("Runs quota: deleted public run %s", run.name)
        deleted.append(run)
    return deleted


def _age_key(run: Path) -> tuple[float, str]:
    try:
        return (run / PUBLIC_RUN_MARKER).stat().st_mtime, run.name
    except OSError:
        return 0.0, run.name


# ------------------------------------------------------------------------------------ the training child

def apply_child_limits(memory_bytes: int | None, cpu_seconds: int | None) -> bool:
    """Cap this process's address space (RLIMIT_AS: allocations past it fail with MemoryError) and CPU time
    (RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL 10 s later). For the first lines of a training child process,
    never the server itself. Limits only go down (an unprivileged process cannot raise a hard limit). Returns
    False where the platform has no `resource` module (Windows): the job then runs unbounded."""
    try:
        import resource
    except ImportError:
        return False
    if memory_bytes:
        _lower(resource, resource.RLIMIT_AS, int(memory_bytes), int(memory_bytes))
    if cpu_seconds:
        _lower(resource, resource.RLIMIT_CPU, int(cpu_seconds), int(cpu_seconds) + 10)
    return True


def _lower(resource, which: int, soft: int, hard: int) -> None:
    # Never above what is in force: a process may not raise its hard limit, and a lower soft one stays.
    current_soft, current_hard = resource.getrlimit(which)
    infinity = resource.RLIM_INFINITY
    hard = hard if current_hard == infinity else min(hard, current_hard)
    soft = min(soft if current_soft == infinity else min(soft, current_soft), hard)
    resource.setrlimit(which, (soft, hard))
