#!/usr/bin/env python3
"""mistakes/gallery.py: how mTLS deployments go wrong, each mistake attacked for real.

Each exhibit is one file in this folder. It holds a mistake that real
projects make, written as a few lines changed in server.py or client.py
(its EDITS), the attacker's move, and the one-line fix. For each exhibit
this runner:

  1. shows the wrong code as a unified diff against the real server.py or
     client.py, made with difflib from both files as they are now;
  2. runs the wrong code (that copy of server.py or client.py, changed by
     the exhibit's EDITS and nothing else) and makes the attacker's move
     against it: the attack works;
  3. makes the same move against the project's own server.py or client.py:
     it is refused;
  4. prints the fix, and returns a Result for the table.

Run:   python3 mistakes/gallery.py               every exhibit, then the table
       python3 mistakes/gallery.py accept-loop   just those (see --list)
       python3 mistakes/cert_optional.py --port 3001
                                  one wrong server (server.py's options), to attack by hand
It exits 0 only if every attack worked against the wrong code and failed
against the project's code. mtls_demo.py --mistakes runs the same exhibits
through EXHIBITS and run_exhibit(name, certs, width).

Reads:  certs/ (make scenarios, plus a few certificates only the exhibits
        need, made here with the openssl command: see EXTRA_CERTIFICATES).
Runs:   server.py and each wrong server as their own processes on free
        ports (demo/servers.py's ServerProcess). The attackers' clients run
        in this process: client.py's main() is called with the arguments
        shown, as if typed in a shell.
Uses:   demo/ for what it shares with the demo (the server process, the
        layout of printed commands, the table's Result); never mtls_demo.py,
        which imports this file to run --mistakes.

The wrong code is never reachable through an option of server.py or
client.py: it exists only as the EDITS in these files, applied at run time.

Reading order: the exhibits, the wrong code, certificates, output, servers,
clients, the attacks, one exhibit, main.
"""

import sys

# Checked before anything else runs (client.py, imported below, has its own
# check, which would name client.py): one line instead of a traceback.
if sys.version_info < (3, 9):
    sys.stderr.write("error: unsupported Python: mistakes/gallery.py needs Python 3.9+ "
                     "(this is %d.%d) -- run it with python3.9 or newer\n" % sys.version_info[:2])
    sys.exit(2)

import contextlib  # noqa: E402  (after the version check, as are the imports below)
import difflib
import http.client
import importlib.util
import io
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import textwrap
import threading
import time
import types
import urllib.parse
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import client  # noqa: E402  (the project's client, the attacker's tool and the right code)
from demo.commands import DemoError, fill, run_guarded  # noqa: E402  (the demo's pieces, never mtls_demo.py)
from demo.servers import ServerProcess  # noqa: E402
from demo.servers import refuse_rotated as refuse_rotated_certs  # noqa: E402
from demo.terminal import Result, pair_options, shell_words, wrap_command  # noqa: E402

# How long a good client waits for the frozen server in the accept-loop
# exhibit before it gives up (client.py --timeout). Tests make it shorter.
PATIENCE = 3.0

# The words that say how an attack went. They must not be misread without
# colour: capitals for the attacker's success, a plain word for our refusal.
GOT_IN = "ATTACKER GOT IN"
GOT_REQUEST = "ATTACKER GOT THE REQUEST"
FROZE = "ATTACKER FROZE THE SERVER"
REFUSED = "refused"
FAILED = "attack failed"      # where nothing is refused: the accept loop serves everyone


def failure_word(exhibit):
    """How the project's code beating this attack is said: refused, or
    (the accept loop, where no one is refused) attack failed."""
    return FAILED if exhibit.module.ATTACK == "silence" else REFUSED


# --- the exhibits --------------------------------------------------------

# In the order they are shown: from the handshake, to the names, to the
# client's side, to what lives around the TLS code.
ORDER = ["cert_optional", "public_ca", "name_prefix", "cn_despite_san", "crl_not_checked",
         "no_hostname_check", "cert_none", "trusted_header", "accept_loop"]

Exhibit = namedtuple("Exhibit", "name title module path")


class ExhibitError(Exception):
    """Something the exhibit could not do (a file changed, a server would not start)."""


