"""demo/servers.py: the servers the demo talks to, and their certificates.

ServerProcess      server.py (or a wrong server of the mistakes gallery) in
                   its own process on a free port, its log read by a thread;
                   the one class that starts a server for the demo and the gallery
set_make_run       how the user starts a server of their own (make run, ...)
ensure_certificates
                   `make certs` / `make scenarios` (and the gallery's own
                   certificates), said in one line
refuse_rotated     stop, with the way back, when certs/ went through a CA rollover

Reads the certificates folder; writes to it only through make (and the
gallery's openssl commands). Starts server.py as `python3 server.py ...`.
"""

import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading

from demo.certificates import common_name, issued, read_certificate
from demo.commands import ROOT, DemoError, program, script, shown_path
from demo.terminal import introduced, pair_options, screen, shell_words, wrap_command


# --- running the servers -------------------------------------------------

class ServerProcess:
    """server.py (or, for the mistakes gallery, a wrong server) in its own
    process; its log read by a thread, so that no read waits on a pipe."""

    def __init__(self, args, port=0, program=None, env=None, cwd=None):
        self.args, self.wanted, self.busy = list(args), port, None
        self.program = list(program) if program else script("server.py")
        self.env, self.cwd = env, cwd
        self.port, self.shown, self.warnings = None, False, []
        self.start(port)

    def start(self, port):
        """Start the server on `port` (0: any free one), its log read by a thread."""
        self.command = self.program + ["--port", str(port)] + self.args
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen([sys.executable] + self.command[1:], cwd=self.cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read_log, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read_log(proc, lines):
        """The reader thread: each log line without its timestamp, then None."""
        with proc.stderr:
            for line in proc.stderr:
                lines.put(re.sub(r"^\d\d:\d\d:\d\d ", "", line.rstrip("\n")))
        lines.put(None)

    @property
    def url(self):
        """The server's address, once it is ready."""
        return f"https://localhost:{self.port}/"

    def wait_ready(self):
        """Wait for the 'serving https://...' line; learn the port from it.
        A port asked for (--port) that is taken, by your own make run say,
        gives way to any free one, said when the server is shown."""
        if self.port is not None:
            return
        first = self.next_line(timeout=15)
        if self.wanted and first and first.startswith("error: port in use"):
            self.stop()
            self.busy = self.wanted
            self.start(0)
            first = self.next_line(timeout=15)
        while first is not None and first.startswith("warning: "):     # e.g. key permissions
            self.warnings.append(first)
            first = self.next_line(timeout=15)
        if first is None or "serving https://" not in first:
            self.stop()
            said = (first or "").strip()
            said = said[len("error: "):] if said.startswith("error: ") else said
            if not said:
                raise DemoError("server did not start", f"{shlex.join(self.command)} exited "
                                f"with code {self.proc.returncode} and said nothing",
                                "run that command by hand to see why")
            # server.py's own line is already "<label>: <what> -- <fix>".
            raise DemoError("server did not start", said.split(" -- ")[0],
                            said.split(" -- ", 1)[1] if " -- " in said else
                            "run " + shlex.join(self.command) + " by hand")
        self.port = int(first.split("serving https://")[1].split("/")[0].rsplit(":", 1)[1])

    def show(self):
        """Print how this server was started, the first time it is used: with
        the port it really got (it asked for port 0, any free one), and, the
        first time in a run, that the demo stops it at the end."""
        if self.shown:
            return
        self.shown = True
        if self.busy:
            screen.say(f"Port {self.busy} is taken (by your own make run, perhaps), so the demo "
                       f"used a free one.")
        if "servers" in introduced:
            screen.say(f"The demo started this server in the background, on port {self.port}:")
        else:
            introduced.add("servers")
            make_run, port = MAKE_RUN["command"], MAKE_RUN["port"]
            other = "" if port == self.port or "PORT=" in make_run else f", on port {port}"
            screen.say(f"The demo started this server in the background, on port {self.port}. "
                       f"It stops its servers when it ends: to try these commands by hand, paste "
                       f"this one first (or start one with {make_run}{other}):")
        port = self.command.index("--port") + 1
        screen.command(self.command[:port] + [str(self.port)] + self.command[port + 1:])
        for warning in self.warnings:
            screen.say(warning, "server log: ")

    def next_line(self, timeout=5):
        """The server's next log line, or None if none comes within `timeout`."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def case_lines(self, phrase, timeout=5):
        """The log lines about one connection, without timestamps: read until
        one holds `phrase` or gives a verdict (rejected, forbidden, or accepted
        when no 403 is expected), or until nothing comes within `timeout` s."""
        verdicts = ("rejected", "forbidden") + (() if phrase == "forbidden" else ("accepted",))
        lines = []
        while True:
            line = self.next_line(timeout)
            if line is None:
                return lines or ["(no log line)"]
            lines.append(line)
            if phrase in lines[-1] or lines[-1].startswith(verdicts):
                return lines

    def verdict_lines(self, timeout=3.0, until=("accepted", "rejected", "forbidden", "closed",
                                                "error")):
        """Log lines up to and including the next verdict on a connection
        (a line starting with one of `until`), waiting at most `timeout` s."""
        lines = []
        while True:
            line = self.next_line(timeout)
            if line is None:
                return lines
            lines.append(line)
            if line.startswith(until):
                return lines

    def forget_old_lines(self):
        """Drop log lines left over from earlier cases."""
        while not self.lines.empty():
            if self.lines.get_nowait() is None:
                self.lines.put(None)
                return

    def stop(self):
        """Stop the server (SIGTERM, then SIGKILL if it does not go)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# How the user starts a server of their own, in the settings of this run
# (run_plan sets it): `make run`, with CERTS= and PORT= when not the defaults.
MAKE_RUN = {"command": "make run", "port": 3000}


def set_make_run(certs, port):
    """Spell make run for this run's certificates folder and port (--port)."""
    port = port or 3000
    default = os.path.abspath(certs) == os.path.join(ROOT, "certs")
    settings = ("" if default else f" CERTS={shlex.quote(certs)}") + \
        ("" if port == 3000 else f" PORT={port}")
    MAKE_RUN.update(command="make run" + settings, port=port)


def ensure_certificates(certs, target, verbose, gallery=None):
    """Run `make <target>` for the certificates the chosen cases need (and
    the mistakes gallery's own, given the gallery) and say so in one line
    (with --verbose: every openssl command it ran, each as it pastes)."""
    for tool in ("make", "openssl"):
        if shutil.which(tool) is None:
            raise DemoError("missing tool", f"this demo needs 'make' and 'openssl' to build its "
                            f"certificates, and '{tool}' is not installed",
                            "apt-get install make openssl")
    refuse_rotated(certs)          # before make adds certificates from the old CA to it
    done = subprocess.run(["make", "-C", ROOT, f"CERTS={os.path.abspath(certs)}", target],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        screen.output(done.stdout[-2000:])
        raise DemoError("certificates not built", f"make {target} failed (its output is above)",
                        f"make -C {shlex.quote(shown_path(ROOT))} {target} "
                        f"CERTS={shlex.quote(os.path.abspath(certs))}")
    ran = [line for line in done.stdout.splitlines() if re.search(r"\bopenssl ", line)]
    if gallery is not None:
        try:
            ran += gallery.make_certificates(os.path.abspath(certs))
        except gallery.ExhibitError as exc:
            raise DemoError("certificates not built", str(exc).split(" -- ")[0],
                            str(exc).split(" -- ", 1)[-1]) from None
    if not ran:
        screen.say(f"Certificates: all present in {certs}/.")
        return
    what = "the certificates" if target == "certs" else "the extra certificates the failure " \
        "cases" + (" and the mistakes gallery" if gallery else "") + " need"
    how = f"make {target}" + (" and mistakes/gallery.py" if gallery else "")
    more = "):" if verbose else "; --verbose shows them)."
    screen.say(f"Certificates: built {what} in {certs}/ ({how}: {len(ran)} openssl "
               f"commands{more}")
    for line in ran if verbose else []:
        for text in wrap_command(pair_options(shell_words(line)), screen.width):
            screen.print(text)


def refuse_rotated(certs, command=None, argv=None):
    """Stop, saying how to get back to the lesson, when the server's or the
    client's certificate is not signed by the folder's ca.crt, as after the
    README's CA rollover (make ca-2, rollover-phase1..3): every case trusts
    ca.crt, so each would fail for that reason instead of the one it shows.
    The fix repeats `command` (this script, unless given) with `argv`."""
    def read(name):
        with open(os.path.join(certs, name)) as f:
            return read_certificate(f.read())
    try:
        ca = read("ca.crt")
        for role in ("server", "client"):
            leaf = read(f"{role}.crt")
            if ca is None or leaf is None or issued(ca, leaf):
                continue
            fresh = f"{certs.rstrip('/')}-lesson"
            again = shlex.join(replace_certs(sys.argv[1:] if argv is None else argv, fresh))
            raise DemoError("certificates rotated", f"{certs}/{role}.crt is signed by "
                            f"{common_name(leaf.issuer) or leaf.issuer}, not by {certs}/ca.crt "
                            f"({common_name(ca.subject) or ca.subject}), as after a CA rollover "
                            f"(make ca-2): the cases trust ca.crt, so each would fail for that "
                            f"reason", f"run the demo on a folder of its own (it builds the "
                            f"certificates): {command or program()} {again}; or start "
                            f"{certs}/ over, "
                            f"rollover and all: make clean certs"
                            + ("" if certs == "certs" else f" CERTS={shlex.quote(certs)}"))
    except OSError:              # a file make did not build: the cases will say so
        return


def replace_certs(argv, folder):
    """The command line again, with --certs FOLDER in place of any --certs."""
    words, skip = [], False
    for word in argv:
        if skip or word.startswith("--certs="):
            skip = False
            continue
        skip = word == "--certs"
        if not skip:
            words.append(word)
    return words + ["--certs", folder]


