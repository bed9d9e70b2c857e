"""Child processes, so the Streamlit server never imports TensorFlow or Keras: the spawn context they start in, a
flag they share with the server, how one ended in words, and a one-off call in a fresh child.

Why children: TensorFlow's native kernels can crash (SIGSEGV/SIGABRT, see core/tfenv.py), which inside the server
would end every visitor's session; and once `keras` is imported, Streamlit clears Keras' session after every script
run (160–200 ms each). Children are started with multiprocessing's *spawn* context: a fork of the multi-threaded
server (Tornado, script threads, MediaPipe) can deadlock on a lock some other thread held, and spawn imports only
what the child needs. Functions run in a child are module-level (spawn pickles them by reference).

The training job (core/jobs.py) and the saliency worker (core/workers.py) are built on these.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time

from core.errors import UserError

log = logging.getLogger(__name__)

SPAWN = multiprocessing.get_context("spawn")
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
POLL_SECONDS = 0.2  # how often a waiting caller checks that its child is still alive
FLAG_POLL_S = 0.02  # SharedFlag.wait's polling: a 20 ms delay is nothing beside a training batch
CALL_TIMEOUT_S = 300.0  # a one-off call, which may import TensorFlow on a busy 2-core machine
KILL_WAIT_S = 1.0  # after SIGTERM, this long before SIGKILL


class WorkerError(UserError):
    """A child process that died, hung or failed unexpectedly; the message is for the user. A UserError although
    the user did not cause it: the server survives a worker by design, the page says what happened (retry, or a
    smaller request) and the child logged its own traceback."""


class SharedFlag:
    """A flag shared with spawned children through shared memory, with threading.Event's set / is_set / wait.
    Not multiprocessing.Event: its lock and condition are semaphores, and a child killed while inside is_set() or
    wait() leaves them taken, so the server's next set() blocks forever. A shared byte has no lock to leave taken.
    Pass it to the child as a Process argument (shared memory is handed over when the child is spawned)."""

    def __init__(self):
        self._value = SPAWN.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(FLAG_POLL_S)
        return True


def exit_reason(exitcode: int | None) -> str:
    """How a child process ended, e.g. "SIGSEGV, a native crash in TensorFlow" or "exit code 3"."""
    if exitcode is None:
        return "still running"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        return f"signal {-exitcode}"
    if sig in CRASH_SIGNALS:
        return f"{sig.name}, a native crash in TensorFlow"
    if sig == signal.SIGKILL:
        return f"{sig.name}, killed, perhaps out of memory"
    if sig == signal.SIGTERM:
        return f"{sig.name}, terminated"
    if sig == getattr(signal, "SIGXCPU", None):  # RLIMIT_CPU's soft limit (core.policy.apply_child_limits)
        return f"{sig.name}, the CPU time limit"
    return sig.name


def end_process(process, grace_s: float = KILL_WAIT_S) -> None:
    """SIGTERM, then SIGKILL if it lingers; our own child, by its handle, never by name."""
    if process.is_alive():
        process.terminate()
        process.join(grace_s)
    if process.is_alive():
        process.kill()
    process.join()


# ------------------------------------------------------------------------------------------- one-off calls

def _call_and_send(writer, function, args) -> None:
    """A one-off child's body: the result, or the error's text, goes back through the pipe."""
    try:
        writer.send(("ok", function(*args)))
    except Exception as error:  # the caller turns it into a WorkerError; the traceback goes to this log
        log.exception("%s failed in its worker process", getattr(function, "__name__", function))
        writer.send(("error", type(error).__name__, str(error)))
    finally:
        writer.close()


def run_in_child(function, *args, timeout: float = CALL_TIMEOUT_S):
    """`function(*args)` in a fresh spawned process; returns its (picklable) result. `function` must be a
    module-level function. Raises WorkerError when the child fails, dies or outlives `timeout`."""
    reader, writer = SPAWN.Pipe(duplex=False)
    process = SPAWN.Process(target=_call_and_send, args=(writer, function, args), daemon=True,
                            name=f"worker-{getattr(function, '__name__', 'call')}")
    process.start()
    writer.close()  # the child holds the only write end: its exit is end-of-file here
    try:
        reply = wait_for_reply(reader, process, timeout)
    finally:
        reader.close()
        end_process(process)
    if reply is None:
        raise WorkerError(f"The worker process stopped unexpectedly ({exit_reason(process.exitcode)}).")
    if reply[0] == "error":
        raise WorkerError(f"{reply[1]}: {reply[2]}")
    return reply[1]


def wait_for_reply(connection, process, timeout: float):
    """The child's reply, None when it died first; WorkerError when it is still silent after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if connection.poll(POLL_SECONDS):
            try:
                return connection.recv()
            except (EOFError, OSError):  # its end closed: it died (possibly mid-reply)
                return None
        if not process.is_alive() and not connection.poll(0):
            return None
    raise WorkerError(f"The worker process gave no answer within {timeout:.0f} s and was stopped.")