def load_exhibit(stem):
    """Import mistakes/<stem>.py as a plain module (it needs nothing from us)."""
    path = os.path.join(HERE, stem + ".py")
    spec = importlib.util.spec_from_file_location("mistake_" + stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Exhibit(stem.replace("_", "-"), module.TITLE, module, path)


EXHIBITS = [load_exhibit(stem) for stem in ORDER]


def find_exhibit(name):
    """The exhibit called `name`, or None."""
    return next((e for e in EXHIBITS if e.name == name), None)


def success_words(exhibit):
    """What the attacker gets when the attack works, in capitals."""
    if exhibit.module.FILE == "client.py":
        return GOT_REQUEST
    return FROZE if exhibit.module.ATTACK == "silence" else GOT_IN


# --- the wrong code ------------------------------------------------------
#
# An exhibit's EDITS is a list of (right, wrong) pairs of lines. The wrong
# program is the real server.py or client.py with each `right` text
# replaced by its `wrong` text. Built from the file as it is today, so the
# diff on screen is always the whole difference, and an edit whose right
# lines are gone from the file stops the exhibit instead of lying.

def wrong_source(exhibit):
    """The exhibit's FILE with its EDITS applied, and the original text."""
    relpath = exhibit.module.FILE
    with open(os.path.join(ROOT, relpath), encoding="utf-8") as f:
        right = f.read()
    wrong = right
    for old, new in exhibit.module.EDITS:
        found = wrong.count(old)
        if found != 1:
            raise ExhibitError(
                f"{relpath} changed: mistakes/{os.path.basename(exhibit.path)} replaces "
                f"{old.strip()!r}, found {found} times instead of once -- update its EDITS")
        wrong = wrong.replace(old, new)
    return right, wrong


def load_wrong(exhibit):
    """Run the wrong source as a module (named after the exhibit) and return it."""
    right, wrong = wrong_source(exhibit)
    module = types.ModuleType("wrong_" + exhibit.name.replace("-", "_"))
    module.__file__ = os.path.join(ROOT, exhibit.module.FILE)    # its defaults (certs/) as usual
    label = f"{exhibit.module.FILE} as changed by mistakes/{os.path.basename(exhibit.path)}"
    exec(compile(wrong, label, "exec"), module.__dict__)
    return module


def wrong_diff(exhibit):
    """The unified diff from the right file to the wrong one, each hunk
    header naming the function it is in (as git diff does)."""
    right, wrong = wrong_source(exhibit)
    right_lines = right.splitlines(keepends=True)
    lines = difflib.unified_diff(
        right_lines, wrong.splitlines(keepends=True), fromfile=exhibit.module.FILE,
        tofile=f"{exhibit.module.FILE}, changed as in mistakes/{os.path.basename(exhibit.path)}",
        n=2)
    out = []
    for line in lines:
        line = line.rstrip("\n")
        hunk = re.match(r"@@ -(\d+)", line)
        if hunk:
            line += " " + enclosing_definition(right_lines, int(hunk.group(1)))
        out.append(line)
    return out


def enclosing_definition(lines, number):
    """The nearest `def` or `class` line at or above line `number` (1-based)."""
    for line in reversed(lines[:number]):
        if re.match(r"\s*(def|class) ", line):
            return line.strip().split("(")[0].rstrip(":")
    return ""


def main_wrong(path, argv=None):
    """Run an exhibit's wrong program with a command line, as its file's
    `python3 mistakes/NAME.py ...` does: to attack it by hand."""
    exhibit = find_exhibit(os.path.splitext(os.path.basename(path))[0].replace("_", "-"))
    try:
        wrong = load_wrong(exhibit)
    except ExhibitError as exc:
        print(f"error: exhibit out of date: {exc}", file=sys.stderr)
        return 2
    print(f"warning: this is {exhibit.module.FILE} with the mistake of mistakes/"
          f"{os.path.basename(path)}: for demonstrations only", file=sys.stderr, flush=True)
    return wrong.main(sys.argv[1:] if argv is None else argv)


# --- certificates --------------------------------------------------------
#
# `make scenarios` builds most of what the exhibits use. These few exist
# only for the exhibits, so they are made here, with the same openssl steps
# as the Makefile (keys made under umask 077), each only if missing or
# older than what it is made from. EC keys: quick to make.

GENKEY = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {out}"
SIGN = ("openssl x509 -req -in {csr} -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -days 365 "
        "-extfile openssl.cnf -extensions {ext} -out {out}")
CSR = "openssl req -new -key {key} -subj {subj} -config openssl.cnf -out {out}"

# (file, files it is made from, command). {c} is the certificates folder.
EXTRA_CERTIFICATES = [
    # public-ca: stands in for any of the ~150 CAs in a system trust store,
    # and my-client as anyone may get it named there.
    ("{c}/public-ca.key", [], GENKEY),
    ("{c}/public-ca.crt", ["{c}/public-ca.key"],
     "openssl req -new -x509 -key {c}/public-ca.key -days 365 -subj /CN=public-ca "
     "-config openssl.cnf -extensions v3_ca -out {out}"),
    ("{c}/public-client.key", [], GENKEY),
    ("{c}/public-client.csr", ["{c}/public-client.key"],
     CSR.format(key="{c}/public-client.key", subj="/CN=my-client", out="{out}")),
    ("{c}/public-client.crt", ["{c}/public-client.csr", "{c}/public-ca.crt"],
     SIGN.format(csr="{c}/public-client.csr", ca="{c}/public-ca", ext="client", out="{out}")),
    # evil-client: a real certificate from OUR CA, for the name my-client-evil.
    ("{c}/evil-client.key", [], GENKEY),
    ("{c}/evil-client.csr", ["{c}/evil-client.key"],
     CSR.format(key="{c}/evil-client.key", subj="/CN=my-client-evil", out="{out}")),
    ("{c}/evil-client.crt", ["{c}/evil-client.csr", "{c}/ca.crt"],
     SIGN.format(csr="{c}/evil-client.csr", ca="{c}/ca", ext="client", out="{out}")),
    # spoofed-cn-client: our CA vouches for its SAN (a SPIFFE URI); the CN
    # my-client is whatever its signing request said.
    ("{c}/spoofed-cn-client.csr", ["{c}/evil-client.key"],
     CSR.format(key="{c}/evil-client.key", subj="/CN=my-client", out="{out}")),
    ("{c}/spoofed-cn-client.crt", ["{c}/spoofed-cn-client.csr", "{c}/ca.crt"],
     SIGN.format(csr="{c}/spoofed-cn-client.csr", ca="{c}/ca", ext="client_spiffe", out="{out}")),
    # impostor-server: a valid server certificate from OUR CA, for www.example.com.
    ("{c}/impostor-server.key", [], GENKEY),
    ("{c}/impostor-server.csr", ["{c}/impostor-server.key"],
     CSR.format(key="{c}/impostor-server.key", subj="/CN=www.example.com", out="{out}")),
    ("{c}/impostor-server.crt", ["{c}/impostor-server.csr", "{c}/ca.crt"],
     SIGN.format(csr="{c}/impostor-server.csr", ca="{c}/ca", ext="server_elsewhere", out="{out}")),
    # my-proxy: the reverse proxy's client certificate (server.py --trust-proxy cn:my-proxy).
    ("{c}/my-proxy.key", [], GENKEY),
    ("{c}/my-proxy.csr", ["{c}/my-proxy.key"],
     CSR.format(key="{c}/my-proxy.key", subj="/CN=my-proxy", out="{out}")),
    ("{c}/my-proxy.crt", ["{c}/my-proxy.csr", "{c}/ca.crt"],
     SIGN.format(csr="{c}/my-proxy.csr", ca="{c}/ca", ext="client", out="{out}")),
    # selfsigned-server: names localhost, signed by nobody but itself.
    ("{c}/selfsigned-server.crt", ["{c}/impostor-server.key"],
     "openssl req -new -x509 -key {c}/impostor-server.key -days 365 -subj /CN=localhost "
     "-config openssl.cnf -extensions server_ec -out {out}"),
]


def make_certificates(certs):
    """Make the scenario certificates (make) and the exhibits' own (openssl),
    where missing; return the openssl commands that ran. Raise ExhibitError
    if one fails."""
    shown = relative(certs)
    done = run_command(["make", f"CERTS={shown}", "scenarios"])
    ran = [line for line in done.stdout.splitlines() if "openssl " in line]
    for target, sources, command in EXTRA_CERTIFICATES:
        target = target.format(c=shown)
        sources = [s.format(c=shown) for s in sources]
        if "openssl.cnf" in command:                 # its extensions, as the Makefile's rules
            sources.append("openssl.cnf")
        if is_up_to_date(target, sources):
            continue
        line = command.format(c=shown, out=target)
        run_command(shlex.split(line))
        ran.append(line)
    return ran


def ensure_certificates(certs, out, verbose=False):
    """Make what is missing, and say so in one line (nothing when nothing
    was missing); with verbose, every openssl command, each as it pastes."""
    ran = make_certificates(certs)
    if not ran:
        return
    out.say(f"Certificates: built the extra certificates the exhibits need in {relative(certs)}/ "
            f"({len(ran)} openssl commands{':' if verbose else '; --verbose shows them'})")
    for line in ran if verbose else []:
        out.command(shell_words(line), quoted=True)


def is_up_to_date(target, sources):
    """True if `target` exists and is newer than each of `sources` (as make decides)."""
    try:
        made = os.path.getmtime(os.path.join(ROOT, target))
    except OSError:
        return False
    return all(os.path.getmtime(os.path.join(ROOT, s)) <= made for s in sources)


def run_command(argv):
    """Run make or openssl in the project folder, new files private (umask 077)."""
    try:
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120, umask=0o077)
    except FileNotFoundError:
        raise ExhibitError(f"'{argv[0]}' not found: the certificates are made with it -- "
                           f"install it (apt-get install make openssl)") from None
    if done.returncode != 0:
        last = (done.stdout.strip().splitlines() or ["no output"])[-1]
        raise ExhibitError(f"{shlex.join(argv)} failed ({last}) -- run it by hand to see why")
    return done


