"""demo/commands.py: the commands the demo runs are the ones it prints.

Printed commands must paste from the folder the user is in, so every
program runs from that folder, with paths as the user would type them there.

ROOT, DEMO   the project folder, and mtls_demo.py in it
shown_path, shown_python, script, program
             a path, this interpreter, a project script, the demo itself,
             each as a user types it
fill         {certs}, {url}, {ipurl} in a scenario's arguments
run          run a printed command; Ctrl-C in it stops the demo too
run_guarded  a program's main: its errors, Ctrl-C and `| head` in one line each
DemoError    something the user can fix: 'error: <label>: <what> -- <fix>'

Reads and writes nothing itself; `run` starts what it is given.
"""

import os
import shutil
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "mtls_demo.py")


# --- paths and commands --------------------------------------------------
#
# Printed commands must paste from the folder the user is in. So we run
# every program from that folder, with paths as the user would type them
# there, and print exactly what we ran.

def shown_path(path):
    """A path as typed from the current folder: relative when it lies
    below it, absolute otherwise."""
    path = os.path.abspath(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:                   # another drive, on Windows
        return path
    return path if relative.startswith("..") else relative


def shown_python():
    """How to name this interpreter in a printed command: 'python3' when
    that is what PATH finds, else its full path (a venv, pyenv, python3.9)."""
    found = shutil.which("python3")
    if found and os.path.realpath(found) == os.path.realpath(sys.executable):
        return "python3"
    return sys.executable


def script(name):
    """A project script (client.py, server.py) as a printed command starts."""
    return [shown_python(), shown_path(os.path.join(ROOT, name))]


def program():
    """How the user runs mtls_demo.py, for usage lines and fixes."""
    return f"{shown_python()} {shown_path(DEMO)}"


def fill(args, certs, port=0):
    """Substitute {certs}, {url} and {ipurl} in a scenario's arguments."""
    return [a.format(certs=certs, url=f"https://localhost:{port}/",
                     ipurl=f"https://127.0.0.1:{port}/") for a in args]


def run(words, **options):
    """Run a printed command (as printed, but with this very interpreter).
    A program stopped by Ctrl-C (client.py exits 130; curl and openssl die
    of SIGINT) stops the demo too: an interruption, never a result."""
    if words[0] == shown_python():
        words = [sys.executable] + words[1:]
    done = subprocess.run(words, capture_output=True, text=True, **options)
    if done.returncode in (130, -signal.SIGINT):
        raise KeyboardInterrupt
    return done


def run_guarded(body, mistake, interrupted):
    """Run a program's body and return its exit code; what a user causes
    ends in one line, never a traceback: a `mistake` (the program's own
    error class) prints 'error: ...' and gives 2, Ctrl-C prints
    `interrupted` and gives 130 (the shell's code for SIGINT), and output
    piped into `head` that closes early stops quietly with 1."""
    try:
        return body()
    except mistake as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


class DemoError(Exception):
    """Something the user can fix: printed as 'error: <label>: <what> -- <fix>'."""

    def __init__(self, label, what, fix):
        super().__init__(f"{label}: {what} -- {fix}")


