#!/usr/bin/env python3
"""mtls_demo.py: the mTLS story, run for real and explained.

Builds the certificates if they are missing (make certs), starts server.py
as its own process on a free port, then runs each case the way a student
would type it: the exact command, its real output, the line the server
logged about it, and why it happened. It ends with a table of what each
case should do and what it did, and exits 0 only if every case matched.

Run:   python3 mtls_demo.py              the article's three cases
       python3 mtls_demo.py --list       every scenario, one line each
       python3 mtls_demo.py --all        all of them
       python3 mtls_demo.py expired-client wrong-purpose   just those
       python3 mtls_demo.py --trace no-client-cert   with the TLS messages

Reads:  certs/ (made by the Makefile); runs server.py, client.py, curl and
        openssl as subprocesses, exactly as shown on screen.

Reading order: the scenarios (data), terminal output, running the servers,
running one case, tracing a handshake, main.
"""

import argparse
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))

# --- the scenarios -------------------------------------------------------
#
# A scenario is one client request against one server configuration.
# {certs} in an argument stands for the certificates folder, {url} for the
# server's address. `expect` is the client's outcome: "ok" (it printed the
# greeting), "HTTP 403", or the label client.py prints after "error:".
# `server_says` is a phrase the server's log line for the connection holds.

Scenario = namedtuple("Scenario", "name title server client expect server_says why curl",
                      defaults=(None,))       # curl: the article's curl line, if any

OK_CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/client.crt", "--key", "{certs}/client.key"]
DEFAULT_SERVER = ()

SCENARIOS = [
    Scenario(
        "success", "Both sides show a certificate signed by my-ca",
        DEFAULT_SERVER, OK_CLIENT + ["{url}"], "ok", "accepted",
        "The client checked that the server's certificate is signed by my-ca and names "
        "localhost; the server checked that the client's is signed by my-ca too. Each side "
        "proved it holds its private key by signing the handshake, so the server knows "
        "it is talking to my-client.",
        curl=["--cacert", "{certs}/ca.crt", "--key", "{certs}/client.key",
              "--cert", "{certs}/client.crt", "{url}"]),
    Scenario(
        "no-cacert", "The client does not trust the server's CA (no --cacert)",
        DEFAULT_SERVER, ["--cert", "{certs}/client.crt", "--key", "{certs}/client.key", "{url}"],
        "server not trusted", "client does not trust our certificate",
        "Without --cacert the client trusts only the system's CAs, and my-ca is not one "
        "of them, so it refuses the server's certificate and aborts before sending anything. "
        "The fix is on the client: trust the CA that signed the server (--cacert certs/ca.crt).",
        curl=["--key", "{certs}/client.key", "--cert", "{certs}/client.crt", "{url}"]),
    Scenario(
        "no-client-cert", "The client sends no certificate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "{url}"],
        "certificate required", "no client certificate",
        "The server asked for a certificate (CertificateRequest) and got an empty one, so it "
        "ended the connection with the alert certificate_required. Under TLS 1.3 the client "
        "has already finished its half of the handshake by then, so it learns this only "
        "when it reads the response: that is why curl reports it from SSL_read.",
        curl=["--cacert", "{certs}/ca.crt", "{url}"]),
    Scenario(
        "other-ca", "A client certificate from another CA, claiming to be my-client",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/rogue-client.crt",
                         "--key", "{certs}/rogue-client.key", "{url}"],
        "unknown CA", "signed by an unknown CA",
        "Anyone can make a CA and write CN=my-client into a certificate. The server trusts "
        "only signatures by my-ca (--ca), cannot build a chain to it, and answers with the "
        "alert unknown_ca. The name inside a certificate is worth exactly as much as its issuer."),
    Scenario(
        "expired-client", "The client's certificate expired in 2020",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/expired-client.crt",
                         "--key", "{certs}/client.key", "{url}"],
        "certificate expired", "has expired",
        "Every certificate carries notBefore/notAfter dates, and the server checks them "
        "against its own clock. Same key, same name, but the dates are past, so the server "
        "sends certificate_expired. The fix is a new certificate for the same key: "
        "rm certs/client.crt && make certs signs the CSR again."),
    Scenario(
        "expired-server", "The server's certificate expired in 2020",
        ["--cert", "{certs}/expired-server.crt"], OK_CLIENT + ["{url}"],
        "server certificate expired", "client says a certificate in our chain has expired",
        "The client checks the same dates on the server's certificate and refuses it. This "
        "is the most common outage in real mTLS deployments: renew before notAfter, and "
        "reload the server (kill -HUP) so it serves the new certificate."),
    Scenario(
        "wrong-hostname", "The server's certificate is for www.example.com",
        ["--cert", "{certs}/elsewhere-server.crt"], OK_CLIENT + ["{url}"],
        "hostname mismatch", "client refused our certificate",
        "A valid certificate proves nothing unless it names the host you asked for. The client "
        "compares 'localhost' with the subjectAltName (www.example.com only) and hangs up. "
        "When a SAN is present the CN is ignored: put every name in the SAN."),
    Scenario(
        "ip-address", "https://127.0.0.1 works: the SAN lists IP:127.0.0.1",
        DEFAULT_SERVER, OK_CLIENT + ["{ipurl}"], "ok", "accepted",
        "An IP address is matched against the SAN's IP entries, never against DNS names or "
        "the CN. Our server certificate lists IP:127.0.0.1 and IP:::1 beside DNS:localhost, "
        "so https://127.0.0.1 passes the hostname check as localhost does (and https://[::1] "
        "would, with a server listening there: --host ::1)."),
    Scenario(
        "revoked-no-crl", "A revoked client certificate, but the server has no CRL",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/revoked-client.crt",
                         "--key", "{certs}/client.key", "{url}"],
        "ok", "accepted",
        "The CA revoked this certificate, but revocation lives in a separate list (the CRL) "
        "that the server must load and consult. Without --crl the signature and dates are "
        "fine, so it gets in: the classic mistake. The next case fixes it."),
    Scenario(
        "revoked", "The same revoked certificate, server started with --crl",
        ["--crl", "{certs}/ca.crl"], ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/revoked-client.crt",
                                    "--key", "{certs}/client.key", "{url}"],
        "certificate revoked", "has been revoked",
        "With --crl the server loads the CRL and sets VERIFY_CRL_CHECK_LEAF, so OpenSSL looks "
        "the client's serial number up and finds it revoked. A CRL goes stale (nextUpdate): "
        "regenerate it and reload the server (kill -HUP) to make new revocations count."),
    Scenario(
        "wrong-purpose", "The server's own certificate presented as a client certificate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/server.crt",
                         "--key", "{certs}/server.key", "{url}"],
        "wrong purpose", "wrong purpose",
        "The certificate is signed by my-ca and the key matches, but its extendedKeyUsage "
        "says serverAuth only. A server asks for clientAuth and answers unsupported_certificate: "
        "issue separate certificates for each role."),
    Scenario(
        "article-server-strict", "The article's exact certificates on both sides, checked strictly",
        ["--ca", "{certs}/article/ca.crt", "--cert", "{certs}/article/server.crt",
         "--key", "{certs}/article/server.key"],
        ["--cacert", "{certs}/article/ca.crt", "--cert", "{certs}/article/client.crt",
         "--key", "{certs}/article/client.key", "{url}"],
        "server certificate invalid", "client refused our certificate",
        "The article's CA has basicConstraints but no keyUsage, and its leaves are X.509 v1 "
        "with no extensions at all. Strict verification (the default since Python 3.13) "
        "rejects such a CA; curl, which is not strict, would have let this server through.",
        curl=["--cacert", "{certs}/article/ca.crt", "--key", "{certs}/article/client.key",
              "--cert", "{certs}/article/client.crt", "{url}"]),
    Scenario(
        "article-client-strict", "The article's client certificate, at a strict server",
        ["--ca", "{certs}/article/ca.crt"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/article/client.crt",
         "--key", "{certs}/article/client.key", "{url}"],
        "certificate rejected", "client certificate fails verification",
        "Now the server checks the article's client certificate strictly and refuses it: a "
        "strict verifier wants every CA to carry keyUsage with keyCertSign, and the article's "
        "CA has only basicConstraints. Our openssl.cnf adds it, which is why 'success' passes."),
    Scenario(
        "not-authorized", "A valid client that is not on the allow-list (--allow cn:my-client)",
        ["--allow", "cn:my-client"], ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/other-client.crt",
                                   "--key", "{certs}/other-client.key", "{url}"],
        "HTTP 403 Forbidden", "forbidden",
        "TLS authenticated the client: its certificate is valid and names "
        "spiffe://example.org/other-client. Authorization is a separate, later decision: "
        "this server lets in only my-client, so it answers 403 over the working connection."),
    Scenario(
        "spiffe-identity", "The same client, allowed by its URI identity",
        ["--allow", "uri:spiffe://example.org/other-client"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/other-client.crt",
         "--key", "{certs}/other-client.key", "{url}"],
        "ok", "accepted",
        "The server names a client by its subjectAltName when it has one (a URI here, as "
        "SPIFFE service meshes use), and by its CN only otherwise. Allow-list the identity "
        "the certificate actually carries."),
    Scenario(
        "chain-leaf-only", "A server signed by an intermediate CA sends only its leaf",
        ["--cert", "{certs}/int-server.crt"], OK_CLIENT + ["{url}"],
        "server not trusted", "client does not trust our certificate",
        "The client trusts the root (my-ca), but the server's certificate was signed by "
        "my-intermediate-ca, which the client has never seen. Without the intermediate the "
        "chain has a gap, so verification fails exactly as if the CA were unknown."),
    Scenario(
        "chain-full", "Both sides send leaf + intermediate",
        ["--cert", "{certs}/int-server-chain.pem"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/int-client-chain.pem",
         "--key", "{certs}/client.key", "{url}"],
        "ok", "accepted",
        "A chain file holds the leaf followed by the intermediate. Each side sends it, and "
        "the peer links leaf -> intermediate -> root it trusts. Only the root need be "
        "configured as trusted (--ca, --cacert)."),
    Scenario(
        "client-chain-leaf-only", "The client sends its leaf without the intermediate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/int-client.crt",
                         "--key", "{certs}/client.key", "{url}"],
        "unknown CA", "signed by an unknown CA",
        "The same gap, the other way round: the server cannot link the client's leaf to "
        "my-ca without the intermediate, and answers unknown_ca. Send the chain file."),
]