def relative(path):
    """`path` relative to the project folder when inside it (as shown in commands)."""
    path = os.path.join(ROOT, path)
    shown = os.path.relpath(path, ROOT)
    return path if shown.startswith("..") else shown


# --- output --------------------------------------------------------------

class Output:
    """Prints the story, wrapped to `width` columns (wrapped, never cut);
    colour only on a terminal and never under NO_COLOR (no-color.org)."""

    def __init__(self, width=100):
        self.width = max(width, 40)
        self.colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text, code):
        """Wrap text in an ANSI colour code, when colour is on."""
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def say(self, text, indent=""):
        """Print a paragraph, wrapped; continuation lines indented two more."""
        print(textwrap.fill(text, self.width, initial_indent=indent,
                            subsequent_indent=indent + "  ", break_on_hyphens=False))

    def heading(self, text):
        """Print an exhibit's title line, bold, wrapped under its first word;
        a parenthesis is never split across lines."""
        print()
        whole = re.sub(r"\([^()]*\)", lambda m: m.group(0).replace(" ", "\u00a0"), text)
        for line in textwrap.wrap(whole, self.width, initial_indent="== ",
                                  subsequent_indent="   ", break_on_hyphens=False):
            print(self.paint(line.replace("\u00a0", " "), "1"))

    def command(self, words, prompt="$ ", quoted=False):
        """Print a command line that pastes, as the demo does: wrapped at
        spaces between words with ' \\' continuations, each option with its
        value, each word shell-quoted (unless `quoted`: already as written)."""
        units = pair_options([w if quoted or w == "&" else shlex.quote(w) for w in words])
        for line in wrap_command(units, self.width, prompt):
            print(line)

    def program_output(self, text, prefix="   | "):
        """Print a program's output indented, long lines wrapped (the
        continuation marked with ':' instead of '|')."""
        self.wrapped(text.rstrip("\n").splitlines() or ["(no output)"], prefix,
                     lambda line: prefix.replace("|", ":"))

    def diff(self, lines, prefix="   "):
        """Print a diff indented. A line wider than the screen is cut where
        it must be, and marked: its first part ends with ' ...>', its rest
        follows on the next line after the same +/- mark and '>... ', so it
        cannot be read as code."""
        for line in lines:
            mark, lead = line[:1], prefix
            while len(lead) + len(line) > self.width:
                cut = self.width - len(lead) - len(" ...>")
                print(lead + line[:cut] + " ...>")
                line, lead = line[cut:], prefix + mark + ">... "
            print(lead + line)

    def wrapped(self, lines, prefix, continuation):
        """Print lines after `prefix`, each wrapped at a space where it can
        be, its continuation lines after continuation(line)."""
        for line in lines:
            lead, more = prefix, continuation(line)
            while len(lead) + len(line) > self.width:
                chunk = self.width - len(lead)
                space = line.rfind(" ", len(line) - len(line.lstrip()) + 1, chunk + 1)
                cut = space if space > 0 else chunk
                print(lead + line[:cut])
                line = line[cut + 1:] if space > 0 else line[cut:]
                lead = more
            print(lead + line)

    def verdict(self, who, verdict, detail):
        """Print one side's outcome: the attacker's success in red capitals,
        a refusal in green, and the words alone say which. The verdict is
        never split across lines (textwrap breaks only at ASCII spaces)."""
        code = "1;31" if verdict.isupper() else "32"
        whole = self.paint(verdict.replace(" ", "\u00a0"), code)
        said = f"{whole} ({detail})" if verdict == FAILED else f"{whole}: {detail}"
        line = textwrap.fill(f"=> {who}: {said}", self.width, initial_indent="   ",
                             subsequent_indent="     ", break_on_hyphens=False)
        print(line.replace("\u00a0", " "))


