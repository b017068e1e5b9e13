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
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}: choose from {', '.join(names)} (see --list)")
    return args


def main(argv=None):
    """Run the chosen scenarios and print the table; exit 0 if all matched."""
    args = parse_args(argv)
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