# The article's own cases, run when no scenario is named.
ARTICLE_CASES = ["success", "no-cacert", "no-client-cert"]


# --- terminal output -----------------------------------------------------

COLOUR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")      # see no-color.org


def paint(text, code):
    """Wrap text in an ANSI colour code, only on a terminal without NO_COLOR."""
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def heading(text):
    """Print a case's title line."""
    print("\n" + paint(f"== {text}", "1"))


def show_output(text):
    """Print a program's output indented, so it stands apart from ours."""
    for line in text.rstrip("\n").splitlines() or ["(no output)"]:
        print("   | " + line)


def fail(message):
    """Print an error line (what, why, fix) and exit 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


# --- running the servers -------------------------------------------------

class ServerProcess:
    """server.py in its own process on a free port; its log read by a thread."""

    def __init__(self, args):
        self.command = [sys.executable, "server.py", "--port", "0"] + list(args)
        print(paint("Starting a server: " + shlex.join(["python3"] + self.command[1:]), "2"))
        self.proc = subprocess.Popen(self.command, cwd=HERE, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read_log, daemon=True).start()
        first = self.next_line(timeout=15)
        while first is not None and " warning: " in first:     # e.g. key permissions
            print(paint("server log: ", "2") + first.split(" ", 1)[1])
            first = self.next_line(timeout=15)
        if first is None or "serving https://" not in first:
            self.stop()
            fail(f"server.py did not start: {first or 'no output'} -- try 'python3 server.py' by hand")
        self.port = int(first.split("serving https://")[1].split("/")[0].rsplit(":", 1)[1])

    def _read_log(self):
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout=5):
        """The server's next log line, or None if none comes within `timeout`."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def case_lines(self, phrase, timeout=5):
        """The log lines about one connection, without timestamps: read until
        one holds `phrase` or gives a verdict (rejected, forbidden), or until
        nothing more comes within `timeout` seconds."""
        lines = []
        while True:
            line = self.next_line(timeout)
            if line is None:
                return lines or ["(no log line)"]
            lines.append(line.split(" ", 1)[1])
            if phrase in lines[-1] or lines[-1].startswith(("rejected", "forbidden")):
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


