"""What every script shares: one-line errors, atomic outputs, progress, signals."""
import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import traceback
import warnings

from tqdm import tqdm


class UserError(Exception):
    """A problem with the user's arguments or input: reported as one `error:` line."""


def unsafe_models_flag(p):
    """--unsafe-models, for every script that loads an exported models folder (see vae/safety.py)."""
    p.add_argument("--unsafe-models", action="store_true",
                   help="load the models even if they use ops that export_graphs.py never writes (file, process, "
                        "network or Python access), after a warning; only for models you built yourself")


def warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


def info(message):
    print(message, file=sys.stderr, flush=True)


class _DefaultsOnce(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help once, and only when there is a default to show:
    not for required options, flags, or help that already names its default."""

    def _get_help_string(self, action):
        help = action.help or ""
        if (action.default in (None, False, [], argparse.SUPPRESS) or action.required or "default" in help
                or not action.option_strings):
            return help
        return help + " (default: %(default)s)"


def parser(description):
    """An argument parser whose --help shows every default."""
    p = argparse.ArgumentParser(description=description, formatter_class=_DefaultsOnce)
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def detach_python_stderr():
    """Give Python's sys.stderr a descriptor of its own, so that parking descriptor 2 (below)
    silences C++ libraries only, never our own messages and progress bars."""
    if sys.stderr is sys.__stderr__ and sys.stderr.fileno() == 2:
        sys.stderr.flush()
        sys.stderr = open(os.dup(2), "w", buffering=1, errors="backslashreplace")


@contextlib.contextmanager
def parked_stderr(show_on_error=True):
    """Hold back what C++ code prints to file descriptor 2; show it only if the block fails
    (and show_on_error)."""
    detach_python_stderr()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            if show_on_error:
                parked.seek(0)
                sys.stderr.write(parked.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow():
    """Import TensorFlow without its start-up chatter, which would bury our own messages.

    TensorFlow's C++ layer prints notes (oneDNN, missing CUDA drivers) straight to file
    descriptor 2 before any setting can stop it, so stderr is parked while it loads and
    looks for devices; if the import itself fails, what it printed is shown after all. Memory
    freed by one batch is kept for the next (vae/memory.py).
    """
    from vae import memory
    memory.keep_freed_memory()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    if "tensorflow" in sys.modules:
        return
    # Keras, which TensorFlow loads, imports matplotlib.pyplot for a plotting helper that we
    # never call: half a second of every script's start-up. Kept out while TensorFlow loads,
    # Keras does without it (as when matplotlib is not installed); our pictures import it as usual.
    hide_matplotlib = "matplotlib" not in sys.modules
    if hide_matplotlib:
        sys.modules["matplotlib"] = None
    try:
        with parked_stderr():
            import tensorflow as tf
            if "TF_CONFIG" not in os.environ:  # multi-worker set-up must come first there
                tf.config.list_physical_devices()
    finally:
        if hide_matplotlib:
            del sys.modules["matplotlib"]


def error_message(e):
    """One line for an exception: ours as they are, system and TensorFlow I/O errors with
    the file they name, anything unexpected with its type."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, OSError):  # a full disk, a vanished folder, no permission
        return f"{e.filename}: {e.strerror}" if e.filename else str(e.strerror or e)
    if type(e).__module__.startswith("tensorflow") and hasattr(e, "message"):
        return e.message.splitlines()[0]
    return f"{type(e).__name__}: {e} (run with --debug for details)"


def run(main):
    """Run a script's main(argv) with the contract's error rules and exit with its status."""
    detach_python_stderr()
    try:
        status = main(sys.argv[1:])
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        status = 130
    except BrokenPipeError:
        status = 1
    except Exception as e:
        if "--debug" in sys.argv:
            traceback.print_exc()
        print(f"error: {error_message(e)}", file=sys.stderr)
        status = 1
    sys.exit(status or 0)


def raise_on_sigterm():
    """Treat SIGTERM like Ctrl-C so that temporary files are cleaned up the same way."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def signals_handled(handler):
    """Ctrl-C and SIGTERM go to `handler` (a function, or signal.SIG_IGN) inside, and back to
    what they were after; on the main thread only (elsewhere signals are not ours)."""
    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class StopRequest:
    """Turns SIGINT and SIGTERM into a flag (`signum`) that a loop checks at points of its own
    choosing. Raised from a signal handler, KeyboardInterrupt can land inside a library that
    catches everything (TensorFlow's tracing turns it into a TypeError), so a long loop takes it
    only where it is safe. A second signal raises at once: the user insists. `note(signum)` is
    called at the first one. On the main thread only (elsewhere signals are not ours)."""

    def __init__(self, note=None):
        self.signum, self.note = None, note

    def __enter__(self):
        self._handled = signals_handled(self.handle)
        self._handled.__enter__()
        return self

    def handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.note:
            self.note(signum)

    def __exit__(self, *exc):
        return self._handled.__exit__(*exc)


@contextlib.contextmanager
def atomic_path(final_path, suffix=""):
    """Yield a temporary path beside `final_path`; rename it into place only on success.

    Works for files and directories: an existing directory at `final_path` is replaced.
    """
    final_path = os.path.abspath(final_path)
    folder = os.path.dirname(final_path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(final_path)}.", suffix=".tmp" + suffix,
                                   dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(f"cannot write to {folder}: {e.strerror}") from e
    try:
        yield tmp
        if os.path.isdir(tmp) and os.path.isdir(final_path):
            old = tmp + ".old"
            os.rename(final_path, old)
            os.rename(tmp, final_path)
            _remove(old)
        else:
            os.replace(tmp, final_path)
    except OSError as e:
        _remove(tmp)
        raise UserError(f"cannot write {final_path}: {e.strerror}") from e
    except BaseException:
        _remove(tmp)
        raise


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


class _Lines:
    """A stream for tqdm when stderr is a file or pipe: each refresh becomes a whole line
    instead of a carriage return, so logs read as a line now and then."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self):
        self.stream.flush()


def progress(total=None, desc="", unit="it"):
    """A progress bar on stderr: live on a terminal, a line every half minute otherwise."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr if tty else _Lines(sys.stderr),
                dynamic_ncols=tty, mininterval=0.5 if tty else 30.0)
