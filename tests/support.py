"""Shared test fixtures: one real PKI per test run, and real servers on loopback.

pki()            builds every certificate with the real Makefile, once, into a
                 temporary folder, and returns its path.
rolled_pki()     a new folder after the README's CA rollover (make ca-2 and its
                 three phases).
openssl()        the openssl binary, failing loudly (tests making certificates).
cert_config()    the openssl config the test modules share (a CA, a client leaf,
                 a localhost server leaf), plus a module's own sections.
server_files()   server.py's --ca/--cert/--key options for a folder's files.
RunningServer    server.py's MTLSServer on 127.0.0.1, port 0, in a thread,
                 with its log lines collected for assertions.
ServerProcess    server.py as a user runs it: its own process on 127.0.0.1,
                 port 0, its log collected the same way.
run_script()     runs client.py / server.py / mtls_demo.py as a user would.
"""

import atexit
import os
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import server  # noqa: E402  (after the path fix above)

PYTHON = sys.executable
_pki_lock = threading.Lock()
_pki_dir = None

# Every certificate the tests use; `make` builds each once per run.
PKI_TARGETS = ["scenarios"]


def pki():
    """Build the PKI with the project's Makefile into a temp dir (once per run)."""
    global _pki_dir
    with _pki_lock:
        if _pki_dir is None and os.path.isdir(os.environ.get("MTLS_TEST_PKI", "")):
            _pki_dir = os.environ["MTLS_TEST_PKI"]      # built once by tests/run.py
        if _pki_dir is None:
            tmp = tempfile.mkdtemp(prefix="mtls-test-")
            atexit.register(shutil.rmtree, tmp, True)
            certs = os.path.join(tmp, "certs")
            done = subprocess.run(["make", "-C", ROOT, f"CERTS={certs}"] + PKI_TARGETS,
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError("make failed:\n" + done.stdout + done.stderr)
            _pki_dir = certs
    return _pki_dir


_rolled_dir = None


def rolled_pki():
    """A folder after the README's CA rollover, made with the real Makefile
    (make certs, make ca-2, rollover-phase1..3; EC keys, for speed) in a
    temporary folder, once per run: server.crt and client.crt signed by
    my-ca-2, trust.pem holding my-ca-2 only, ca.crt still my-ca. Tests
    only read it."""
    global _rolled_dir
    with _pki_lock:
        if _rolled_dir is None:
            _rolled_dir = make_rolled_pki()
    return _rolled_dir


def make_rolled_pki():
    """Run make certs, ca-2 and the three rollover phases into a new folder."""
    tmp = tempfile.mkdtemp(prefix="mtls-rolled-")
    atexit.register(shutil.rmtree, tmp, True)
    certs = os.path.join(tmp, "certs")
    for target in ("certs", "ca-2", "rollover-phase1", "rollover-phase2", "rollover-phase3"):
        done = subprocess.run(["make", "-C", ROOT, f"CERTS={certs}", "KEY=ec", target],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"make {target} failed:\n" + done.stdout + done.stderr)
    return certs


def openssl(*args, cwd=None, env=None):
    """Run the openssl binary (never waiting on a terminal); return its
    CompletedProcess, or raise RuntimeError with its output if it fails."""
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


# The sections every module that makes its own certificates shares: `req`
# settings (-subj or $ENV::TEST_CN gives the name), and the extensions of a CA,
# a client leaf (clientAuth) and a server leaf (serverAuth, localhost SAN).
# A module appends the sections only it needs; their names must not be these.
CERT_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def cert_config(extra=""):
    """The shared openssl config text, followed by a module's own sections."""
    return CERT_CONFIG + extra


def path(name):
    """The path of a file in the test PKI."""
    return os.path.join(pki(), name)


def server_files(cert="server.crt", key="server.key", certs=None):
    """server.py options naming the test PKI's files (or those in `certs`).
    Tests pass these first, so that they never depend on a certs/ folder in
    the checkout (a fresh clone has none); options given after them win."""
    folder = certs or pki()
    return ["--ca", os.path.join(folder, "ca.crt"), "--cert", os.path.join(folder, cert),
            "--key", os.path.join(folder, key)]


class LogCollector:
    """Collects server log lines; lets a test wait for one (bounded in time)."""

    def __init__(self):
        self.lines = []
        self.changed = threading.Condition()

    def __call__(self, message):
        with self.changed:
            self.lines.append(message)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout=5.0, start=0):
        """Return the first line from index `start` that satisfies predicate, or None."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines[start:]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.changed.wait(remaining)

    def connection_lines(self):
        """The accepted/rejected lines so far."""
        with self.changed:
            return [l for l in self.lines if l.startswith(("accepted", "rejected"))]


class RunningServer:
    """An MTLSServer on 127.0.0.1 with a free port, served from a thread.

    Use as a context manager; .url, .port, .log (a LogCollector), .server.
    """

    def __init__(self, ca="ca.crt", cert="server.crt", key="server.key", crl=None,
                 host="127.0.0.1", **options):
        self.log = LogCollector()
        crls = [crl] if isinstance(crl, str) else list(crl or ())
        self.paths = dict(ca=path(ca), cert=path(cert), key=path(key),
                          crl=[path(c) for c in crls])
        context = server.make_server_context(**self.paths)
        self.server = server.MTLSServer((host, 0), context, log=self.log,
                                        reload=lambda: server.make_server_context(**self.paths),
                                        **options)
        self.port = self.server.server_port
        self.url = f"https://localhost:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class ServerProcess:
    """server.py as a user runs it: its own process on 127.0.0.1, port 0.

    Its stderr is read by a thread into .log (a LogCollector, timestamps
    removed), so a test can wait for a line and check for tracebacks. The
    arguments are server.py's options (ServerProcess(*server_files(), ...));
    given a `test`, stop() is its cleanup. AssertionError if it does not start.
    """

    TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d ")

    def __init__(self, *args, env=None, test=None, script=None):
        command = [PYTHON, script or os.path.join(ROOT, "server.py"), "--host", "127.0.0.1",
                   "--port", "0", *args]
        self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.log = LogCollector()
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        if test is not None:
            test.addCleanup(self.stop)
        started = self.log.wait_for(lambda l: l.startswith(("serving", "error:")), timeout=15)
        if started is None or not started.startswith("serving"):
            self.stop()
            raise AssertionError("server.py did not start:\n" + self.text())
        self.port = int(re.search(r":(\d+)/", started).group(1))
        self.url = f"https://localhost:{self.port}/"

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.log(self.TIMESTAMP.sub("", line.rstrip("\n")))

    def text(self):
        """Everything the server wrote to stderr so far."""
        with self.log.changed:
            return "\n".join(self.log.lines)

    def count(self, text):
        """How many log lines so far contain text."""
        with self.log.changed:
            return sum(text in line for line in self.log.lines)

    def reload(self):
        """kill -HUP the server; return its answer (bounded wait)."""
        start = len(self.log.lines)
        self.proc.send_signal(signal.SIGHUP)
        answer = self.log.wait_for(lambda l: "reload" in l, 10, start=start)
        if answer is None or "reloaded" not in answer:
            raise AssertionError(f"server did not reload: {answer}")
        return answer

    def stop(self, sig=signal.SIGTERM):
        """Stop the server with `sig` (SIGTERM: as kill does); return its exit
        code (bounded wait: SIGKILL after 10 s). Calling it again is harmless."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(5)                   # its last lines, then the pipe is done
        self.proc.stderr.close()
        return code


def run_script(script, *args, timeout=60, env=None):
    """Run one of the project's scripts as a user would; return CompletedProcess."""
    return subprocess.run([PYTHON, os.path.join(ROOT, script)] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def wait_until(predicate, timeout=5.0):
    """Poll a condition that has no event to wait on (thread and fd counts), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.02)
    return True