def ensure_certificates(certs, target):
    """Run `make <target>` for the certificates the chosen scenarios need;
    show the openssl commands it ran, if any (none when all are there)."""
    if shutil.which("make") is None or shutil.which("openssl") is None:
        fail("this demo needs 'make' and 'openssl' to build certificates -- install them "
             "(e.g. apt-get install make openssl)")
    done = subprocess.run(["make", f"CERTS={certs}", target], cwd=HERE,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        show_output(done.stdout[-2000:])
        fail(f"'make {target} CERTS={certs}' failed (output above) -- fix that, then run the demo again")
    ran = [line for line in done.stdout.splitlines() if "openssl " in line]
    if ran:
        print(paint(f"Built the certificates first (make {target}):", "2"))
        show_output("\n".join(ran))


# --- running one case ----------------------------------------------------

Result = namedtuple("Result", "name expected observed ok")


def fill(args, certs, port=0):
    """Substitute {certs}, {url} and {ipurl} in a scenario's arguments."""
    return [a.format(certs=certs, url=f"https://localhost:{port}/",
                     ipurl=f"https://127.0.0.1:{port}/") for a in args]


def server_command(scenario, certs):
    """server.py's options for a scenario: our usual files, with the
    scenario's own options put in their place (every option takes a value)."""
    options = {"--ca": f"{certs}/ca.crt", "--cert": f"{certs}/server.crt",
               "--key": f"{certs}/server.key"}
    extra = fill(scenario.server, certs)
    options.update(zip(extra[::2], extra[1::2]))
    return [word for pair in options.items() for word in pair]


def observe_client(proc):
    """What client.py's run amounts to: "ok", "HTTP 403", or its error label."""
    if proc.returncode == 0:
        return "ok"
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if last.startswith("error: "):
        return last[len("error: "):].split(":", 1)[0]
    return f"exit {proc.returncode}"


def show_log(lines):
    """Print the server's log lines for a connection."""
    for line in lines:
        print(paint("server log: ", "2") + line)


def run_case(scenario, server, certs, use_curl, trace=False):
    """Run one scenario, print what happened and why, and return a Result."""
    heading(f"{scenario.name}: {scenario.title}")
    server.forget_old_lines()
    client_args = fill(scenario.client, certs, server.port)
    print("$ " + shlex.join(["python3", "client.py"] + client_args))
    proc = subprocess.run([sys.executable, "client.py"] + client_args, cwd=HERE,
                          capture_output=True, text=True, timeout=30)
    show_output(proc.stdout + proc.stderr)
    print(f"   (exit {proc.returncode})")
    server_lines = server.case_lines(scenario.server_says)
    show_log(server_lines)

    if use_curl and scenario.curl:
        curl_args = fill(scenario.curl, certs, server.port)
        print("$ " + shlex.join(["curl"] + curl_args) + "      # the article's command")
        done = subprocess.run(["curl", "-sS"] + curl_args, capture_output=True, text=True, timeout=30)
        show_output(done.stdout + done.stderr)
        print(f"   (curl exit {done.returncode})")
        show_log(server.case_lines(scenario.server_says))

    if trace:
        trace_case(scenario, server, certs)
    print(paint("why: ", "1") + scenario.why)
    observed = observe_client(proc)
    server_line = server_lines[-1]
    server_observed = summarize_log_line(server_line)
    ok = observed == scenario.expect and scenario.server_says in server_line
    return Result(scenario.name, (f"client: {scenario.expect}", f"server: {scenario.server_says}"),
                  (f"client: {observed}", f"server: {server_observed}"), ok)


def summarize_log_line(line):
    """The gist of a server log line: "accepted as CN=x" or the reason, no details."""
    what, _, rest = line.partition(" ")
    if what not in ("accepted", "rejected", "forbidden"):
        return line
    if what == "accepted":
        return "accepted as " + rest.split(" as ", 1)[-1]
    return rest.split(": ", 1)[-1].split(" (")[0]


def print_table(results):
    """The closing table: case | expected | observed | ok, two lines a case."""
    rows = [("case", "expected", "observed", "ok")]
    for r in results:
        rows.append((r.name, r.expected[0], r.observed[0], "yes" if r.ok else "NO"))
        rows.append(("", r.expected[1], r.observed[1], ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print()
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        colour = {"yes": "32", "NO": "31"}.get(row[3])
        print(" | ".join(cells + [paint(row[3], colour) if colour else row[3]]).rstrip())


# --- tracing a handshake -------------------------------------------------
#
# `openssl s_client -trace` prints every TLS record it sends and receives.
# We run it with the same certificates as the case's client.py command and
# keep only the handshake messages and alerts, as a readable sequence.

ALERTS = {0: "close_notify", 40: "handshake_failure", 42: "bad_certificate",
          43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
          46: "certificate_unknown", 48: "unknown_ca", 70: "protocol_version",
          50: "decode_error", 116: "certificate_required"}

NOTES = {
    ("<-", "CertificateRequest"): "the server asks for a client certificate: this is mTLS",
    ("<-", "Certificate"): "the server's certificate chain",
    ("<-", "CertificateVerify"): "signed with the server's key: it owns that certificate",
    ("->", "Certificate"): "the client's certificate chain",
    ("->", "CertificateVerify"): "signed with the client's key: it owns that certificate",
    ("->", "Finished"): "TLS 1.3: the client's handshake is done; it sends its request next",
}


def s_client_command(client_args):
    """The openssl s_client command equivalent to a client.py argument list."""
    command = ["openssl", "s_client", "-trace", "-ign_eof", "-verify_return_error"]
    options = {"--cacert": "-CAfile", "--cert": "-cert", "--key": "-key"}
    it = iter(client_args)
    for arg in it:
        if arg in options:
            command += [options[arg], next(it)]
            if arg == "--cert" and count_certificates(command[-1]) > 1:
                command += ["-cert_chain", command[-1]]   # -cert sends only the first
        else:
            host, port = arg.split("//")[1].rstrip("/").rsplit(":", 1)
            check = "-verify_ip" if host[0].isdigit() else "-verify_hostname"
            command += ["-connect", f"{host}:{port}", "-servername", host, check, host]
    return command


def count_certificates(path):
    """How many PEM certificates a file holds (a chain file holds several)."""
    try:
        with open(path) as f:
            return f.read().count("-----BEGIN CERTIFICATE-----")
    except OSError:
        return 0


def parse_trace(output):
    """Turn s_client -trace output into (direction, message, note) triples."""
    steps, direction = [], None
    for line in output.splitlines():
        if line.startswith(("Sent Record", "Received Record")):
            direction = "->" if line.startswith("Sent") else "<-"
            continue
        m = re.match(r"^ {4}(\w+), Length=(\d+)$", line)
        if m and direction:
            name, length = m.group(1), int(m.group(2))
            note = NOTES.get((direction, name), "")
            if direction == "->" and name == "Certificate" and length <= 4:
                note = "EMPTY: the client has no certificate to send"
            steps.append((direction, name, note))
        m = re.match(r"^ +Level=(\w+)\(\d\), description=.*\((\d+)\)$", line)
        if m and direction:
            alert = ALERTS.get(int(m.group(2)), f"alert {m.group(2)}")
            steps.append((direction, f"Alert: {alert} ({m.group(1)})", ""))
        if "Inner Content Type = ApplicationData" in line and direction:
            if not steps or steps[-1][1] != "ApplicationData":
                steps.append((direction, "ApplicationData", "HTTP, encrypted"))
    return steps


def run_trace(command):
    """Run s_client with one HTTP request (Connection: close, so it ends);
    return the parsed message sequence."""
    request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    try:
        done = subprocess.run(command, input=request, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return []
    return parse_trace(done.stdout + done.stderr)


def trace_case(scenario, server, certs):
    """Show the TLS messages of one scenario, as openssl s_client saw them."""
    command = s_client_command(fill(scenario.client, certs, server.port))
    print(paint("TLS messages (client's view, from " + shlex.join(command[:3]) + " ...):", "2"))
    if shutil.which("openssl") is None:
        print("   (openssl not found: no trace)")
        return
    steps = run_trace(command)
    if not steps:
        print("   (this openssl has no -trace; build it with enable-ssl-trace to see messages)")
    for direction, message, note in steps:
        arrow = "client --> server" if direction == "->" else "client <-- server"
        print(f"   {arrow}  {message:32} {note}".rstrip())
    server.case_lines(scenario.server_says, timeout=2)     # its log line is not this case's


# --- checking your own certificates --------------------------------------
#
# `--check` points the project at *your* files, and optionally your server:
#     python3 mtls_demo.py --check --cacert CA [--cert CERT --key KEY] [URL]
# CERT and KEY are what a client presents (curl's --cert/--key); CA is the
# CA that must vouch for them, and for the server at URL. Each check prints
# one line, "ok   ...", "warn ..." or "FAIL ... -- fix"; the exit code is 0
# when nothing failed, 1 when something did, 2 for a missing file or option.
#
# Fields (names, dates, extensions) are read with the openssl binary, which
# the project requires anyway: Python's ssl has no public way to read a
# certificate that is not a connected peer's. Two engines verify, and each
# line says which: `openssl verify` (the binary, with the OpenSSL it links)
# and Python's own ssl in a real in-memory handshake (the OpenSSL *Python*
# links, which is the one client.py, server.py and requests use). The two
# can differ on one machine; where they do, Python's verdict is the one
# a Python program will meet.
#
# Simplified: it checks one client certificate and one server, with the
# checks people trip over most; it does not fetch CRLs or OCSP, and it
# recognises a missing intermediate only when a file next to yours holds it.

import binascii         # (imports used only by this section: the lead may move them up)
import ipaddress
import socket
import ssl
import tempfile
import textwrap
import time
import urllib.parse

WARN_DAYS = 30          # warn when a certificate expires within this many days

Cert = namedtuple("Cert", "pem subject issuer not_before not_after version key_type key_bits "
                          "extensions public_key")


class CheckError(Exception):
    """A mistake in the command line or the files that stops every check:
    printed as one 'error: <label>: <what> -- <fix>' line, exit code 2."""

    def __init__(self, label, message):
        super().__init__(f"{label}: {message}")


class Report:
    """Prints one line per check, wrapped to the width; counts the verdicts."""

    MARKS = {"ok": ("ok  ", "32"), "warn": ("warn", "33"), "FAIL": ("FAIL", "31")}

    def __init__(self, width=None):
        self.width = width or report_width()
        self.counts = {"ok": 0, "warn": 0, "FAIL": 0}

    def line(self, verdict, check, text, fix=None, tools=()):
        """One check's verdict; `fix` follows ' -- '; `tools` are (tool, how) lines."""
        self.counts[verdict] += 1
        mark, colour = self.MARKS[verdict]
        body = f"{check}: {text}" + (f" -- {fix}" if fix else "")
        self.say(paint(mark, colour) + " " + body, plain_length=len(mark) + 1)
        for tool, how in tools:
            self.say(f"{'':5}{tool + ':':11}{how}", indent=16)

    def say(self, text, indent=5, plain_length=None):
        """Print text wrapped to the width, never cut (long words are split)."""
        colour_extra = len(text) - len(strip_colour(text))
        lines = textwrap.wrap(strip_colour(text), self.width, subsequent_indent=" " * indent,
                              break_on_hyphens=False) or [""]
        if colour_extra:                              # re-paint the verdict mark only
            lines[0] = text[:colour_extra + (plain_length or 0)] + lines[0][plain_length or 0:]
        print("\n".join(lines), flush=True)

    def exit_code(self):
        """0 if no check failed, else 1."""
        return 1 if self.counts["FAIL"] else 0


def report_width():
    """100 columns, or more when the terminal says it is wider."""
    if sys.stdout.isatty():
        return max(100, shutil.get_terminal_size((100, 24)).columns)
    return 100


def strip_colour(text):
    """The text without ANSI colour codes."""
    return re.sub(r"\033\[[0-9;]*m", "", text)


# Reading files: PEM or DER, certificates or keys, with one clear line for
# each mistake a user can make (missing, a folder, unreadable, garbage).

def read_bytes(path, what, flag):
    """The contents of a file the user named, or a CheckError saying why not."""
    if os.path.isdir(path):
        raise CheckError("bad file", f"{what} {path!r} is a folder, not a file -- fix {flag}")
    if not os.path.exists(path):
        raise CheckError("missing file", f"{what} {path!r} not found -- fix {flag}")
    try:
        with open(path, "rb") as f:
            data = f.read(10_000_001)
    except OSError as exc:
        raise CheckError("unreadable file", f"{what} {path!r}: {exc.strerror} -- check its "
                         f"permissions (ls -l {shlex.quote(path)})") from None
    if len(data) > 10_000_000:
        raise CheckError("bad file", f"{what} {path!r} is over 10 MB, too big for a "
                         f"certificate or key file -- fix {flag}")
    return data


def pem_blocks(data):
    """The PEM blocks in a file, as (label, text of the block) pairs."""
    text = data.decode("ascii", "replace")
    return [(m.group(1), m.group(0) + "\n") for m in
            re.finditer(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", text, re.S)]


def run_openssl(args, input=None, timeout=15):
    """Run the openssl binary; return (exit code, stdout + stderr)."""
    try:
        # No terminal: openssl asks for a passphrase on /dev/tty, which would hang us.
        done = subprocess.run(["openssl"] + args, input=input or "", capture_output=True,
                              text=True, timeout=timeout, errors="replace", start_new_session=True)
    except FileNotFoundError:
        raise CheckError("missing tool", "the openssl command is not installed -- install it "
                         "(apt-get install openssl, brew install openssl)") from None
    except subprocess.TimeoutExpired:
        return 124, f"openssl {args[0]} took more than {timeout} s"
    return done.returncode, done.stdout + done.stderr


def der_to_pem(path, kind):
    """Convert a DER certificate ('x509') or key ('pkey') to PEM text, or None."""
    passin = ["-passin", "pass:"] if kind == "pkey" else []       # never prompt
    code, out = run_openssl([kind, "-inform", "DER", "-in", path, "-outform", "PEM"] + passin)
    label = "CERTIFICATE" if kind == "x509" else "PRIVATE KEY"
    return out if code == 0 and f"-----BEGIN {label}" in out else None


def load_certificates(path, what, flag, report, tmp):
    """Read a certificate file (PEM or DER); report how it parsed.

    Returns (certs, pem_path, key_block): pem_path is the file itself, or a
    PEM copy in `tmp` when the file is DER; key_block is a private key found
    in the same PEM file, if any. Returns None when nothing in it is usable.
    """
    data = read_bytes(path, what, flag)
    blocks = pem_blocks(data)
    name = os.path.basename(path)
    if blocks:
        form, pems = "PEM", [b for label, b in blocks if label in ("CERTIFICATE", "TRUSTED CERTIFICATE")]
    else:
        form, pem = "DER", der_to_pem(path, "x509")
        pems = [pem] if pem else []
    if not pems:
        labels = sorted({label for label, _ in blocks})
        report.line("FAIL", f"parse {name}", *not_a_certificate(path, what, flag, labels, data))
        return None
    certs = [read_certificate(pem) for pem in pems]
    if None in certs:
        report.line("FAIL", f"parse {name}", f"{what} {path}: block {certs.index(None) + 1} is "
                    f"not a valid certificate (openssl x509 cannot read it)",
                    f"get an intact copy of {path} from whoever issued it")
        return None
    pem_path = path
    key_block = next((b for label, b in blocks if label.endswith("PRIVATE KEY")), None)
    leaf = certs[0]
    summary = (f"{form}, {len(certs)} certificate{'s' * (len(certs) > 1)}"
               f"{', the first' if len(certs) > 1 else ''}: {leaf.subject or '(empty subject)'}, "
               f"issued by {leaf.issuer}"
               + (f", X.509 v{leaf.version} (no extensions)" if leaf.version == 1 else "")
               + (", and a private key" if key_block else ""))
    if form == "DER":
        pem_path = os.path.join(tempfile.mkdtemp(dir=tmp), name)    # same name, PEM inside
        with open(pem_path, "w") as f:
            f.write(pems[0])
        out = shlex.quote(os.path.splitext(path)[0] + ".pem")
        report.line("FAIL", f"parse {name}", summary + "; client.py, Python requests, Node and "
                    "nginx read only PEM (the later checks use a PEM copy)",
                    f"convert it: openssl x509 -inform DER -in {shlex.quote(path)} -out {out}",
                    tools=[("curl", f"--cert-type DER reads it as it is (for --cert, not --cacert)")]
                    if flag == "--cert" else ())
    else:
        report.line("ok", f"parse {name}", summary)
    return certs, pem_path, key_block


def not_a_certificate(path, what, flag, labels, data):
    """(why, fix) for a file that holds no certificate."""
    if any("PRIVATE KEY" in label for label in labels):
        return (f"{path} holds a private key, not a certificate",
                f"pass the certificate with {flag} (and the key with --key)")
    if "CERTIFICATE REQUEST" in labels or "NEW CERTIFICATE REQUEST" in labels:
        return (f"{path} holds a certificate signing request (CSR), not a certificate",
                f"have the CA sign it (openssl x509 -req -in {shlex.quote(path)} -CA ca.crt "
                f"-CAkey ca.key ...), then pass the result with {flag}")
    if path.lower().endswith((".p12", ".pfx")):
        return (f"{path} looks like a PKCS#12 bundle",
                f"extract the certificate: openssl pkcs12 -in {shlex.quote(path)} -clcerts -nokeys "
                f"-out cert.pem (and the key: -nocerts -noenc -out key.pem)")
    found = f"PEM blocks {', '.join(labels)}" if labels else (
        "no PEM block, and it is not a DER certificate" if data.strip() else "nothing (empty)")
    return (f"{path} is not a certificate: it holds {found}",
            f"fix {flag}: a certificate file starts with -----BEGIN CERTIFICATE-----")


def read_certificate(pem):
    """Read one PEM certificate's fields with the openssl binary (or None)."""
    code, out = run_openssl(
        ["x509", "-noout", "-subject", "-issuer", "-dates", "-pubkey", "-nameopt", "RFC2253",
         "-ext", "subjectAltName,extendedKeyUsage,basicConstraints,keyUsage,"
                 "subjectKeyIdentifier,authorityKeyIdentifier",
         "-text", "-certopt", "no_header,no_serial,no_signame,no_validity,no_subject,"
         "no_issuer,no_extensions,no_sigdump,no_aux"], input=pem)
    if code != 0:
        return None
    fields, extensions, current = {}, {}, None
    for line in out.splitlines():
        key, eq, value = line.partition("=")
        if eq and key in ("subject", "issuer", "notBefore", "notAfter"):
            fields[key] = value.strip()
        elif line.startswith("X509v3 "):            # an extension's name, e.g.
            current = line[7:].split(":")[0]        # "X509v3 Key Usage: critical"
            extensions[current] = []
        elif line.startswith("    ") and not line.startswith("     ") and current:
            extensions[current] += [v.strip() for v in line.split(",")]
        else:
            current = None
    version = re.search(r"Version: (\d+)", out)
    key_type = re.search(r"Public Key Algorithm: (\S+)", out)
    bits = re.search(r"\((\d+) bit\)", out)
    return Cert(pem, fields.get("subject", ""), fields.get("issuer", ""),
                to_seconds(fields.get("notBefore")), to_seconds(fields.get("notAfter")),
                int(version.group(1)) if version else 3, key_type.group(1) if key_type else "?",
                int(bits.group(1)) if bits else None, extensions, public_key(out))


def public_key(openssl_output):
    """The PEM public key block in openssl's output ('' if none)."""
    m = re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", openssl_output, re.S)
    return m.group(0) if m else ""


def to_seconds(openssl_date):
    """'Nov 28 00:02:55 2026 GMT' as seconds since the epoch (None if absent)."""
    try:
        return ssl.cert_time_to_seconds(openssl_date)
    except (TypeError, ValueError):
        return None


def describe_key_type(key_type, bits):
    """'RSA 2048-bit', 'EC 256-bit' (from openssl's algorithm names)."""
    kind = {"rsaEncryption": "RSA", "id-ecPublicKey": "EC", "ED25519": "Ed25519",
            "ED448": "Ed448", "dsaEncryption": "DSA"}.get(key_type, key_type)
    return f"{kind} {bits}-bit" if bits else kind


def load_key(path, report, tmp, key_block=None, cert_path=None):
    """Read a private key (PEM or DER; or the one inside the cert file);
    report how it parsed. Returns (pem_path, key type, bits, public key) or None."""
    if path is None:
        if key_block is None:
            report.line("FAIL", "parse key", f"no --key given, and {cert_path} holds no "
                        f"private key", "pass the key too: --key client.key")
            return None
        data, path, where = key_block.encode(), cert_path, "the private key in it: "
    else:
        data, where = read_bytes(path, "private key", "--key"), ""
    name = os.path.basename(path)
    blocks = pem_blocks(data)
    labels = sorted({label for label, _ in blocks})
    # PEM says so in its label or header; DER (PKCS#8) by its encryption OID,
    # PKCS#5 PBES (1.2.840.113549.1.5) or PKCS#12 PBE (1.2.840.113549.1.12.1).
    if ("ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in data
            or (not blocks and (b"\x2a\x86\x48\x86\xf7\x0d\x01\x05" in data[:64]
                                or b"\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x01" in data[:64]))):
        plain = shlex.quote(os.path.splitext(path)[0] + "-plain.key")
        form = "PEM" if blocks else "DER"
        report.line("FAIL", f"parse {name}", f"{where}{form}, encrypted with a passphrase; "
                    f"client.py never prompts for one", f"decrypt a copy (keep it 0600): "
                    f"openssl pkey {'' if blocks else '-inform DER '}-in {shlex.quote(path)} "
                    f"-out {plain}",
                    tools=[("curl", "--key KEY --pass PASSPHRASE"),
                           ("Node", "tls options {key, passphrase}"),
                           ("nginx", "proxy_ssl_password_file FILE; (one passphrase a line)"),
                           ("requests", "cannot use an encrypted key: decrypt it as above")])
        return None
    if blocks:
        form = "PEM"
        pem = next((b for label, b in blocks if label.endswith("PRIVATE KEY")), None)
    else:
        form, pem = "DER", der_to_pem(path, "pkey")
    if pem is None:
        if "CERTIFICATE" in labels:
            why, fix = f"{path} holds a certificate, not a private key", "pass the key with --key"
        else:
            why = f"{path} is not a private key: it holds " + (
                f"PEM blocks {', '.join(labels)}" if labels else "no PEM block, and it is not a DER key")
            fix = "fix --key: a key file starts with -----BEGIN PRIVATE KEY----- (or RSA/EC ...)"
        report.line("FAIL", f"parse {name}", why, fix)
        return None
    code, out = run_openssl(["pkey", "-pubout", "-text_pub"], input=pem)
    if code != 0:
        report.line("FAIL", f"parse {name}", f"{where}openssl pkey cannot read it "
                    f"({last_error_line(out)})", "get an intact copy of the key")
        return None
    text = out.split("-----END PUBLIC KEY-----")[-1]
    key_type = "rsaEncryption" if "Modulus" in text else ("id-ecPublicKey" if "ASN1 OID" in text
                                                           else (text.split() or ["?"])[0].upper())
    bits = re.search(r"\((\d+) bit\)", out)
    bits = int(bits.group(1)) if bits else None
    pem_path = os.path.join(tempfile.mkdtemp(dir=tmp), name)
    with open(os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(pem)
    what = f"{where}{form}, {describe_key_type(key_type, bits)} private key, not encrypted"
    mode = os.stat(path).st_mode & 0o777
    if form == "DER":
        out_path = shlex.quote(os.path.splitext(path)[0] + ".pem")
        report.line("FAIL", f"parse {name}", what + "; client.py, requests, Node and nginx read "
                    "only PEM (the later checks use a PEM copy)",
                    f"convert it: (umask 077; openssl pkey -inform DER -in {shlex.quote(path)} "
                    f"-out {out_path})", tools=[("curl", "--key-type DER reads it as it is")])
    elif mode & 0o077:
        report.line("warn", f"parse {name}", f"{what}, but readable by other users "
                    f"(mode {mode:04o})", f"chmod 600 {shlex.quote(path)}")
    else:
        report.line("ok", f"parse {name}", what)
    return pem_path, key_type, bits, public_key(out)


def last_error_line(output):
    """The gist of an openssl error: its last line that says something."""
    lines = [l for l in output.strip().splitlines() if l.strip()]
    return (lines[-1].split(":")[-1] if lines and "error:" in lines[-1] else
            lines[-1] if lines else "no output").strip()


# The checks on a client certificate. Each takes what the files gave and
# prints its line(s).

def check_key_match(cert_path, key_path, cert, key_info, report):
    """Does the key belong to the certificate? Python's ssl and openssl both say."""
    # Python: load_cert_chain checks the pair, in a context we then throw away.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert_path, key_path)
        python = "Python ssl loads the pair"
    except ssl.SSLError as exc:
        python = f"Python ssl: {exc.reason or exc}"
    # openssl: the public key in the certificate (x509 -pubkey) equals the one
    # derived from the key (pkey -pubout), both read when the files were parsed.
    same = bool(cert.public_key) and cert.public_key == key_info[3]
    openssl_says = "openssl: same public key" if same else "openssl: the public keys differ"
    if same and "KEY_VALUES_MISMATCH" not in python:
        report.line("ok", "key match", f"the key belongs to the certificate ({python}; "
                    f"{openssl_says}, {describe_key_type(key_info[1], key_info[2])})")
        return True
    report.line("FAIL", "key match", f"the key is not the certificate's ({python}; {openssl_says})",
                "find the key the CSR was made with: its 'openssl pkey -pubout -in KEY' "
                "must equal 'openssl x509 -noout -pubkey -in CERT'")
    return False


def check_dates(path, cert, role, report, renew=None, now=None):
    """notBefore/notAfter of one certificate, with the days left; `renew`
    is the command that renews it, when we know one."""
    now = now or time.time()
    label = cert.subject if path == "server" else f"{os.path.basename(path)} ({cert.subject})"
    end = time.strftime("%Y-%m-%d", time.gmtime(cert.not_after))
    days = int((cert.not_after - now) // 86400)
    renew = "renew it" + (f": {renew}" if renew else f": a new certificate for the same key from "
                                                    f"{cert.issuer}")
    if cert.not_before and cert.not_before > now:
        start = time.strftime("%Y-%m-%d %H:%M", time.gmtime(cert.not_before))
        report.line("FAIL", f"dates {role}", f"{label} is not valid before {start} UTC",
                    "check this machine's clock (date -u); if it is right, wait or reissue")
    elif days < 0:
        report.line("FAIL", f"dates {role}", f"{label} expired on {end}, {-days} days ago", renew)
    elif days < WARN_DAYS:
        report.line("warn", f"dates {role}", f"{label} expires on {end}, in {days} days", renew)
    else:
        report.line("ok", f"dates {role}", f"{label} valid until {end} ({days} days left)")


def renew_command(cert_path, key_path, ca_path, cas):
    """The openssl command that renews a certificate for the same key, when
    the CA's key sits next to the CA file (ca.crt -> ca.key), else None.
    A CA renewed this way keeps its name and key: what it signed stays valid."""
    ca_key = os.path.splitext(ca_path)[0] + ".key"
    q = shlex.quote
    new = q(os.path.splitext(cert_path)[0] + "-renewed.crt")
    if cert_path == ca_path:            # a CA renews itself: its own key signs
        key = ca_key if os.path.exists(ca_key) else "CA.key"
        return f"openssl x509 -in {q(ca_path)} -key {q(key)} -days 3650 -out {new}"
    if not key_path or not os.path.exists(ca_key):
        return None
    return (f"openssl x509 -x509toreq -in {q(cert_path)} -key {q(key_path)} -copy_extensions "
            f"copyall | openssl x509 -req -CA {q(ca_path)} -CAkey {q(ca_key)} -copy_extensions "
            f"copyall -days 365 -out {new}")


def issued(issuer, cert):
    """Could `issuer` have signed `cert`? Its name matches, and so does its key
    identifier when both carry one (two CAs may share a name, not a key)."""
    aki = [v.replace("keyid:", "") for v in cert.extensions.get("Authority Key Identifier", [])]
    ski = issuer.extensions.get("Subject Key Identifier", [])
    return issuer.subject == cert.issuer and (not aki or not ski or aki[0] == ski[0])


def issuer_of(cert, candidates):
    """The certificate among candidates that issued cert (or None)."""
    return next((c for c in candidates if c is not cert and issued(c, cert)), None)


def path_in_file(certs):
    """Follow issuers from the leaf through the cert file: the certificates in
    chain order, ending where the file has no issuer for the last one."""
    path = [certs[0]]
    while path[-1].subject != path[-1].issuer:
        nxt = issuer_of(path[-1], certs)
        if nxt is None or nxt in path:
            break
        path.append(nxt)
    return path


def find_nearby(issuer, folders, skip):
    """Look for the issuer's certificate in the files next to the user's
    (*.crt, *.pem, *.cer): a missing intermediate is usually there."""
    cn = common_name(issuer)
    for folder in dict.fromkeys(folders):
        try:
            names = sorted(os.listdir(folder))[:500]
        except OSError:
            continue
        for name in names:
            full = os.path.join(folder, name)
            if not name.endswith((".crt", ".pem", ".cer")) or os.path.abspath(full) in skip:
                continue
            try:
                with open(full, "rb") as f:
                    data = f.read(1 << 20)
            except OSError:
                continue
            for label, block in pem_blocks(data):
                # A cheap filter first: the CN's bytes appear in the DER as they are.
                if label != "CERTIFICATE" or cn.encode() not in pem_to_der(block):
                    continue
                found = read_certificate(block)
                if found and found.subject == issuer:
                    return full, found
    return None, None


def pem_to_der(block):
    """The DER bytes of a PEM block (empty if the base64 is broken)."""
    body = "".join(block.strip().splitlines()[1:-1])
    try:
        return binascii.a2b_base64(body)
    except binascii.Error:
        return b""


def common_name(dn):
    """The CN in an RFC 2253 name ('' if none)."""
    m = re.search(r"(?:^|,)CN=((?:[^,\\]|\\.)*)", dn)
    return m.group(1) if m else ""


def write_pems(certs, path):
    """Write certificates into one PEM file; return its path."""
    with open(path, "w") as f:
        f.write("".join(c.pem for c in certs))
    return path


def check_completeness(cert_path, certs, cas, ca_path, report, key=None):
    """The cert file must hold the leaf and every intermediate up to (not
    necessarily including) a CA in the CA file. Returns what it learned:
    ("complete" | "incomplete" | "other-ca" | "unknown", the file holding the issuer)."""
    name = os.path.basename(cert_path)
    path = path_in_file(certs)
    top = path[-1]
    unused = [c for c in certs if c not in path]
    extra = (f"; it also holds {len(unused)} certificate(s) not in this chain "
             f"({', '.join(c.subject for c in unused)}): remove them") if unused else ""
    in_ca = any(issued(c, top) for c in cas) or any(c.pem == top.pem for c in cas)
    if in_ca:
        steps = " -> ".join(c.subject for c in path)
        anchor = ("" if top.subject == top.issuer else
                  f" -> {top.issuer} (in {os.path.basename(ca_path)})")
        report.line("warn" if unused else "ok", "complete chain",
                    f"{name} holds {steps}{anchor}{extra}")
        return "complete", None
    if top.subject == top.issuer:               # the file holds its own root: another CA
        return "other-ca", cert_path
    skip = {os.path.abspath(cert_path), os.path.abspath(ca_path)}
    found_path, found = find_nearby(top.issuer, [os.path.dirname(cert_path) or ".",
                                                 os.path.dirname(ca_path) or "."], skip)
    if found is None:
        report.line("FAIL", "complete chain", f"{name} ends at {top.subject}, issued by "
                    f"{top.issuer}, which is neither in {name} nor in {os.path.basename(ca_path)} "
                    f"(and in no file next to them)",
                    f"if {top.issuer} is an intermediate CA, append its certificate: "
                    f"cat {shlex.quote(cert_path)} INTERMEDIATE.crt > chain.pem and use chain.pem; "
                    f"if it is another root CA, this certificate is from the wrong CA (see chain)")
        return "unknown", None
    code, _ = run_openssl(["verify", "-CAfile", ca_path, found_path])
    if found.subject == found.issuer or code != 0:
        return "other-ca", found_path          # not a gap in the file: the chain check says it
    chain = os.path.splitext(cert_path)[0] + "-chain.pem"
    q = shlex.quote
    report.line("FAIL", "complete chain", f"{name} is incomplete: it ends at {top.subject}, issued "
                f"by the intermediate CA {top.issuer}, which is in {found_path} (and chains to "
                f"{os.path.basename(ca_path)}); a peer that trusts only the root cannot link them",
                f"send the chain: cat {q(cert_path)} {q(found_path)} > {q(chain)}, then use it as "
                f"the certificate:", tools=chain_fix_tools(chain, key or "KEY"))
    return "incomplete", found_path


def chain_fix_tools(chain, key="KEY"):
    """How each tool presents a chain file (leaf first, then intermediates)."""
    return [("curl", f"--cert {chain} --key {key}"),
            ("client.py", f"--cert {chain} --key {key}"),
            ("requests", f"requests.get(url, cert=({chain!r}, {key!r}))"),
            ("Node", f"https.request(url, {{cert: fs.readFileSync({chain!r}), "
                     f"key: fs.readFileSync({key!r})}})"),
            ("nginx", f"proxy_ssl_certificate {chain}; proxy_ssl_certificate_key {key};")]


# `openssl verify` error codes we explain (X509_V_ERR_*, see `man openssl-verify`).
VERIFY_HINTS = {
    2: "see complete chain", 20: "see complete chain", 21: "see complete chain",
    18: "it is self-signed: have the CA sign it",
    19: "the chain ends at a root CA that the CA file does not hold: another CA issued it",
    7: "the signature does not match the CA's key, so another CA with the same name signed "
       "it: use the CA file that really issued this certificate",
    9: "see dates", 10: "see dates", 26: "see purpose",
}


# Strict-only verify errors (OpenSSL 3.0, X509_V_ERR_* 85-91) and the
# openssl.cnf line that avoids each; 92, the CA without keyUsage, has its own check.
STRICT_FIXES = {
    85: "authorityKeyIdentifier = keyid:always",
    86: "subjectKeyIdentifier = hash",
    89: "basicConstraints = critical, CA:TRUE",
    90: "authorityKeyIdentifier not marked critical",
    91: "subjectKeyIdentifier not marked critical",
}


def verify_hint(code, depth=None, subject=None):
    """Where to look, or what to change, for an openssl verify error code."""
    if code in VERIFY_HINTS:
        return VERIFY_HINTS[code]
    if code in STRICT_FIXES and depth is not None:
        which = "certificate" if depth == 0 else "CA certificate"
        return f"reissue the {which} {subject} with {STRICT_FIXES[code]} (see openssl.cnf)"
    if code in STRICT_FIXES:
        return "see chain, which names the certificate"
    return "see CA"


def openssl_verify(leaf, rest, ca_path, purpose, tmp, strict=True):
    """Run `openssl verify` on a leaf (+ untrusted intermediates); return
    (command shown to the user, None if OK else (code, depth, subject, message))."""
    leaf_path = write_pems([leaf], os.path.join(tmp, "verify-leaf.pem"))
    args = ["verify"] + (["-x509_strict"] if strict else []) + ["-purpose", purpose, "-CAfile", ca_path]
    if rest:
        args += ["-untrusted", write_pems(rest, os.path.join(tmp, "verify-rest.pem"))]
    shown = "openssl verify" + (" -x509_strict" if strict else "") + f" -purpose {purpose}"
    code, out = run_openssl(args + [leaf_path])
    if code == 0:
        return shown, None
    m = re.search(r"^(.*)\nerror (\d+) at (\d+) depth lookup: (.*)$", out, re.M)
    if not m:
        return shown, (0, 0, "?", last_error_line(out))
    return shown, (int(m.group(2)), int(m.group(3)), m.group(1).strip(), m.group(4).strip())


def check_chain(cert_path, certs, ca_path, completeness, report, tmp, role="client"):
    """openssl verify -x509_strict -purpose sslclient (or sslserver)."""
    name = os.path.basename(cert_path)
    purpose = "sslclient" if role == "client" else "sslserver"
    shown, error = openssl_verify(certs[0], certs[1:], ca_path, purpose, tmp)
    if error is None:
        report.line("ok", "chain", f"{name} verifies against {os.path.basename(ca_path)} "
                    f"({shown}: OK)")
        return True
    code, depth, subject, message = error
    said = f"{shown}: error {code} at depth {depth} ({subject}): {message}"
    state, found = completeness
    if code in (2, 20, 21) and state == "other-ca":
        report.line("FAIL", "chain", f"{said}. {name} was issued by another CA, "
                    f"{path_in_file(certs)[-1].issuer} (in {found}), not by the CA in "
                    f"{os.path.basename(ca_path)}: a peer that trusts that CA refuses it (unknown_ca)",
                    f"get a certificate signed by the CA the peer trusts, or (if you run the "
                    f"peer) add {found} to the CAs it trusts")
        return False
    hint = verify_hint(code, depth, subject)
    if code not in VERIFY_HINTS:            # a strict-only failure? ask again without -x509_strict
        _, lax = openssl_verify(certs[0], certs[1:], ca_path, purpose, tmp, strict=False)
        if lax is None:
            said += "; without -x509_strict openssl verify accepts it: only strict verifiers refuse it"
    report.line("FAIL", "chain", said, hint)
    return False


def check_purpose(cert, report, role="client", label="purpose"):
    """extendedKeyUsage (and keyUsage, basicConstraints) against the role."""
    want = "TLS Web Client Authentication" if role == "client" else "TLS Web Server Authentication"
    short = "clientAuth" if role == "client" else "serverAuth"
    other = "serverAuth" if role == "client" else "clientAuth"
    eku = cert.extensions.get("Extended Key Usage")
    ku = cert.extensions.get("Key Usage")
    basic = cert.extensions.get("Basic Constraints", [])
    if "CA:TRUE" in basic:
        report.line("FAIL", label, f"{cert.subject} is a CA certificate (CA:TRUE), not a "
                    f"{role} certificate", f"pass the {role}'s own certificate, issued by this CA")
        return
    ku_text = f", keyUsage {', '.join(ku)}" if ku else ""
    if ku is not None and "Digital Signature" not in ku:
        report.line("FAIL", label, f"keyUsage {', '.join(ku)} lacks digitalSignature, which "
                    f"a TLS {role} key needs to sign the handshake", f"reissue it with "
                    f"keyUsage = critical, digitalSignature")
    elif eku is None:
        other_role = "server" if role == "client" else "client"
        report.line("warn", label, f"no extendedKeyUsage{ku_text}: a certificate without one "
                    f"is valid for every purpose, as a {role} and also as a {other_role}; "
                    f"whoever holds its key can use it for both",
                    f"reissue it with extendedKeyUsage = {short}")
    elif want in eku or "Any Extended Key Usage" in eku:
        report.line("ok", label, f"extendedKeyUsage {', '.join(eku)}{ku_text}: fits a {role} "
                    f"certificate")
    else:
        this_is = " (a server certificate)" if "TLS Web Server Authentication" in eku else (
            " (a client certificate)" if "TLS Web Client Authentication" in eku else "")
        report.line("FAIL", label, f"extendedKeyUsage says {', '.join(eku)} only{this_is}, "
                    f"not {short}: a peer checking the purpose refuses it (as "
                    f"unsupported_certificate)", f"use a {role} certificate, with "
                    f"extendedKeyUsage = {short} (not {other}): issue one per role")


def identities(cert):
    """A certificate's identities as server.py spells them: typed SAN
    entries, or the CN when there is no SAN at all."""
    san = cert.extensions.get("Subject Alternative Name")
    if not san:
        cn = common_name(cert.subject)
        return [f"cn:{cn}"] if cn else []
    kinds = {"DNS": "dns", "URI": "uri", "IP Address": "ip", "email": "email"}
    result = []
    for entry in san:
        kind, _, value = entry.partition(":")
        if kind == "IP Address" and is_ip(value):  # openssl writes ::1 as 0:0:0:0:0:0:0:1
            value = str(ipaddress.ip_address(value))
        if kind in kinds:
            result.append(f"{kinds[kind]}:{value}")
    return result


def check_identity(cert, report):
    """What a server sees this client as (and --allow matches)."""
    names = identities(cert)
    if not names:
        report.line("warn", "identity", "no subjectAltName and no CN: a server has no name to "
                    "know this client by", "reissue it with a CN or a subjectAltName")
        return
    source = "its subjectAltName" if not names[0].startswith("cn:") else \
        "its CN, as it has no subjectAltName"
    uris = [n for n in names if n.startswith("uri:")]
    if len(uris) > 1:
        report.line("warn", "identity", f"{len(uris)} URI SANs ({', '.join(uris)}): not a valid "
                    f"SPIFFE identity, and server.py refuses it", "keep one URI SAN")
        return
    report.line("ok", "identity", f"a server knows this client as {', '.join(names)} (from "
                f"{source}; server.py's log and --allow use this spelling)")


def check_key_size(certs, key_info, report, role="client"):
    """RSA keys under 2048 bits are weak, and refused at OpenSSL's security level 2."""
    weak = []
    if key_info and key_info[1] == "rsaEncryption" and (key_info[2] or 0) < 2048:
        weak.append(f"the key ({key_info[2]} bits)")
    weak += [f"{c.subject}'s key ({c.key_bits} bits)" for c in certs[1 if key_info else 0:]
             if c.key_type == "rsaEncryption" and (c.key_bits or 0) < 2048]
    if weak:
        report.line("FAIL", "key size", f"RSA under 2048 bits: {', '.join(dict.fromkeys(weak))}; "
                    f"such keys can be factored, and OpenSSL at security level 2 (Debian, "
                    f"Ubuntu, Python's default ciphers) refuses them",
                    "make a new key and have the CA certify it: openssl genpkey -algorithm EC "
                    "-pkeyopt ec_paramgen_curve:P-256 -out new.key (or -algorithm RSA "
                    "-pkeyopt rsa_keygen_bits:2048), then a CSR: openssl req -new -key new.key "
                    "-subj '/CN=NAME' -out new.csr")
    else:
        kinds = [describe_key_type(key_info[1], key_info[2])] if key_info else []
        kinds += [describe_key_type(c.key_type, c.key_bits) for c in certs]
        report.line("ok", "key size", ", ".join(dict.fromkeys(kinds)) + ": strong enough")


def check_ca_file(ca_path, cas, relevant, report, v1_leaf=False):
    """The CA file must hold CA certificates, with the extensions a strict
    verifier wants. `relevant` are the ones that issued the user's chain (all
    of them when unknown); a big bundle gets one line, naming its problems."""
    name = os.path.basename(ca_path)
    if len(relevant) > 3:
        bad = [ca.subject for ca in relevant if ca_problem(ca, ca_path)]
        if not bad:
            report.line("ok", "CA", f"{name}: all {len(relevant)} certificates are CAs with "
                        f"keyUsage keyCertSign")
        else:
            report.line("warn", "CA", f"{name}: {len(bad)} of {len(relevant)} certificates lack "
                        f"CA:TRUE or keyUsage keyCertSign ({'; '.join(bad[:3])}"
                        f"{'; ...' if len(bad) > 3 else ''}): strict verifiers refuse chains "
                        f"through them (pass --cert to check the CA your certificate uses)")
        return
    for ca in relevant:
        problem = ca_problem(ca, ca_path, v1_leaf)
        if problem:
            report.line("FAIL", "CA", f"{ca.subject} in {name} {problem[0]}", problem[1])
        else:
            report.line("ok", "CA", f"{ca.subject} in {name}: CA:TRUE, keyUsage "
                        f"{', '.join(ca.extensions['Key Usage'])}")


def ca_problem(ca, ca_path, v1_leaf=False):
    """(why, fix) if a CA certificate would not vouch for anyone under strict rules, else None."""
    basic = ca.extensions.get("Basic Constraints", [])
    ku = ca.extensions.get("Key Usage")
    if "CA:TRUE" not in basic and ca.subject != ca.issuer:
        return ("is not a CA (no basicConstraints CA:TRUE): it cannot vouch for anyone",
                "pass the CA's certificate with --cacert (the issuer of your certificates)")
    if ku is not None and "Certificate Sign" in ku:
        return None
    key = os.path.splitext(ca_path)[0] + ".key"
    key = key if os.path.exists(key) else "CA.key"
    subj = "/" + "/".join(p.replace("/", "\\/") for p in reversed(re.split(r"(?<!\\),", ca.subject)))
    have = "no keyUsage" if ku is None else f"keyUsage {', '.join(ku)} without keyCertSign"
    return (f"has {have}: strict verifiers (Python 3.13's ssl.create_default_context(), "
            f"anything with VERIFY_X509_STRICT) refuse every chain through it"
            + ("; this, not the v1 leaf, is what strict checks reject" if v1_leaf else ""),
            f"reissue the CA with the same key and name, so existing certificates stay valid: "
            f"openssl req -x509 -new -key {shlex.quote(key)} -subj {shlex.quote(subj)} -days 3650 "
            f"-addext 'keyUsage=critical,keyCertSign,cRLSign' -out ca-new.crt")


# Strict X.509 as Python sees it: a real handshake, in memory. The server
# context demands a client certificate and trusts CA, with the flags
# Python 3.13's ssl.create_default_context() sets; the client presents
# CERT/KEY. A throw-away certificate stands in for the server's own. (Not
# the other way round: a client context checks what it is shown as a
# *server* certificate, and refuses a good clientAuth-only certificate with
# "unsuitable certificate purpose".)

def strict_flags():
    """VERIFY_X509_STRICT, plus VERIFY_X509_PARTIAL_CHAIN where this Python has it (3.10+)."""
    return ssl.VERIFY_X509_STRICT | getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)


def make_throwaway_server(tmp):
    """A self-signed EC certificate for localhost, valid one day: our stand-in server."""
    key, crt = os.path.join(tmp, "stand-in.key"), os.path.join(tmp, "stand-in.crt")
    code, out = run_openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                             "-nodes", "-keyout", key, "-out", crt, "-days", "1",
                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
    return (crt, key) if code == 0 else None


def handshake_in_memory(server_context, client_context):
    """Run a TLS handshake between two contexts through MemoryBIOs (no
    sockets); return the exception each side raised (None if it finished)."""
    c2s, s2c = ssl.MemoryBIO(), ssl.MemoryBIO()        # bytes client -> server, and back
    server = server_context.wrap_bio(c2s, s2c, server_side=True)
    client = client_context.wrap_bio(s2c, c2s, server_hostname="localhost")
    errors = {}
    for _ in range(10):                       # TLS 1.3 needs 2 flights each way, 1.2 needs 3
        for side, end in (("client", client), ("server", server)):
            if side in errors:
                continue
            try:
                end.do_handshake()
                errors[side] = None           # finished
            except ssl.SSLWantReadError:
                pass                          # waits for the other side's bytes
            except (ssl.SSLError, OSError) as exc:
                errors[side] = exc
        if len(errors) == 2 or errors.get("server"):
            break
    return errors.get("client"), errors.get("server")


def check_strict(cert_path, key_path, ca_path, report, tmp):
    """Python's own ssl, strict: does a server that trusts CA accept CERT/KEY?"""
    flags = "VERIFY_X509_STRICT" + (" | VERIFY_X509_PARTIAL_CHAIN" if hasattr(
        ssl, "VERIFY_X509_PARTIAL_CHAIN") else " (this Python has no VERIFY_X509_PARTIAL_CHAIN)")
    engine = f"Python {sys.version_info[0]}.{sys.version_info[1]} ssl, {ssl.OPENSSL_VERSION}, {flags}"
    stand_in = make_throwaway_server(tmp)
    if stand_in is None:
        report.line("warn", "strict", f"could not make a stand-in server certificate with "
                    f"openssl req, so no in-memory handshake ({engine})")
        return None
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*stand_in)
    server_context.verify_mode = ssl.CERT_REQUIRED        # demand a client certificate
    server_context.verify_flags |= strict_flags()
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(cafile=stand_in[0])
    try:
        server_context.load_verify_locations(cafile=ca_path)
        client_context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        report.line("FAIL", "strict", f"Python's ssl cannot load the files: {exc.reason or exc} "
                    f"({engine})", "see the checks above for the cause")
        return False
    client_error, server_error = handshake_in_memory(server_context, client_context)
    if server_error is None and client_error is None:
        report.line("ok", "strict", f"an in-memory handshake with a strict server that trusts "
                    f"{os.path.basename(ca_path)} accepts this client ({engine})")
        return True
    error = server_error or client_error
    why = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
    code = getattr(error, "verify_code", None)
    hint = verify_hint(code) if code else "see the checks above"
    report.line("FAIL", "strict", f"a strict server that trusts {os.path.basename(ca_path)} "
                f"refuses this client in an in-memory handshake: {why}"
                + (f" (verify error {code})" if code else "") + f" ({engine})", hint)
    return False


# With a URL: what the server really sends, checked as a server
# certificate, then a real request with client.py's own code.

def parse_url(url):
    """(host, port) of an https:// URL, or a CheckError."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise CheckError("bad URL", f"{url!r}: {exc} -- try https://localhost:3000/") from None
    if parts.scheme != "https" or not parts.hostname:
        raise CheckError("bad URL", f"{url!r} is not an https:// URL -- try "
                         f"https://{parts.netloc or 'localhost:3000'}/")
    return parts.hostname, port


def is_ip(host):
    """True if host is an IP address rather than a DNS name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def why_no_chain(host, port, output):
    """(why, fix) when openssl s_client got no certificate from host:port."""
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror:
        return f"cannot resolve {host!r}", "fix the URL's host name"
    if "errno=111" in output:                   # ECONNREFUSED
        return f"nothing listens on {host}:{port}", "start the server, or fix the URL's port"
    return (f"openssl s_client got no certificate from {host}:{port}: {last_error_line(output)}",
            "is it a TLS server, and the right port?")


def fetch_server_chain(host, port, cert_path, key_path, chain_length=1):
    """Ask `openssl s_client -showcerts` what the server sends: its chain,
    and whether (and for which CA names) it requests a client certificate."""
    connect = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = ["s_client", "-connect", connect, "-showcerts", "-nameopt", "RFC2253"]
    args += ["-noservername"] if is_ip(host) else ["-servername", host]
    if cert_path and key_path:                 # so that the server logs an ordinary client
        args += ["-cert", cert_path, "-key", key_path]
        if chain_length > 1:                   # -cert sends only the file's first certificate
            args += ["-cert_chain", cert_path]
    code, out = run_openssl(args, input="", timeout=15)
    chain = [b for label, b in pem_blocks(out.encode()) if label == "CERTIFICATE"]
    names = []
    if "Acceptable client certificate CA names" in out:
        for line in out.split("Acceptable client certificate CA names\n", 1)[1].splitlines():
            if line.startswith(("Requested Signature", "Client Certificate Types", "---")):
                break
            names.append(line.strip())
    requests_cert = "Requested Signature Algorithms" in out
    return chain, names, requests_cert, out


def covers_host(cert, host):
    """Does the certificate's subjectAltName cover `host`? (a CN does not count)"""
    san = cert.extensions.get("Subject Alternative Name") or []
    if is_ip(host):
        want = ipaddress.ip_address(host)
        for entry in san:
            if entry.startswith("IP Address:"):
                try:
                    if ipaddress.ip_address(entry[len("IP Address:"):]) == want:
                        return True
                except ValueError:
                    pass
        return False
    host = host.lower().rstrip(".")
    for entry in san:
        if not entry.startswith("DNS:"):
            continue
        name = entry[4:].lower().rstrip(".")
        if name == host:
            return True
        # A wildcard stands for exactly one whole left-most label (RFC 6125 6.4.3).
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_server(url, ca_path, display_ca, client_certs, cert_path, key_path, report, tmp):
    """The server at URL: its chain, the CA names it requests, its name, and a request."""
    host, port = parse_url(url)
    pems, names, requests_cert, out = fetch_server_chain(host, port, cert_path, key_path,
                                                         len(client_certs))
    if not pems:
        report.line("FAIL", "server", *why_no_chain(host, port, out))
        return
    chain = [c for c in (read_certificate(p) for p in pems) if c]
    leaf = chain[0]
    steps = " <- ".join(f"{c.subject}" for c in chain)
    report.line("ok", "server sends", f"{len(chain)} certificate{'s' * (len(chain) > 1)}: {steps} "
                f"(the last one issued by {chain[-1].issuer}; from openssl s_client -showcerts)")
    if not requests_cert:
        report.line("warn", "server asks", f"{host}:{port} did not request a client certificate "
                    f"in this handshake: it is not doing mTLS here")
    elif names:
        # A server that names CAs accepts certificates issued (at some depth) by one of them.
        ours = {c.issuer for c in client_certs} | {c.subject for c in client_certs}
        fits = not client_certs or any(n in ours for n in names)
        report.line("ok" if fits else "FAIL", "server asks", f"a client certificate from: "
                    f"{', '.join(names)} (Acceptable client certificate CA names)" + (
                    "" if fits else f"; yours was issued by {client_certs[-1].issuer}"),
                    None if fits else f"get a client certificate from {names[0]}")
    else:
        report.line("ok", "server asks", "a client certificate, naming no CA (a Python server "
                    "cannot send CA names): clients and browsers must choose the right one "
                    "themselves")
    check_dates("server", leaf, "server", report)
    check_purpose(leaf, report, role="server", label="server purpose")
    if covers_host(leaf, host):
        report.line("ok", "hostname", f"the subjectAltName of {leaf.subject} covers {host}")
    else:
        san = ", ".join(leaf.extensions.get("Subject Alternative Name") or []) or "none"
        cn_note = (f"; its CN matches, but a CN alone does not count: RFC 6125 deprecates it, "
                   f"and Python with hostname_checks_common_name = False refuses it"
                   if common_name(leaf.subject).lower() == host.lower() else "")
        report.line("FAIL", "hostname", f"the server certificate's subjectAltName ({san}) does not "
                    f"cover {host}{cn_note}", f"connect with a name it lists, or reissue it with "
                    f"subjectAltName = {'IP' if is_ip(host) else 'DNS'}:{host}")
    shown, error = openssl_verify(leaf, chain[1:], ca_path, "sslserver", tmp)
    if error is None:
        report.line("ok", "server chain", f"verifies against {os.path.basename(ca_path)} ({shown}: OK)")
    else:
        code, depth, subject, message = error
        said = f"{shown}: error {code} at depth {depth} ({subject}): {message}"
        if code == 19:
            report.line("FAIL", "server chain", f"{said}: the server's chain ends at "
                        f"{chain[-1].subject}, a root CA that {os.path.basename(display_ca)} does "
                        f"not hold", f"if {chain[-1].subject} is the CA you mean to trust, trust it "
                        f"(and not {os.path.basename(display_ca)}):",
                        tools=trust_ca_tools("SERVER-CA.crt"))
        elif code in (2, 20, 21):
            report.line("FAIL", "server chain", f"{said}. Either the server sends its leaf "
                        f"without the intermediate CA that issued it (it must send leaf + "
                        f"intermediates, one chain file as its certificate), or "
                        f"{chain[-1].issuer} is not the CA you trust", "the server's operator "
                        "must serve the chain file; or, if the server belongs to another CA, "
                        "trust that CA instead")
        else:
            report.line("FAIL", "server chain", said, verify_hint(code, depth, subject))
    check_request(url, ca_path, cert_path, key_path, report)


def trust_ca_tools(ca):
    """How each tool trusts a CA for the server's certificate."""
    return [("curl", f"--cacert {ca}"), ("client.py", f"--cacert {ca}"),
            ("requests", f"requests.get(url, verify={ca!r})"),
            ("Node", f"https.request(url, {{ca: fs.readFileSync({ca!r})}})"),
            ("nginx", f"proxy_ssl_trusted_certificate {ca}; proxy_ssl_verify on;")]


def check_request(url, ca_path, cert_path, key_path, report):
    """A real request, with client.py's make_client_context and fetch."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import client                                # client.py, next to this file
    try:
        context = client.make_client_context(ca_path, cert_path, key_path)
        status, body = client.fetch(url, context, timeout=10.0)
    except client.Failure as failure:
        report.line("FAIL", "request", f"client.py (make_client_context, fetch) says: "
                    f"{failure.label}: {failure.message}")
        return
    text = " ".join(body.split())[:60]
    if 200 <= status < 300:
        report.line("ok", "request", f"client.py (make_client_context, fetch): HTTP {status}, "
                    f"{text!r}")
    elif status == 403:
        report.line("FAIL", "request", f"client.py: HTTP 403 {text!r}: the server authenticated "
                    f"this client but does not allow it", "ask its operator to allow the identity "
                    "shown above (server.py: --allow)")
    else:
        report.line("FAIL", "request", f"client.py: HTTP {status} {text!r}", "see the server's log")


def check_certificates(cacert, cert, key, url, width=None):
    """Check a user's CA, certificate and key (and the server at url):
    one line per check; return 0 if nothing failed, 1 if something did,
    2 for a mistake that stops every check (a missing file, say)."""
    report = Report(width)
    try:
        with tempfile.TemporaryDirectory(prefix="mtls-check-") as tmp:
            run_checks(cacert, cert, key, url, report, tmp)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except BrokenPipeError:            # output piped into `head`, say: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    c = report.counts
    report.say(f"summary: {c['FAIL']} FAIL, {c['warn']} warn, {c['ok']} ok")
    return report.exit_code()


def run_checks(cacert, cert, key, url, report, tmp):
    """Every check, in the order a failing handshake would meet them."""
    if not cacert:
        raise CheckError("bad option", "--check needs --cacert CA, the CA that issued the "
                         "certificates -- e.g. --check --cacert certs/ca.crt")
    if key and not cert:
        raise CheckError("bad option", "--key needs --cert -- pass both, e.g. --cert "
                         "certs/client.crt --key certs/client.key")
    for path, what, flag in ((cacert, "CA certificate", "--cacert"), (cert, "certificate", "--cert"),
                             (key, "private key", "--key")):
        if path:
            read_bytes(path, what, flag)        # every file mistake first, as one line
    if url:
        parse_url(url)
    _, version = run_openssl(["version"])
    report.say(f"Checking with the openssl binary ({version.split(' (')[0].strip()}) and "
               f"Python {sys.version.split()[0]}'s ssl ({ssl.OPENSSL_VERSION}).")
    loaded_ca = load_certificates(cacert, "CA", "--cacert", report, tmp)
    cas, ca_pem = (loaded_ca[0], loaded_ca[1]) if loaded_ca else ([], None)
    loaded = load_certificates(cert, "certificate", "--cert", report, tmp) if cert else None
    key_info = None
    if loaded:
        key_info = load_key(key, report, tmp, key_block=loaded[2], cert_path=cert)
    # The CA certificates that issued the chain in the cert file (all, if none did).
    anchors = [c for c in cas if loaded and any(issued(c, x) for x in loaded[0])]
    if ca_pem:
        check_ca_file(cacert, cas, anchors or cas, report,
                      v1_leaf=bool(loaded) and loaded[0][0].version == 1)
    if loaded:
        certs, cert_pem, _ = loaded
        if key_info and not check_key_match(cert_pem, key_info[0], certs[0], key_info, report):
            key_info = None                 # a handshake with the wrong key proves nothing
        for c in path_in_file(certs):
            renew = renew_command(cert, key, cacert, cas) if c is certs[0] and key_info else None
            check_dates(cert, c, "client" if c is certs[0] else "intermediate", report, renew)
    if ca_pem and len(anchors or cas) <= 3:
        for ca in anchors or cas:
            check_dates(cacert, ca, "CA", report, renew_command(cacert, None, cacert, cas)
                        if len(cas) == 1 else None)
    elif ca_pem:                            # a bundle: one line, naming what is out of date
        late = [ca.subject for ca in cas if (ca.not_after or 0) < time.time() + WARN_DAYS * 86400]
        report.line("warn" if late else "ok", "dates CA", f"{os.path.basename(cacert)}: " + (
            f"{len(late)} of {len(cas)} certificates expired or expire within {WARN_DAYS} days "
            f"({'; '.join(late[:3])}{'; ...' if len(late) > 3 else ''}): harmless unless your "
            f"chain needs one of them" if late else
            f"all {len(cas)} certificates are valid for {WARN_DAYS} days or more"))
    if loaded and ca_pem:
        certs, cert_pem, _ = loaded
        completeness = check_completeness(cert, certs, cas, cacert, report, key)
        check_chain(cert, certs, ca_pem, completeness, report, tmp)
        if key_info:
            check_strict(cert_pem, key_info[0], ca_pem, report, tmp)
        check_purpose(certs[0], report)
        check_identity(certs[0], report)
        check_key_size(path_in_file(certs), key_info, report)
    if url and ca_pem:
        report.say(f"The server at {url}:")
        chain = path_in_file(loaded[0]) if loaded else []
        cert_pem, key_pem = (loaded[1], key_info[0]) if loaded and key_info else (None, None)
        check_server(url, ca_pem, cacert, chain, cert_pem, key_pem, report, tmp)


# --- main ----------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line, like every other error here."""

    def error(self, message):
        self.exit(2, f"error: {message} -- see {self.prog} --help\n")


def parse_args(argv):
    """Read the command line."""
    names = [s.name for s in SCENARIOS]
    p = ArgumentParser(description="Run the mTLS walkthrough: success and failures, explained.")
    p.add_argument("names", nargs="*", metavar="SCENARIO", help="scenarios to run (see --list)")
    p.add_argument("--all", action="store_true", help="run every scenario")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--certs", default=os.path.join(HERE, "certs"),
                   help="certificates folder (default: certs/ next to this script)")
    p.add_argument("--no-curl", action="store_true", help="do not run the curl commands")
    p.add_argument("--trace", action="store_true",
                   help="also show each handshake's TLS messages (openssl s_client -trace)")
    # wiring for --check (the lead merges this into the real option parsing)
    p.add_argument("--check", action="store_true", help="check your own certificates (and a server)")
    p.add_argument("--cacert", metavar="CA", help="with --check: the CA that must vouch for them")
    p.add_argument("--cert", metavar="CERT", help="with --check: your client certificate (chain)")
    p.add_argument("--key", metavar="KEY", help="with --check: its private key")
    args = p.parse_args(argv)
    urls = [n for n in args.names if "://" in n]          # wiring for --check
    if args.check:                                        # wiring for --check
        if len(urls) > 1 or len(urls) != len(args.names):
            p.error("--check takes at most one argument, the server's https:// URL")
        args.url = urls[0] if urls else None
        return args
    if urls:                                              # wiring for --check
        p.error(f"a URL ({urls[0]}) is only valid with --check")
    unknown = [n for n in args.names if n not in names]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}: choose from {', '.join(names)} (see --list)")
    return args


def main(argv=None):
    """Run the chosen scenarios and print the table; exit 0 if all matched."""
    args = parse_args(argv)
    if args.check:                                        # wiring for --check
        return check_certificates(args.cacert, args.cert, args.key, args.url)
    if args.list:
        width = max(len(s.name) for s in SCENARIOS)
        for s in SCENARIOS:
            print(f"{s.name:{width}}  {s.title}")
        return 0
    chosen = [s for s in SCENARIOS if args.all or s.name in (args.names or ARTICLE_CASES)]
    certs = os.path.relpath(os.path.abspath(args.certs), HERE)
    if certs.startswith(".."):
        certs = os.path.abspath(args.certs)
    only_article = all(s.name in ARTICLE_CASES for s in chosen)
    ensure_certificates(certs, "certs" if only_article else "scenarios")
    use_curl = not args.no_curl and shutil.which("curl") is not None

    servers, results = {}, []
    try:
        for scenario in chosen:
            server_args = tuple(server_command(scenario, certs))
            if server_args not in servers:
                servers[server_args] = ServerProcess(server_args)
            results.append(run_case(scenario, servers[server_args], certs, use_curl, args.trace))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers")
        return 130
    except BrokenPipeError:            # output piped into `head`, say: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        for server in servers.values():
            server.stop()
    print_table(results)
    matched = sum(r.ok for r in results)
    print(f"\n{matched} of {len(results)} cases behaved as expected.")
    return 0 if matched == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