# --- servers -------------------------------------------------------------

@contextlib.contextmanager
def running(program, args, out, env=None):
    """Start a server (demo/servers.py's ServerProcess, from the project
    folder), show its command, stop it at the end."""
    server = ServerProcess(args, 0, program, env, cwd=ROOT)
    out.command([f"{k}={v}" for k, v in (env or {}).items()] + server.command + ["&"])
    try:                        # stopped whatever happens, Ctrl-C while it starts too
        server.wait_ready()
        yield server
    except DemoError as exc:
        raise ExhibitError(str(exc)) from None
    finally:
        server.stop()


# --- clients -------------------------------------------------------------

def run_client(module, argv, expect_timeout=False):
    """Call a client's main(argv) here, capturing what it prints; return
    (exit code, stdout + stderr, seconds it took). `argv` is the command as
    typed in the project folder: its relative file names are resolved there,
    wherever this runs from. A client that could not even try (exit 2, a
    usage or file error; exit 3, no connection) is the exhibit's failure,
    not a refusal: that raises ExhibitError."""
    captured = io.StringIO()
    start, here = time.monotonic(), os.getcwd()
    os.chdir(ROOT)              # so the client's messages quote the paths as shown
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            try:
                code = module.main(list(argv))
            except SystemExit as exc:             # argparse, on a bad command line
                code = exc.code
    finally:
        os.chdir(here)
    seconds, output = time.monotonic() - start, captured.getvalue()
    if code == 130:             # client.py's main caught Ctrl-C: an interruption, not a result
        raise KeyboardInterrupt
    timed_out = code == client.EXIT_CONNECT and error_label(output) == "timeout"
    if code in (client.EXIT_USAGE, client.EXIT_CONNECT) and not (expect_timeout and timed_out):
        raise ExhibitError(f"the client could not make its request: {first_line(output)}")
    return code, output, seconds


def show_client(out, label, argv, code, output):
    """Print a client's command line, its output, and its exit code."""
    out.command(["python3", label] + list(argv))
    out.program_output(output)
    out.say(f"(exit {code})", "   ")


def first_line(text):
    """The first line of a program's output, for the table."""
    return (text.strip().splitlines() or ["(no output)"])[0]


def error_label(output):
    """client.py's label for a failure: "certificate required" from
    "error: certificate required: ...", "HTTP 403" from "error: HTTP 403 Forbidden: ..."."""
    line = first_line(output)
    if not line.startswith("error: "):
        return line
    label = line[len("error: "):].split(":")[0]
    return " ".join(label.split()[:2]) if label.startswith("HTTP ") else label


# --- the attacks ---------------------------------------------------------
#
# Each takes the exhibit, a started server (wrong or right) and the
# certificates folder; it prints what happened and returns
# (did the attack work?, a few words for the table).

def attack_with_client(exhibit, server, certs, out):
    """The attacker runs client.py with the exhibit's CLIENT arguments:
    it worked if the server greeted it."""
    argv = fill(exhibit.module.CLIENT, certs, server.port)
    code, output, _ = run_client(client, argv)
    show_client(out, "client.py", argv, code, output)
    show_log(out, server.verdict_lines())
    if code == 0 and output.startswith("Hello, "):
        return True, "as " + output.strip()[len("Hello, "):]
    return False, error_label(output)


def attack_with_forged_header(exhibit, server, certs, out):
    """The attacker, a valid client that is not allowed in, forwards
    my-client's certificate in X-Client-Cert, as if it were the proxy.
    Then, for comparison, the real proxy forwards the same header."""
    with open(os.path.join(ROOT, certs, "client.crt")) as f:
        forged = urllib.parse.quote(f.read())    # nginx's $ssl_client_escaped_cert
    header = f"X-Client-Cert: <{certs}/client.crt, URL-encoded: {len(forged)} characters>"
    attacker, proxy = exhibit.module.ATTACKER_FILES, exhibit.module.PROXY_FILES
    out.say(f"The attacker ({certs}/{attacker[0]}) sends GET / with {header}")
    forwarded = ("proxied", "forbidden", "rejected", "error")    # the request's verdict
    status, body = forwarded_request(server.port, certs, attacker, forged)
    out.program_output(f"HTTP {status}: {body}" if status else body)
    show_log(out, server.verdict_lines(until=forwarded))
    worked = status == 200 and body.startswith("Hello, ")

    out.say(f"For comparison, the real proxy ({certs}/{proxy[0]}) sends the same request:")
    proxy_status, proxy_body = forwarded_request(server.port, certs, proxy, forged)
    out.program_output(f"HTTP {proxy_status}: {proxy_body}" if proxy_status else proxy_body)
    show_log(out, server.verdict_lines(until=forwarded))
    if worked:
        return True, "as " + body[len("Hello, "):]
    return False, f"HTTP {status}" if status else body


def forwarded_request(port, certs, files, forged):
    """GET / over mTLS with the certificate and key in `files`, carrying the
    X-Client-Cert header; return (status or None, body or error)."""
    cert, key = (os.path.join(ROOT, certs, name) for name in files)
    context = client.make_client_context(os.path.join(ROOT, certs, "ca.crt"), cert, key)
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
    try:
        connection.request("GET", "/", headers={"X-Client-Cert": forged, "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


def attack_with_silence(exhibit, server, certs, out):
    """Two moves against the accept loop. First a client with no certificate:
    does its rejection leave a log line? Then a TCP connection that sends
    nothing: how long does a good client, coming next, wait?"""
    ca, good = f"{certs}/ca.crt", ["--cert", f"{certs}/client.crt", "--key", f"{certs}/client.key"]
    # 1. A rejected handshake, then a good request whose log line proves the
    #    log is being written: anything about the first would come before it.
    no_cert = ["--cacert", ca, server.url]
    code, output, _ = run_client(client, no_cert)
    show_client(out, "client.py", no_cert, code, output)
    argv = ["--cacert", ca] + good + [server.url]
    code, output, _ = run_client(client, argv)
    show_client(out, "client.py", argv, code, output)
    if code != 0:
        raise ExhibitError(f"a good client was refused: {first_line(output)}")
    log = server.verdict_lines()
    log += [] if log and log[-1].startswith("accepted") else server.verdict_lines()
    rejections = [line for line in log if line.startswith("rejected")]
    out.say("the server's log, up to the good client's line:", "   ")
    show_log(out, log)
    logged = bool(rejections)

    # 2. The silent connection, then a good client with a bounded patience.
    out.say(f"The attacker opens a TCP connection to port {server.port} and sends nothing.")
    silent = socket.create_connection(("localhost", server.port), timeout=5)
    try:
        argv = ["--cacert", ca] + good + ["--timeout", f"{PATIENCE:g}", server.url]
        out.say(f"A good client comes next, and waits at most {PATIENCE:g} s for its answer "
                f"(--timeout {PATIENCE:g}):")
        code, output, seconds = run_client(client, argv, expect_timeout=True)
        show_client(out, "client.py", argv, code, output)
    finally:
        silent.close()
    served = code == 0 and output.startswith("Hello")
    if not served and error_label(output) != "timeout":
        raise ExhibitError(f"the good client failed, without waiting: {first_line(output)}")
    wait = f"a good client {'was served in' if served else 'gave up after'} {seconds:.3f} s"
    out.say(f"measured: {wait}; the rejected client was "
            f"{'logged' if logged else 'NOT LOGGED'}", "   ")
    # The attacker wins with either: a frozen server, or rejections nobody sees.
    what = f"served in {seconds * 1000:.0f} ms" if served else f"{seconds:.1f} s wait"
    return not (served and logged), what + (", logged" if logged else ", unlogged")


class Impostor:
    """The attacker's server: holds a certificate (its own), accepts one
    connection, and keeps whatever the client sends before answering."""

    def __init__(self, cert, key):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received, self.outcome = b"", "no connection"
        self.thread = threading.Thread(target=self.serve_one, daemon=True)
        self.thread.start()

    def serve_one(self):
        """Accept one client; read its request head; answer as if we were localhost."""
        self.listener.settimeout(10)
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.settimeout(5)
        try:
            with self.context.wrap_socket(sock, server_side=True) as tls:
                while b"\r\n\r\n" not in self.received and len(self.received) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    self.received += chunk
                body = b"Hello from the impostor: thanks for your request\n"
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                            % len(body) + body)
                self.outcome = "served"
        except (ssl.SSLError, OSError) as exc:
            self.outcome = f"handshake failed: {getattr(exc, 'reason', None) or exc}"

    def close(self):
        """Stop listening, and wait (bounded) for the connection to end."""
        self.listener.close()
        self.thread.join(10)


def attack_with_impostor(exhibit, victim_module, label, certs, out):
    """The attacker runs a server with its own certificate on a port the
    victim believes is localhost's; the victim makes its usual request."""
    cert, key = (os.path.join(ROOT, certs, name) for name in exhibit.module.IMPOSTOR_FILES)
    impostor = Impostor(cert, key)
    argv = fill(exhibit.module.CLIENT, certs, impostor.port)
    try:
        code, output, _ = run_client(victim_module, argv)
    finally:
        impostor.close()
    show_client(out, label, argv, code, output)
    if impostor.received:
        out.say("What the impostor received:", "   ")
        out.program_output(impostor.received.decode("utf-8", "replace"), "   impostor | ")
        return True, first_line(impostor.received.decode("utf-8", "replace")).rsplit(" ", 1)[0]
    out.say(f"What the impostor received: nothing ({impostor.outcome})", "   ")
    return False, error_label(output)


def show_log(out, lines):
    """Print a server's log lines."""
    for line in lines or ["(no log line)"]:
        out.say(f"server log: {line}", "   ")


# --- one exhibit ---------------------------------------------------------

ATTACKS = {"client": attack_with_client, "forged-header": attack_with_forged_header,
           "silence": attack_with_silence}


def run_exhibit(name, certs, width=100, control=False, verbose=False):
    """Run one exhibit: the diff, the attack on the wrong code, the same
    attack on the project's code, the fix. Print the story; return a Result.

    control=True is the control experiment (for the tests): the mistake is
    left out, so the "wrong" side runs the project's own file, and the
    attack must fail on both sides."""
    exhibit = find_exhibit(name)
    if exhibit is None:
        raise ValueError(f"unknown exhibit {name!r}: choose from "
                         f"{', '.join(e.name for e in EXHIBITS)}")
    out = Output(width)
    certs = relative(certs)
    m = exhibit.module
    wrong_file = f"mistakes/{os.path.basename(exhibit.path)}"
    got = success_words(exhibit)
    failed = failure_word(exhibit)
    expected = (f"wrong: {got}", f"{m.FILE}: {failed}")
    out.heading(f"{exhibit.name}: {exhibit.title}")
    try:
        ensure_certificates(certs, out, verbose)
        if control:
            out.say(f"Control run: the mistake is left out; both sides run {m.FILE} itself.")
        else:
            out.say(f"The wrong code, {wrong_file}: {m.FILE} with these lines changed:")
            out.diff(wrong_diff(exhibit))
        out.say(f"The attacker: {m.ATTACKER}")
        if m.FILE == "client.py":
            results = run_client_side(exhibit, certs, out, control)
        else:
            results = run_server_side(exhibit, certs, out, control)
    except ExhibitError as exc:
        out.say(f"error: exhibit failed: {exc}")
        return Result(exhibit.name, expected, ("error: exhibit failed", shorten(str(exc))), False)
    (wrong_worked, wrong_got), (right_worked, right_got) = results
    out.say(f"why: {m.WHY}")
    out.say(f"fix: {m.FIX}")
    if m.SEEN_IN:
        out.say("seen in: " + "; ".join(m.SEEN_IN))
    # Each row of the table is one side; `expected` names it, `observed` need not.
    observed = (f"{got if wrong_worked else failed} ({wrong_got})",
                f"{got if right_worked else failed} ({right_got})")
    return Result(exhibit.name, expected, tuple(shorten(o) for o in observed),
                  wrong_worked and not right_worked)


def run_server_side(exhibit, certs, out, control=False):
    """The attack on the wrong server, then on server.py; two (worked, got) pairs."""
    m = exhibit.module
    wrong_program = "server.py" if control else f"mistakes/{os.path.basename(exhibit.path)}"
    attack = ATTACKS[m.ATTACK]
    files = ["--ca", f"{certs}/ca.crt", "--cert", f"{certs}/server.crt",
             "--key", f"{certs}/server.key"]
    env = {k: v.format(certs=certs) for k, v in getattr(m, "ENV", {}).items()}
    outcomes = []
    for who, program in [("the wrong server", wrong_program), ("server.py", "server.py")]:
        out.say(f"-- against {who}:")
        with running(["python3", program], files + fill(m.SERVER, certs), out, env) as server:
            worked, what = attack(exhibit, server, certs, out)
        out.verdict(who, success_words(exhibit) if worked else failure_word(exhibit), what)
        outcomes.append((worked, what))
    return outcomes


def run_client_side(exhibit, certs, out, control=False):
    """The impostor against the wrong client, then against client.py."""
    wrong = (client, "client.py") if control else \
        (load_wrong(exhibit), f"mistakes/{os.path.basename(exhibit.path)}")
    outcomes = []
    for who, module, label in [("the wrong client",) + wrong,
                               ("client.py", client, "client.py")]:
        out.say(f"-- {who} asks https://localhost/, where the impostor listens:")
        worked, what = attack_with_impostor(exhibit, module, label, certs, out)
        out.verdict(who, GOT_REQUEST if worked else REFUSED, what)
        outcomes.append((worked, what))
    return outcomes


def shorten(text, limit=60):
    """One line of at most `limit` characters, for the table."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- main ----------------------------------------------------------------

def print_table(results, out):
    """The closing table: exhibit | expected | observed | ok, two lines each;
    the observed column wraps to keep the table within the width."""
    rows = [("exhibit", "expected", "observed", "ok")]
    for r in results:
        rows.append((r.name, r.expected[0], r.observed[0], "yes" if r.ok else "NO"))
        rows.append(("", r.expected[1], r.observed[1], ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    widths[2] = max(min(widths[2], out.width - widths[0] - widths[1] - 12), 20)
    print()
    for row in rows:
        pieces = textwrap.wrap(row[2], widths[2], break_on_hyphens=False) or [""]
        for n, piece in enumerate(pieces):
            cells = [row[0] if n == 0 else "", row[1] if n == 0 else "", piece]
            cells = [cell.ljust(width) for cell, width in zip(cells, widths)]
            cells[2] = re.sub(r"ATTACKER[A-Z ]*[A-Z]", lambda m: out.paint(m.group(0), "1;31"),
                              cells[2])
            ok = row[3] if n == 0 else ""
            ok = out.paint(ok, {"yes": "32", "NO": "1;31"}[ok]) if ok in ("yes", "NO") else ok
            print(" | ".join(cells + [ok]).rstrip())


# client.py's: a usage error on one line, like every other error here, and
# "did you mean --certs?" for an unknown option.
ArgumentParser = client.ArgumentParser


def refuse_rotated(certs, argv):
    """After a CA rollover (make ca-2) the project's own code refuses the
    rotated certificates too, so every exhibit would fail for that reason:
    stop, with the demo's one line saying how to get back (demo/servers.py)."""
    try:
        refuse_rotated_certs(relative(certs), "python3 mistakes/gallery.py",
                             sys.argv[1:] if argv is None else argv)
    except DemoError as exc:
        raise ExhibitError(str(exc)) from None


def main(argv=None):
    """Run the chosen exhibits (all by default); exit 0 only if each attack
    worked against the wrong code and failed against the project's."""
    names = [e.name for e in EXHIBITS]
    p = ArgumentParser(prog="mistakes/gallery.py", allow_abbrev=False,
                       description="How mTLS deployments go wrong: each mistake, "
                                   "attacked for real.")
    p.add_argument("names", nargs="*", metavar="NAME", help="exhibits to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the exhibits and exit")
    p.add_argument("--certs", default=os.path.join(ROOT, "certs"),
                   help="certificates folder (default: certs/ in the project)")
    p.add_argument("--verbose", action="store_true",
                   help="show every openssl command that makes a missing certificate")
    p.add_argument("--width", type=int, default=None,
                   help="columns to wrap at (default: the terminal's width, else 100)")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        p.error(f"unknown exhibit {unknown[0]!r}: choose from {', '.join(names)}")
    if args.list:
        width = max(map(len, names))
        for e in EXHIBITS:
            print(f"{e.name:{width}}  {e.title}")
        return 0
    if args.width is None:          # a terminal that reports no size counts as 100 wide
        columns = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 0
        args.width = columns or 100
    out = Output(args.width)
    results = []

    def run_all():
        refuse_rotated(args.certs, argv)
        for name in args.names or names:
            results.append(run_exhibit(name, os.path.abspath(args.certs), args.width,
                                       verbose=args.verbose))
    code = run_guarded(run_all, ExhibitError,
                       "\ninterrupted: stopped by Ctrl-C; the servers are stopped")
    if code is not None:            # an error, Ctrl-C or a closed pipe, said in one line
        return code
    print_table(results, out)
    shown = sum(r.ok for r in results)
    print()
    out.say(f"{shown} of {len(results)} exhibits as expected: the attack worked against the "
            f"wrong code and was refused by the project's.")
    return 0 if shown == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
