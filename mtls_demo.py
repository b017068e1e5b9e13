#!/usr/bin/env python3
"""mtls_demo.py: the mTLS story, run for real and explained.

Builds the certificates if they are missing (make), starts server.py as its
own process, then runs each case the way a student would type it: the exact
command, its real output, the line the server logged about it, and why it
happened. It ends with a table of what each case should do and what it did,
and exits 0 only if every case matched.

Run:   python3 mtls_demo.py                    the three basic cases
       python3 mtls_demo.py NAME [NAME ...]    these scenarios / exhibits, in that order
       python3 mtls_demo.py --all              every failure-gallery scenario (and successes)
       python3 mtls_demo.py --lesson --pause   the classroom path (six cases)
       python3 mtls_demo.py --mistakes         the mistakes gallery (mistakes/gallery.py)
       python3 mtls_demo.py --list             every name, one line each
       python3 mtls_demo.py --check --cacert CA [--cert C [--key K]] [URL]
       python3 mtls_demo.py --help             all options, with examples

Reads:  certs/ (made by the Makefile); runs server.py, client.py, curl and
        openssl as subprocesses, exactly as shown on screen, from the folder
        you run it in (so every printed command pastes as it is).

Reading order (banners): the scenarios (data), the lesson (data), terminal
output, paths and commands, running the servers, running one case, TLS 1.2,
the handshake ladder, the relay, the Markdown table, the mistakes gallery,
the command line, checking your own certificates, main.
"""

import sys

# Before anything newer than Python 3.6 runs: one line, not a traceback.
if sys.version_info < (3, 9):
    sys.stderr.write("error: unsupported Python: mtls_demo.py needs Python 3.9+ (this is %d.%d) "
                     "-- run it with python3.9 or newer\n" % sys.version_info[:2])
    sys.exit(2)

import argparse                # noqa: E402  (after the version check)
import difflib                 # noqa: E402
import importlib               # noqa: E402
import os                      # noqa: E402
import queue                   # noqa: E402
import re                      # noqa: E402
import select                  # noqa: E402
import shlex                   # noqa: E402
import shutil                  # noqa: E402
import signal                  # noqa: E402
import socket                  # noqa: E402
import ssl                     # noqa: E402
import subprocess              # noqa: E402
import textwrap                # noqa: E402
import threading               # noqa: E402
import time                    # noqa: E402
from collections import namedtuple   # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# --- the scenarios -------------------------------------------------------
#
# A scenario is one client request against one server configuration.
# {certs} in an argument stands for the certificates folder, {url} for the
# server's address. `expect` is the client's outcome: "ok" (it printed the
# greeting), "HTTP 403 Forbidden", or the label client.py prints after
# "error:". `server_says` is a phrase of the server's log line for the
# connection. `does`, `cause` and `fix` are the short cells of the Markdown
# table. `tls12` is what the same client meets when limited to TLS 1.2:
# (who sends the fatal alert, its name, curl's exit code), measured with
# OpenSSL 3.0 and curl 7.88. `strict`: the case relies on OpenSSL 3.0's
# strict RFC 5280 checks (a CA without keyUsage), so it is skipped on older ones.

Scenario = namedtuple("Scenario", "name title server client expect server_says why "
                      "curl does cause fix tls12 strict",
                      defaults=(None, "", "", "", None, False))

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
              "--cert", "{certs}/client.crt", "{url}"],
        does="sends its certificate, trusts my-ca", cause="both certificates check out",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "no-cacert", "The client does not trust the server's CA (no --cacert)",
        DEFAULT_SERVER, ["--cert", "{certs}/client.crt", "--key", "{certs}/client.key", "{url}"],
        "server not trusted", "client does not trust our certificate",
        "Without --cacert the client trusts only the system's CAs, and my-ca is not one "
        "of them, so it refuses the server's certificate and aborts before sending anything. "
        "The fix is on the client: trust the CA that signed the server (--cacert certs/ca.crt).",
        curl=["--key", "{certs}/client.key", "--cert", "{certs}/client.crt", "{url}"],
        does="leaves out `--cacert`", cause="the client does not trust my-ca",
        fix="`--cacert certs/ca.crt`", tls12=("client", "unknown_ca", 60)),
    Scenario(
        "no-client-cert", "The client sends no certificate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "{url}"],
        "certificate required", "no client certificate",
        "The server asked for a certificate (CertificateRequest) and got an empty one, so it "
        "ended the connection with the alert certificate_required. Under TLS 1.3 the client "
        "has already finished its half of the handshake by then, so it learns this only "
        "when it reads the response: that is why curl reports it from SSL_read.",
        curl=["--cacert", "{certs}/ca.crt", "{url}"],
        does="leaves out `--cert` and `--key`", cause="the server requires a client certificate",
        fix="`--cert certs/client.crt --key certs/client.key`",
        tls12=("server", "handshake_failure", 35)),
    Scenario(
        "other-ca", "A client certificate from another CA, claiming to be my-client",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/rogue-client.crt",
                         "--key", "{certs}/rogue-client.key", "{url}"],
        "unknown CA", "signed by an unknown CA",
        "Anyone can make a CA and write CN=my-client into a certificate. The server trusts "
        "only signatures by my-ca (--ca), cannot build a chain to it, and answers with the "
        "alert unknown_ca. The name inside a certificate is worth exactly as much as its issuer.",
        does="shows a certificate from rogue-ca", cause="not signed by the server's CA",
        fix="a certificate signed by my-ca", tls12=("server", "unknown_ca", 35)),
    Scenario(
        "expired-client", "The client's certificate expired in 2020",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/expired-client.crt",
                         "--key", "{certs}/client.key", "{url}"],
        "certificate expired", "has expired",
        "Every certificate carries notBefore/notAfter dates, checked against the server's "
        "clock: same key and name, but past dates, so the server sends certificate_expired. "
        "The fix is a new certificate for the same key: sign its request again (or use "
        "certs/client.crt, the valid one make certs made):",
        does="shows a certificate that expired", cause="its notAfter date has passed",
        fix="a new certificate for the same key", tls12=("server", "certificate_expired", 60)),
    Scenario(
        "expired-server", "The server's certificate expired in 2020",
        ["--cert", "{certs}/expired-server.crt"], OK_CLIENT + ["{url}"],
        "server certificate expired", "client says a certificate in our chain has expired",
        "The client checks the same dates on the server's certificate and refuses it. This "
        "is the most common outage in real mTLS deployments: renew before notAfter, and "
        "reload the server (kill -HUP) so it serves the new certificate.",
        does="connects to a server whose certificate expired", cause="the server's notAfter has passed",
        fix="renew it, then `kill -HUP` the server", tls12=("client", "certificate_expired", 60)),
    Scenario(
        "wrong-hostname", "The server's certificate is for www.example.com",
        ["--cert", "{certs}/elsewhere-server.crt"], OK_CLIENT + ["{url}"],
        "hostname mismatch", "client refused our certificate",
        "A valid certificate proves nothing unless it names the host you asked for. The client "
        "compares 'localhost' with the subjectAltName (www.example.com only) and hangs up. "
        "When a SAN is present the CN is ignored: put every name in the SAN.",
        does="connects to a server certified for www.example.com",
        cause="the SAN does not name localhost", fix="list every host name in the SAN",
        tls12=("client", "bad_certificate", 60)),
    Scenario(
        "ip-address", "https://127.0.0.1 works: the SAN lists IP:127.0.0.1",
        DEFAULT_SERVER, OK_CLIENT + ["{ipurl}"], "ok", "accepted",
        "An IP address is matched against the SAN's IP entries, never against DNS names or "
        "the CN. Our server certificate lists IP:127.0.0.1 and IP:::1 beside DNS:localhost, "
        "so https://127.0.0.1 passes the hostname check as localhost does (and https://[::1] "
        "would, with a server listening there: --host ::1).",
        does="connects to https://127.0.0.1", cause="the SAN lists IP:127.0.0.1",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "revoked-no-crl", "A revoked client certificate, but the server has no CRL",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/revoked-client.crt",
                         "--key", "{certs}/revoked-client.key", "{url}"],
        "ok", "accepted",
        "The CA revoked this certificate, but revocation lives in a separate list (the CRL) "
        "that the server must load and consult. Without --crl the signature and dates are "
        "fine, so it gets in: the classic mistake. The next case fixes it.",
        does="shows a revoked certificate; the server has no `--crl`",
        cause="the server never checks revocation", fix="start the server with `--crl certs/ca.crl`",
        tls12=(None, None, 0)),
    Scenario(
        "revoked", "The same revoked certificate, server started with --crl",
        ["--crl", "{certs}/ca.crl"], ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/revoked-client.crt",
                                    "--key", "{certs}/revoked-client.key", "{url}"],
        "certificate revoked", "has been revoked",
        "With --crl the server loads the CRL and sets VERIFY_CRL_CHECK_LEAF, so OpenSSL looks "
        "the client's serial number up and finds it revoked. A CRL goes stale (nextUpdate): "
        "regenerate it and reload the server (kill -HUP) to make new revocations count.",
        does="shows a revoked certificate; the server has `--crl`",
        cause="its serial number is in the CRL", fix="a new key and certificate",
        tls12=("server", "certificate_revoked", 35)),
    Scenario(
        "wrong-purpose", "The server's own certificate presented as a client certificate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/server.crt",
                         "--key", "{certs}/server.key", "{url}"],
        "wrong purpose", "wrong purpose",
        "The certificate is signed by my-ca and the key matches, but its extendedKeyUsage "
        "says serverAuth only. The server wants clientAuth: it logs 'wrong purpose' and sends the "
        "alert unsupported_certificate (openssl verify -purpose sslclient says 'unsuitable "
        "certificate purpose'). Issue separate certificates for each role.",
        does="shows the server's certificate as its own", cause="its EKU is serverAuth only",
        fix="a certificate with clientAuth", tls12=("server", "unsupported_certificate", 35)),
    Scenario(
        "article-server-strict", "The walkthrough's exact certificates on both sides, checked strictly",
        ["--ca", "{certs}/article/ca.crt", "--cert", "{certs}/article/server.crt",
         "--key", "{certs}/article/server.key"],
        ["--cacert", "{certs}/article/ca.crt", "--cert", "{certs}/article/client.crt",
         "--key", "{certs}/article/client.key", "{url}"],
        "server certificate invalid", "client refused our certificate",
        "The walkthrough's CA has basicConstraints but no keyUsage. Strict X.509 checking "
        "(VERIFY_X509_STRICT, which client.py and server.py set on every Python, and which "
        "ssl.create_default_context(), so urllib, sets since Python 3.13) wants keyCertSign "
        "in every CA's keyUsage, so client.py refuses the server. The walkthrough's leaves being "
        "X.509 v1 is not the cause: a v1 leaf signed by our CA passes. curl is not strict: it "
        "accepts this server, and then server.py refuses curl's walkthrough certificate.",
        curl=["--cacert", "{certs}/article/ca.crt", "--key", "{certs}/article/client.key",
              "--cert", "{certs}/article/client.crt", "{url}"],
        does="uses the article's certificates on both sides", cause="the article's CA lacks keyUsage",
        fix="a CA with keyUsage keyCertSign (`make certs`)", tls12=("client", "certificate_unknown", 35),
        strict=True),
    Scenario(
        "article-client-strict", "The walkthrough's client certificate, at a strict server",
        ["--ca", "{certs}/article/ca.crt"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/article/client.crt",
         "--key", "{certs}/article/client.key", "{url}"],
        "certificate rejected", "client certificate fails verification",
        "Now the server checks the walkthrough's client certificate strictly and refuses it: a "
        "strict verifier wants every CA to carry keyUsage with keyCertSign, and the walkthrough's "
        "CA has only basicConstraints. Our openssl.cnf adds it, which is why 'success' passes.",
        does="shows the article's client certificate", cause="its CA lacks keyUsage",
        fix="a CA with keyUsage keyCertSign (`make certs`)", tls12=("server", "certificate_unknown", 35),
        strict=True),
    Scenario(
        "not-authorized", "A valid client that is not on the allow-list (--allow cn:my-client)",
        ["--allow", "cn:my-client"], ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/other-client.crt",
                                   "--key", "{certs}/other-client.key", "{url}"],
        "HTTP 403 Forbidden", "forbidden",
        "TLS authenticated the client: its certificate is valid, and its identity is "
        "uri:spiffe://example.org/other-client. Authorization is a separate, later decision: "
        "this server lets in only cn:my-client (--allow), so it answers 403 over the working "
        "connection, and closes it.",
        does="shows a valid certificate that is not on `--allow`",
        cause="authenticated, but not authorized", fix="add its identity to `--allow`",
        tls12=(None, None, 0)),
    Scenario(
        "spiffe-identity", "The same client, allowed by its URI identity",
        ["--allow", "uri:spiffe://example.org/other-client"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/other-client.crt",
         "--key", "{certs}/other-client.key", "{url}"],
        "ok", "accepted",
        "A client's identities are its subjectAltName entries, each with its type (a URI "
        "here, as SPIFFE service meshes use), and its CN only when it has no SAN. --allow "
        "takes them in the spelling the log prints: uri:spiffe://example.org/other-client.",
        does="is allowed by its URI identity", cause="`--allow` names its URI SAN",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "chain-leaf-only", "A server signed by an intermediate CA sends only its leaf",
        ["--cert", "{certs}/int-server.crt"], OK_CLIENT + ["{url}"],
        "server not trusted", "client does not trust our certificate",
        "The client trusts the root (my-ca), but the server's certificate was signed by "
        "my-intermediate-ca, which the client has never seen. Without the intermediate the "
        "chain has a gap, so verification fails exactly as if the CA were unknown.",
        does="connects to a server that sends its leaf alone", cause="the client cannot reach my-ca",
        fix="serve the chain file (leaf + intermediate)", tls12=("client", "unknown_ca", 60)),
    Scenario(
        "chain-full", "Both sides send leaf + intermediate",
        ["--cert", "{certs}/int-server-chain.pem"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/int-client-chain.pem",
         "--key", "{certs}/client.key", "{url}"],
        "ok", "accepted",
        "A chain file holds the leaf followed by the intermediate. Each side sends it, and "
        "the peer links leaf -> intermediate -> root it trusts. Only the root need be "
        "configured as trusted (--ca, --cacert).",
        does="sends leaf + intermediate, as does the server", cause="each side completes the chain",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "client-chain-leaf-only", "The client sends its leaf without the intermediate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/int-client.crt",
                         "--key", "{certs}/client.key", "{url}"],
        "unknown CA", "signed by an unknown CA",
        "The same gap, the other way round: the server cannot link the client's leaf to "
        "my-ca without the intermediate, and answers unknown_ca. Send the chain file.",
        does="sends its leaf without the intermediate", cause="the server cannot reach my-ca",
        fix="`--cert` the chain file", tls12=("server", "unknown_ca", 35)),
]

# A command that a case's why: ends with, printed on its own line so that it
# pastes. {certs} stands for the certificates folder, {cnf} for openssl.cnf.
FIX_COMMANDS = {
    "expired-client": ["openssl", "x509", "-req", "-in", "{certs}/client.csr",
                       "-CA", "{certs}/ca.crt", "-CAkey", "{certs}/ca.key", "-days", "365",
                       "-extfile", "{cnf}", "-extensions", "client",
                       "-out", "{certs}/renewed-client.crt"],
}

# The three basic cases of the walkthrough this project follows, run when no
# name is given.
ARTICLE_CASES = ["success", "no-cacert", "no-client-cert"]

# Demonstrations that are not a request against a server configuration.
DEMOS = {"cleartext-cert": "TLS 1.2 sends the client's certificate unencrypted; TLS 1.3 does not"}

# OpenSSL 3.0 refuses a CA without keyUsage under strict checks; 1.1.1 does not.
STRICT_CHECKS = ssl.OPENSSL_VERSION_INFO >= (3, 0)


# --- the lesson ----------------------------------------------------------
#
# Six cases in teaching order. Each opens with a one-line heading and ends
# with a few lines of "what you just saw" (each under 82 characters, so
# each fits 100 columns with its label).

# `setup` and `ask` come before the case runs (with --pause, the class
# answers before Enter is pressed), `saw` after it.
Lesson = namedtuple("Lesson", "name heading setup ask saw")

LESSON = [
    Lesson("success", "mutual TLS working: each side proves who it is",
           "each side has a certificate signed by my-ca, and trusts my-ca.",
           "will the request work, and what does the server learn about the client?",
           ("Both sides showed a certificate signed by my-ca and proved they hold its key.",
            "The server knows the client is my-client; the client knows it reached localhost.")),
    Lesson("no-cacert", "the client does not trust the server's CA",
           "the client leaves out --cacert, so it trusts only the system's CAs.",
           "who refuses whom, and before or after the request is sent?",
           ("The client checks the server first: without --cacert it trusts only system CAs.",
            "It hung up in the handshake; the server logs that the client did not trust it.")),
    Lesson("no-client-cert", "the client shows no certificate",
           "the client has no certificate (no --cert, no --key).",
           "what will each side say, and when does the client find out?",
           ("The server asked (CertificateRequest), got none, and sent certificate_required.",
            "Under TLS 1.3 the client had finished its handshake: it hears at its first read.")),
    Lesson("other-ca", "a certificate from another CA, claiming to be my-client",
           "the client shows a certificate that says CN=my-client, signed by rogue-ca.",
           "does the name my-client get it in?",
           ("Anyone can write CN=my-client into a certificate: the signature is what counts.",
            "The server could not chain it to my-ca, the only CA it trusts: alert unknown_ca.",
            "The alert does not say why; the server's log does.")),
    Lesson("expired-client", "the client's certificate has expired",
           "the client's certificate has its usual key, name and CA, but expired in 2020.",
           "which side notices, and does the client learn why?",
           ("Same key, name and CA: only the dates are wrong, and the server checks them.",
            "The alert does not say why; the server's log does.",
            "The fix: sign its request again, for the same key (or use certs/client.crt):")),
    Lesson("not-authorized", "a valid client that this server does not allow",
           "a client with a valid certificate from my-ca; the server allows only cn:my-client.",
           "does the handshake work? what does the client get?",
           ("TLS worked: the server knows exactly who the client is (authentication).",
            "It is not on --allow, so the server answers 403 (authorization).",
            "The server names a client by its subjectAltName when it has one (here its URI),",
            "and by its CN (CN=other-client in make inspect) only when it has none.")),
]


# Who holds which file is the README's section 2; the lesson only points there.
LESSON_INTRO = (
    "Six cases, each a real request to a real server.py, which demands a client certificate "
    "signed by my-ca ({certs}/ca.crt). Who holds which file: README, section 2.")


# --- terminal output -----------------------------------------------------
#
# Everything we print goes through one Screen: it knows the width (the
# terminal's, 100 when unknown, or --width), wraps long lines instead of
# cutting them, and colours only a terminal without NO_COLOR (no-color.org).
# Bold, red and green only: dim text (ANSI 2) vanishes on a projector.

def terminal_width():
    """The terminal's width: $COLUMNS, else the terminal's, else 100."""
    return shutil.get_terminal_size(fallback=(100, 24)).columns


class Screen:
    """Prints wrapped, optionally coloured text at a given width."""

    def __init__(self, width=100, colour=False, quiet=False):
        self.width, self.colour, self.quiet = max(width, 60), colour, quiet

    def paint(self, text, code):
        """Wrap text in an ANSI colour code when colour is on."""
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def print(self, text=""):
        """Print one line as it is (callers keep it within the width)."""
        if not self.quiet:
            print(text, flush=True)

    def say(self, text, first="", rest=None, code=None):
        """Print prose wrapped to the width; `first` starts the first line
        (painted with `code`), `rest` indents the others."""
        rest = " " * len(first) if rest is None else rest
        for i, line in enumerate(wrap(text, self.width, first, rest)):
            self.print(self.paint(first, code) + line[len(first):] if i == 0 else line)

    def heading(self, text):
        """A case's title line, bold, after a blank line; a parenthesis in it
        is never split across lines."""
        self.print()
        whole = re.sub(r"\([^()]*\)", lambda m: m.group(0).replace(" ", "\u00a0"), text)
        for i, line in enumerate(wrap(whole, self.width, "== ", "   ")):
            line = line.replace("\u00a0", " ")
            self.print(self.paint("== ", "1") + line[3:] if i == 0 else line)

    def command(self, words, prompt="$ "):
        """Print a command line that pastes: wrapped at spaces between words
        with ' \\' continuations, each word shell-quoted."""
        for line in wrap_command(pair_options([shlex.quote(w) for w in words]), self.width, prompt):
            self.print(line)

    def output(self, text, empty="(no output)"):
        """Print a program's output indented behind '| ', wrapped."""
        for line in text.rstrip("\n").splitlines() or [empty]:
            self.say(line.expandtabs(), "   | ", "   |   ")

    def why(self, text):
        """The explanation of a case, behind a bold 'why:'."""
        self.say(text, "why: ", code="1")


def wrap(text, width, first="", rest=""):
    """Split text into lines of at most `width` columns, the first starting
    with `first`, the others with `rest`; at spaces when possible, and a
    word longer than a line is split: nothing is ever cut off."""
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False) or [first.rstrip()]


def pair_options(words):
    """Group each option with its value (["--cacert", "certs/ca.crt"]), so
    that a wrapped command keeps them on one line when it can."""
    units = []
    for word in words:
        after_option = units and len(units[-1]) == 1 and units[-1][0].startswith("-")
        if after_option and not word.startswith("-"):
            units[-1].append(word)
        else:
            units.append([word])
    return units


def wrap_command(units, width, prompt="$ ", indent="    "):
    """Lay units (lists of words) out as shell lines of at most `width`
    columns, ending every line but the last with ' \\' so that the whole
    pastes as one command. A unit too long for a line is split into its
    words; a word too long for a line stands alone (it cannot be split)."""
    lines, line = [], prompt + " ".join(units[0])
    for unit in units[1:]:
        text = " ".join(unit)
        too_long = len(line) + 1 + len(text) + 2 > width and len(indent + text) + 2 > width
        if too_long and len(unit) > 1:
            for word in unit:
                lines, line = add_word(lines, line, word, width, indent)
            continue
        lines, line = add_word(lines, line, text, width, indent)
    return lines + [line]


def add_word(lines, line, text, width, indent):
    """Append text to the current line, or end it with ' \\' and start a new one."""
    if len(line) + 1 + len(text) + 2 <= width:
        return lines, line + " " + text
    return lines + [line + " \\"], indent + text


screen = Screen()          # replaced in main() by one set up from the options


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
    return [shown_python(), shown_path(os.path.join(HERE, name))]


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


class DemoError(Exception):
    """Something the user can fix: printed as 'error: <label>: <what> -- <fix>'."""

    def __init__(self, label, what, fix):
        super().__init__(f"{label}: {what} -- {fix}")


# --- running the servers -------------------------------------------------

class ServerProcess:
    """server.py in its own process on a free port; its log read by a thread."""

    def __init__(self, args, port=0):
        self.args, self.wanted, self.busy = list(args), port, None
        self.port, self.shown, self.warnings = None, False, []
        self.start(port)

    def start(self, port):
        """Start server.py on `port` (0: any free one), its log read by a thread."""
        self.command = script("server.py") + ["--port", str(port)] + self.args
        self.proc = subprocess.Popen([sys.executable] + self.command[1:], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read_log, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read_log(proc, lines):
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

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
        while first is not None and " warning: " in first:     # e.g. key permissions
            self.warnings.append(first.split(" ", 1)[1])
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
            lines.append(line.split(" ", 1)[1])
            if phrase in lines[-1] or lines[-1].startswith(verdicts):
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
    default = os.path.abspath(certs) == os.path.join(HERE, "certs")
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
    done = subprocess.run(["make", "-C", HERE, f"CERTS={os.path.abspath(certs)}", target],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        screen.output(done.stdout[-2000:])
        raise DemoError("certificates not built", f"make {target} failed (its output is above)",
                        f"make -C {shlex.quote(shown_path(HERE))} {target} "
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
        words = re.findall(r"""(?:[^\s'"]+|'[^']*'|"[^"]*")+""", line)     # as make echoed it
        for text in wrap_command(pair_options(words), screen.width):
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


# --- running one case ----------------------------------------------------

Result = namedtuple("Result", "name expected observed ok")     # as mistakes/gallery.py's
CaseRun = namedtuple("CaseRun", "result client_words client server_lines tls12")


def server_command(scenario, certs):
    """server.py's options for a scenario: our usual files, with the
    scenario's own options put in their place (every option takes a value)."""
    options = {"--ca": f"{certs}/ca.crt", "--cert": f"{certs}/server.crt",
               "--key": f"{certs}/server.key"}
    extra = fill(scenario.server, certs)
    options.update(zip(extra[::2], extra[1::2]))
    return [word for pair in options.items() for word in pair]


def observe_client(proc):
    """What client.py's run amounts to: "ok", or the label after "error:"."""
    if proc.returncode == 0:
        return "ok"
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if last.startswith("error: "):
        return last[len("error: "):].split(":", 1)[0]
    return f"exit {proc.returncode}"


def summarize_log_line(line):
    """The gist of a server log line, without the client's address and the
    parenthesis: "accepted as cn:my-client", or the reason for a refusal."""
    what, _, rest = line.partition(" ")
    if what not in ("accepted", "rejected", "forbidden"):
        return line
    if what == "accepted":
        return "accepted as " + rest.split(" as ", 1)[-1]
    reason = re.sub(r" \([^()]*\)", "", rest.split(": ", 1)[-1])
    return f"forbidden: {reason}" if what == "forbidden" else reason


def fix_command(scenario, certs):
    """The command a case's why: ends with, as words that paste, or None."""
    words = FIX_COMMANDS.get(scenario.name)
    cnf = shown_path(os.path.join(HERE, "openssl.cnf"))
    return [w.format(certs=certs, cnf=cnf) for w in words] if words else None


def explain(scenario, certs, lesson=None):
    """Say why a case went as it did: its why: line, or in the lesson the
    lesson's own summary (one explanation, not two); then its fix command."""
    if lesson is None:
        screen.why(scenario.why)
    else:
        label = "What you just saw: "
        for i, line in enumerate(lesson.saw):
            screen.say(line, label if i == 0 else " " * len(label), code="1" if i == 0 else None)
    command = fix_command(scenario, certs)
    if command:
        screen.command(command)


def run_case(scenario, server, certs, opts, lesson=None):
    """Run one scenario, print what happened and why (in the lesson, what
    you just saw); return a CaseRun."""
    server.wait_ready()
    server.show()
    server.forget_old_lines()
    words = script("client.py") + fill(scenario.client, certs, server.port)
    screen.command(words)
    proc = run(words, timeout=30)
    screen.output(proc.stdout + proc.stderr)
    screen.print(f"   (exit {proc.returncode})")
    server_lines = server.case_lines(scenario.server_says)
    for line in server_lines:
        screen.say(line, "server log: ")

    if opts.curl and scenario.curl:
        curl_words = ["curl", "-sS"] + fill(scenario.curl, certs, server.port)
        screen.say(curl_intro(lesson is not None))
        run_curl(curl_words, server, scenario)
    if opts.trace or opts.raw_trace:
        trace_case(scenario, server, certs, "1.3", opts)
    observed = observe_client(proc)
    server_line = server_lines[-1]
    ok = observed == scenario.expect and scenario.server_says in server_line
    if ok:
        explain(scenario, certs, lesson)
    else:                   # the explanation of what should have happened would mislead
        screen.why(f"not what this case shows: it should end with the client saying "
                   f"'{scenario.expect}' and the server '{scenario.server_says}', so its "
                   f"explanation is left out. Read the messages above: they say what happened.")
    tls12 = rerun_tls12(scenario, server, certs, opts) if opts.tls12 else None

    result = Result(scenario.name,
                    (f"client: {scenario.expect}", f"server: {scenario.server_says}"),
                    (f"client: {observed}", f"server: {summarize_log_line(server_line)}"), ok)
    return CaseRun(result, words, proc, server_lines, tls12)


introduced = set()      # what has been introduced once in this run


def curl_intro(lesson=False):
    """The line before a curl command. The README names the walkthrough in
    full; here it is just "the walkthrough", and the lesson does not need it."""
    if lesson:
        return "The same request with curl, for comparison:"
    return "The walkthrough's curl command, for comparison:"


def run_curl(words, server, scenario):
    """Run a curl command, print it, its output and the server's log line;
    return curl's exit code."""
    screen.command(words)
    done = run(words, timeout=30)
    screen.output(done.stdout + done.stderr)
    screen.print(f"   (curl exit {done.returncode})")
    lines = server.case_lines(scenario.server_says)
    for line in lines:
        screen.say(line, "server log: ")
    if done.returncode == 60 and lines[-1].startswith("accepted"):
        screen.why("curl checks the server's name itself, after the handshake has completed: "
                   "so server.py logged 'accepted', and then curl hung up without a request.")
    return done


def skipped_case(scenario):
    """A Result for a scenario this OpenSSL cannot show, and one line saying why."""
    screen.say(f"skipped: this case needs the strict RFC 5280 checks of OpenSSL 3.0 or newer, "
               f"and this Python uses {ssl.OPENSSL_VERSION}.")
    return Result(scenario.name, ("needs OpenSSL 3.0+", ""), ("skipped", ""), None)


def word_pieces(word):
    """A word's pieces where a line may break inside it: after each '/' of a
    URI (uri:spiffe:// | example.org/ | other-client), nowhere else."""
    return re.findall(r"[^/]*/+|[^/]+", word) or [word]


def wrap_cell(text, width):
    """Wrap a table cell at spaces, and inside a word too long for the column
    only after a '/': never mid-word (a piece wider than the column, which
    print_table avoids, is the only thing ever cut)."""
    lines, line = [], text[:len(text) - len(text.lstrip())]     # "  + TLS 1.2" keeps its indent
    for word in text.split():
        pieces = [word] if len(word) <= width else word_pieces(word)
        for i, piece in enumerate(pieces):
            glue = " " if line.strip() and i == 0 else ""
            if line.strip() and len(line) + len(glue) + len(piece) > width:
                lines.append(line)
                line, glue = "", ""
            line += glue + piece
            while len(line) > width:
                lines, line = lines + [line[:width]], line[width:]
    return lines + [line]


def column_widths(rows, width):
    """Widths of the four columns within `width`, each at least as wide as the
    longest word in it, else as the longest piece of one (leaving `expected`
    20 columns, or what it needs); None if neither fits."""
    natural = [max(len(line) for row in rows for line in row[i].splitlines() or [""])
               for i in range(4)]
    room = width - natural[0] - natural[3] - 9          # 3 separators of 3
    if natural[1] + natural[2] <= room:
        return natural
    for split in (lambda w: [w], word_pieces):           # whole words first
        least = [max((len(p) for row in rows for w in row[i].split() for p in split(w)),
                     default=1) for i in (1, 2)]
        first = max(min(natural[1], room // 2), room - natural[2], least[0])
        second = max(room - first, least[1])
        if room - second >= max(least[0], min(natural[1], 20)) and room >= 30:
            return [natural[0], room - second, second, natural[3]]
    return None


# The lesson is projected: its table fits an 80-column projector.
LESSON_TABLE_WIDTH = 79


def print_table(results, width=None):
    """The closing table, fitted to `width` (default: the screen's): cells
    wrap at spaces, never inside a word (a URI, after a '/')."""
    rows = [("case", "expected", "observed", "ok")]
    for r in results:
        mark = {True: "yes", False: "NO", None: "skip"}[r.ok]
        rows.append((r.name, "\n".join(filter(None, r.expected)),
                     "\n".join(filter(None, r.observed)), mark))
    widths = column_widths(rows, min(width or screen.width, screen.width))
    if widths is None:                   # too narrow for columns: one block a case
        for name, expected, observed, mark in rows[1:]:
            screen.print()
            screen.say(f"{name}: {mark}")
            screen.say(expected.replace("\n", "; "), "   expected: ")
            screen.say(observed.replace("\n", "; "), "   observed: ")
        return
    screen.print()
    for row in rows:
        # A cell's k-th line (e.g. "server: ...") starts beside the other
        # cells' k-th lines, however many lines the one before it wrapped to.
        lines = [row[i].splitlines() or [""] for i in range(4)]
        for k in range(max(len(cell) for cell in lines)):
            cells = [wrap_cell(cell[k], widths[i]) if k < len(cell) else [""]
                     for i, cell in enumerate(lines)]     # each wrapped to its column
            for n in range(max(len(c) for c in cells)):
                parts = [(c[n] if n < len(c) else "").ljust(widths[i])
                         for i, c in enumerate(cells)]
                first = k == 0 and n == 0
                colour = {"yes": "32", "NO": "31"}.get(parts[3].strip()) if first else None
                parts[3] = screen.paint(parts[3].rstrip(), colour)
                screen.print(" | ".join(parts).rstrip())


# --- TLS 1.2 -------------------------------------------------------------
#
# client.py always offers TLS 1.3. To show the same case under TLS 1.2 we
# run client.py's own code (make_client_context, fetch) with its context
# limited to TLS 1.2, and print the one line client.py would print; then the
# two real tools that can be limited to it: openssl s_client -tls1_2 (whose
# trace shows where the alert came) and curl --tls-max 1.2.

# Said after the first case it explains: the first about a missing client
# certificate only, the second about any case the server refuses.
TLS12_NO_CERTIFICATE = ("TLS 1.2 has no certificate_required alert (TLS 1.3 added it, RFC 8446 "
                        "6.2), so a TLS 1.2 server that gets no client certificate sends "
                        "handshake_failure (RFC 5246 7.4.6).")
TLS12_VERDICT = ("Under TLS 1.2 the server's verdict on the client's certificate arrives inside "
                 "the handshake, before the client sends its request.")


def fetch_tls12(scenario, server, certs):
    """Run client.py's code for a case, its context limited to TLS 1.2;
    return (the line client.py would print, its outcome as observe_client says it)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import client                                   # the project's client, as a library
    args = client.parse_args(fill(scenario.client, certs, server.port))
    try:
        context = client.make_client_context(args.cacert, args.cert, args.key)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        status, body = client.fetch(args.url, context, args.timeout)
    except client.Failure as failure:
        return f"error: {failure.label}: {failure.message}", failure.label
    if not 200 <= status < 300:
        line = client.http_error(status, body)
        return line, line[len("error: "):].split(":", 1)[0]
    return body.rstrip("\n"), "ok"


# What client.py says under TLS 1.2 where it differs from TLS 1.3.
TLS12_CLIENT = {"no-client-cert": "handshake failed"}


def rerun_tls12(scenario, server, certs, opts):
    """Replay a case with the client limited to TLS 1.2; print where the
    handshake ended and what curl says. Return a Result for the table."""
    screen.print()
    screen.say("The same case, with the client limited to TLS 1.2:", code="1")
    screen.say("client.py's own code (make_client_context, then fetch), its context limited "
               "with context.maximum_version = ssl.TLSVersion.TLSv1_2, prints:")
    server.forget_old_lines()
    line, said = fetch_tls12(scenario, server, certs)
    screen.output(line)
    for log in server.case_lines(scenario.server_says):
        screen.say(log, "server log: ")
    steps = trace_case(scenario, server, certs, "1.2", opts)
    sender, alert = first_fatal_alert(steps)
    observed = [f"client.py: {said}", f"alert: {sender} sends {alert}" if alert else "alert: none"]
    if opts.curl:
        words = ["curl", "-sS", "--tls-max", "1.2"] + fill(scenario.client, certs, server.port)
        done = run_curl(words, server, scenario)
        said = re.search(r"alert ([a-z ]+?)(?:,|$)", done.stderr, re.M)
        observed.append(f"curl: exit {done.returncode}"
                        + (f", alert {said.group(1).replace(' ', '_')}" if said else ""))
        expired = scenario.tls12[1] == "certificate_expired" and sender == "server"
        if expired and done.returncode == 60:
            screen.why("curl exits 60 and says it failed to verify the legitimacy of the "
                       "server, but the server's certificate was fine: the server sent "
                       "certificate_expired about the client's certificate, and curl files "
                       "that alert under its own check of the server. Trust the server's log.")
    said = []                                   # after the output it explains, once each
    if scenario.tls12[1] == "handshake_failure" and "tls12-no-cert" not in introduced:
        introduced.add("tls12-no-cert")
        said.append(TLS12_NO_CERTIFICATE)
    if scenario.tls12[0] == "server" and "tls12-verdict" not in introduced:
        introduced.add("tls12-verdict")
        said.append(TLS12_VERDICT)
    if said:
        screen.why(" ".join(said))
    want_sender, want_alert, want_exit = scenario.tls12
    expected = [f"client.py: {TLS12_CLIENT.get(scenario.name, scenario.expect)}",
                f"alert: {want_sender} sends {want_alert}" if want_alert else "alert: none"]
    if opts.curl:       # curl names the alert only when it exits 35 (a TLS error)
        named = f", alert {want_alert}" if want_exit == 35 else ""
        expected.append(f"curl: exit {want_exit}{named}")
    ok = observed == expected
    return Result("  + TLS 1.2", tuple(expected), tuple(observed), ok)


# --- the handshake ladder ------------------------------------------------
#
# `openssl s_client -trace` prints every TLS record it sends and receives.
# We replay the case's client with it (same files, same checks) and draw
# the messages as a ladder: client on the left, server on the right.

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
          44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
          47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
          51: "decrypt_error", 70: "protocol_version", 80: "internal_error",
          109: "missing_extension", 112: "unrecognized_name", 116: "certificate_required"}

NOTES = {
    ("<-", "ServerHello"): "the server picks the TLS version and the cipher",
    ("<-", "Certificate"): "the server's certificate chain",
    ("<-", "CertificateRequest"): "the server asks for a client certificate: mTLS",
    ("<-", "CertificateVerify"): "signed with the server's key: it owns that certificate",
    ("->", "Certificate"): "the client's certificate chain",
    ("->", "CertificateVerify"): "signed with the client's key: it owns that certificate",
    ("->", "ApplicationData"): "the HTTP request, encrypted",
    ("<-", "ApplicationData"): "the HTTP response, encrypted",
}

Step = namedtuple("Step", "direction message note")     # direction: "->" client to server

# A HelloRetryRequest is a ServerHello with this fixed random value (RFC 8446
# 4.1.3): the client's first hello carried no key share for a group the
# server accepts (server.py takes X25519, openssl's first share, so the demo
# shows none; a server offering only P-256 would ask).
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
HRR_NOTE = "the server wants a key share for another group: send your hello again"


def s_client_command(client_args, version=None):
    """The openssl s_client command equivalent to a client.py argument list
    (-x509_strict: client.py verifies strictly too)."""
    command = ["openssl", "s_client", "-trace", "-ign_eof", "-verify_return_error", "-x509_strict"]
    if version:
        command.append("-tls1_2" if version == "1.2" else "-tls1_3")
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


def parse_trace(output, version="1.3"):
    """Turn s_client -trace output (its stdout) into Steps, record by record."""
    steps = []
    for record in re.split(r"\n(?=(?:Sent|Received) Record\n)", output)[1:]:
        direction = "->" if record.startswith("Sent") else "<-"
        outer = re.search(r"^  Content Type = (\w+)", record, re.M)
        inner = re.search(r"^  Inner Content Type = (\w+)", record, re.M)
        kind = (inner or outer).group(1) if (inner or outer) else ""
        if kind == "ChangeCipherSpec":
            note = ("no meaning in TLS 1.3: sent for old middleboxes (RFC 8446 D.4)"
                    if version == "1.3" else "from here on, this side encrypts")
            steps.append(Step(direction, "ChangeCipherSpec", note))
        elif kind == "ApplicationData":
            data = Step(direction, "ApplicationData", NOTES[(direction, "ApplicationData")])
            if not steps or steps[-1] != data:          # one arrow for several records
                steps.append(data)
        for m in re.finditer(r"^ {4}(\w+), Length=(\d+)$", record, re.M):
            name, length = m.group(1), int(m.group(2))
            note = NOTES.get((direction, name), "")
            if name == "ServerHello" and server_random(record[m.end():]) == HRR_RANDOM:
                name, note = "HelloRetryRequest", HRR_NOTE
            if direction == "->" and name == "Certificate" and length <= 4:
                name, note = "Certificate (empty)", "the client has no certificate to send"
            steps.append(Step(direction, name, note))
        for m in re.finditer(r"^ +Level=(\w+)\(\d\), description=.*\((\d+)\)$", record, re.M):
            alert = ALERTS.get(int(m.group(2)), f"alert {m.group(2)}")
            steps.append(Step(direction, f"Alert {alert} ({m.group(1)})", ""))
    return mark_hello_retry(steps)


def server_random(text):
    """The 32-byte random of the first hello in s_client -trace text, in hex."""
    m = re.search(r"gmt_unix_time=0x(\w+)\s+random_bytes \(len=28\): (\w+)", text)
    return (m.group(1) + m.group(2)).lower() if m else None


def mark_hello_retry(steps):
    """A ServerHello that the client answers with a second ClientHello was a
    HelloRetryRequest (in case the trace printed no random to compare)."""
    for i, step in enumerate(steps):
        again = any(s.direction == "->" and s.message == "ClientHello" for s in steps[i + 1:])
        if step.direction == "<-" and step.message == "ServerHello" and again:
            steps[i] = Step("<-", "HelloRetryRequest", HRR_NOTE)
    return steps


def run_trace(command):
    """Run s_client with one HTTP request (Connection: close, so it ends);
    return (parsed steps, raw output)."""
    version = "1.2" if "-tls1_2" in command else "1.3"
    request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    try:
        done = subprocess.run(command, input=request, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return [], "(openssl s_client did not finish within 20 s)"
    return parse_trace(done.stdout, version), done.stdout + done.stderr


def first_fatal_alert(steps):
    """(who sent it, alert name) for the first fatal alert, or (None, None)."""
    for step in steps:
        if step.message.startswith("Alert ") and step.message.endswith("(fatal)"):
            return ("client" if step.direction == "->" else "server"), step.message.split()[1]
    return None, None


def handshake_done_at(steps):
    """Index after which the client has sent and received Finished (its
    handshake is complete), or None if that never happened."""
    sent = received = False
    for i, step in enumerate(steps):
        if step.message == "Finished":
            sent, received = sent or step.direction == "->", received or step.direction == "<-"
            if sent and received:
                return i
    return None


def describe_replay(steps, version):
    """One sentence: did the handshake complete, and who sent which alert when."""
    sender, alert = first_fatal_alert(steps)
    done = handshake_done_at(steps)
    if alert is None:
        return f"TLS {version}: the handshake completed and the request was answered."
    index = next(i for i, s in enumerate(steps) if s.message.startswith(f"Alert {alert}"))
    if done is None or index < done:
        return (f"TLS {version}: the {sender} sent the alert {alert} during the handshake, "
                f"which never completed.")
    return (f"TLS {version}: the client's handshake was complete; the {sender} sent the alert "
            f"{alert} afterwards, and the client met it at its first read.")


def draw_ladder(steps, width):
    """The steps as a client<->server ladder, notes on the right when there
    is room, else under each arrow. Returns the lines."""
    rungs = max([len(s.message) + 8 for s in steps] + [40])      # 40: the marker fits
    rungs = min(rungs, max(width - 4, 40))
    beside = width - rungs - 4 >= 26                    # room for notes on the right
    lines = ["client" + " " * (rungs - 10) + "server"]
    bar = "|" + " " * (rungs - 2) + "|"
    done = handshake_done_at(steps)
    failed = False
    for i, step in enumerate(steps):
        alert = step.message.startswith("Alert ")
        fatal = alert and step.message.endswith("(fatal)") and not failed
        fill_char = "=" if alert else "-"
        label = f" {step.message} "
        pad = rungs - 2 - len(label) - 2
        if step.direction == "->":
            arrow = "|" + fill_char * 2 + label + fill_char * max(pad - 1, 1) + ">|"
        else:
            arrow = "|<" + fill_char * max(pad - 1, 1) + label + fill_char * 2 + "|"
        note = step.note
        if fatal:
            failed = True
            note = f"sent by the {'client' if step.direction == '->' else 'server'}: the failure"
        elif alert:
            note = f"sent by the {'client' if step.direction == '->' else 'server'}"
        lines += attach_note(arrow, note, width, beside, bar)
        if i == done:
            text = " handshake complete (client's view) "
            lines.append("|" + text.center(rungs - 2, "~") + "|")
    if steps and not failed and done is None:
        lines.append("(the connection ended without a Finished from both sides)")
    return lines


def attach_note(arrow, note, width, beside, bar):
    """An arrow with its note: beside it, wrapped, or on lines under it."""
    if not note:
        return [arrow]
    if beside:
        return wrap(note, width, arrow + "  ", bar + "  ")
    return [arrow] + wrap(note, width, "|   ", "|   ")


def trace_case(scenario, server, certs, version, opts):
    """Replay one scenario with openssl s_client -trace; draw the ladder
    (--trace), print the raw output (--raw-trace), and say in one sentence
    where the handshake ended. Returns the steps."""
    command = s_client_command(fill(scenario.client, certs, server.port),
                               version if version == "1.2" else None)
    if shutil.which("openssl") is None:
        screen.say("(openssl is not installed: no replay; apt-get install openssl)")
        return []
    screen.say(f"Replay with openssl s_client (a second connection, made for this picture; "
               f"TLS {version}):")
    screen.command(command)
    steps, raw = run_trace(command)
    server.case_lines(scenario.server_says, timeout=2)     # this replay's log line
    if opts.raw_trace:
        screen.output(raw)
    if not steps:
        screen.say("(no messages: this openssl has no -trace; build it with enable-ssl-trace)")
        return steps
    if opts.trace:
        for line in draw_ladder(steps, screen.width - 3):
            screen.print("   " + line)
    screen.say(describe_replay(steps, version), "=> ", code="1")
    return steps


# --- the relay: what TLS 1.2 shows to the network ------------------------
#
# A TLS 1.2 client sends its Certificate before the handshake's keys are in
# use, so the certificate crosses the network in clear; TLS 1.3 encrypts
# every handshake message after ServerHello (RFC 8446, section 2). A relay
# in the middle that keeps a copy of the bytes proves it.

class Relay:
    """A loopback TCP relay: forwards one connection to localhost:port and
    keeps a copy of what each side sent (.sent: client's, .received: server's)."""

    def __init__(self, port):
        self.target, self.sent, self.received = port, bytearray(), bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._relay_one, daemon=True)
        self.thread.start()

    def _relay_one(self):
        self.listener.settimeout(10)
        try:
            near, _ = self.listener.accept()
            far = socket.create_connection(("localhost", self.target), timeout=10)
        except OSError:
            return
        finally:
            self.listener.close()
        copies = {near: (far, self.sent), far: (near, self.received)}
        deadline = time.monotonic() + 10
        while copies and time.monotonic() < deadline:
            for sock in select.select(list(copies), [], [], 0.5)[0]:
                other, copy = copies[sock]
                try:
                    data = sock.recv(65536)
                    other.sendall(data) if data else other.shutdown(socket.SHUT_WR)
                except OSError:
                    data = b""
                if data:
                    copy.extend(data)
                else:
                    del copies[sock]
        near.close()
        far.close()

    def join(self):
        """Wait (at most 10 s) until both sides have finished."""
        self.thread.join(10)


def fetch_through_relay(port, certs, version):
    """Make one mTLS request via a Relay to localhost:port, with the client
    limited to one TLS version; return (the relay, the response's status line)."""
    relay = Relay(port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(os.path.join(certs, "ca.crt"))
    context.load_cert_chain(os.path.join(certs, "client.crt"), os.path.join(certs, "client.key"))
    context.minimum_version = context.maximum_version = version
    status = ""
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                reply = b""
                while len(reply) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                status = reply.split(b"\r\n", 1)[0].decode("ascii", "replace")
    except (OSError, ssl.SSLError) as exc:
        status = f"failed: {exc}"
    relay.join()
    return relay, status


def certificate_der(path):
    """The DER bytes of the first certificate in a PEM file (what goes on the wire)."""
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def hex_lines(data, start, count=2):
    """`count` lines of a hex dump of data from `start`, 16 bytes a line."""
    lines = []
    for offset in range(start, min(start + 16 * count, len(data)), 16):
        chunk = data[offset:offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:06x}  {chunk.hex(' '):47}  {text}")
    return lines


def cleartext_case(server, certs):
    """Find the client certificate's bytes in what the client sent, under
    TLS 1.2 and TLS 1.3; print it; return a Result."""
    server.wait_ready()
    server.show()
    der = certificate_der(os.path.join(certs, "client.crt"))
    screen.say(f"A relay on 127.0.0.1 passes one connection through to the server and keeps a "
               f"copy of the bytes, as anyone on the network path could. The client sends "
               f"{certs}/client.crt ({len(der)} bytes in DER, the form TLS sends); we look for "
               f"those bytes in what the client sent.")
    found = {}
    for version, name in ((ssl.TLSVersion.TLSv1_2, "1.2"), (ssl.TLSVersion.TLSv1_3, "1.3")):
        server.forget_old_lines()
        relay, status = fetch_through_relay(server.port, certs, version)
        server.case_lines("accepted")
        sent = bytes(relay.sent)
        where = sent.find(der)
        found[name] = where >= 0
        if where >= 0:
            screen.say(f"TLS {name}: the response was {status!r}. The client sent {len(sent)} "
                       f"bytes; the certificate is among them, byte for byte, at offset {where}. "
                       f"Its name, readable:")
            name_at = sent.find(b"my-client", where)
            screen.output("\n".join(hex_lines(sent, max(name_at - 8, where))))
        else:
            also = "nor is the text 'my-client'" if b"my-client" not in sent else \
                "but the text 'my-client' is"
            screen.say(f"TLS {name}: the response was {status!r}. The client sent {len(sent)} "
                       f"bytes; the certificate is not among them, {also}.")
    screen.why("TLS 1.2 turns encryption on only at the end of the handshake (ChangeCipherSpec, "
               "then Finished), and the client sends its Certificate before that: whoever "
               "watches the network learns who connects. TLS 1.3 encrypts every handshake "
               "message after ServerHello, the client's certificate included.")
    observed = (f"TLS 1.2: {'seen' if found['1.2'] else 'not seen'}",
                f"TLS 1.3: {'seen' if found['1.3'] else 'not seen'}")
    return Result("cleartext-cert", ("TLS 1.2: seen", "TLS 1.3: not seen"), observed,
                  found == {"1.2": True, "1.3": False})


# --- the Markdown table --------------------------------------------------
#
# The README's failure-gallery table is this function's output, from real
# runs (--markdown), so the README cannot quote a message the code does not
# print: tests/test_demo.py compares the two.

MARKDOWN_HEADER = ["scenario", "what the student does", "client.py says", "server logs",
                   "cause", "fix"]


def client_says(proc):
    """client.py's outcome in a short cell: its greeting, or its error label and exit code."""
    if proc.returncode == 0:
        return f"`{(proc.stdout.strip().splitlines() or [''])[0]}`"
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if last.startswith("error: "):
        last = "error: " + last[len("error: "):].split(":", 1)[0]
    return f"`{last}` (exit {proc.returncode})"


def server_logs(lines):
    """The server's verdict in a short cell: the log line, with '...' for
    the client's address and for a closing parenthesis."""
    line = lines[-1]
    line = re.sub(r"^(\w+) \S+:\d+", r"\1 ...", line)
    line = re.sub(r" \([^()]*\)", " (...)", line)
    return f"`{line}`"


def markdown_table(runs):
    """The gallery table as Markdown lines, one row per CaseRun."""
    lines = ["| " + " | ".join(MARKDOWN_HEADER) + " |", "|" + "---|" * len(MARKDOWN_HEADER)]
    for run_ in runs:
        s = SCENARIO_BY_NAME[run_.result.name]
        cells = [f"`{s.name}`", s.does, client_says(run_.client), server_logs(run_.server_lines),
                 s.cause, s.fix]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}


# --- the mistakes gallery ------------------------------------------------
#
# Wrong code lives apart, in mistakes/, and is run through mistakes/gallery.py
# (EXHIBITS, run_exhibit). We import it only when an exhibit is asked for.

GALLERY_FILE = os.path.join(HERE, "mistakes", "gallery.py")


def load_gallery():
    """mistakes/gallery.py as a module, or None while it is not built yet."""
    if not os.path.exists(GALLERY_FILE):
        return None
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    try:
        return importlib.import_module("mistakes.gallery")
    except Exception as exc:             # its own bug: one line, not a traceback
        raise DemoError("broken gallery", f"mistakes/gallery.py does not import ({exc!r})",
                        f"run {shown_python()} {shown_path(GALLERY_FILE)} to see why")


def exhibit_names():
    """The exhibits' names, or [] when the gallery is not built yet."""
    gallery = load_gallery()
    return [e.name for e in gallery.EXHIBITS] if gallery else []


def gallery_missing():
    """The one-line error for an exhibit asked for before the gallery exists."""
    return DemoError("not built yet", "the mistakes gallery (mistakes/gallery.py) does not exist "
                     "yet", f"run the failure gallery meanwhile: {shown_python()} "
                     f"{shown_path(__file__)} --all")


# --- the command line ----------------------------------------------------

def program():
    """How the user runs this script, for usage lines and fixes."""
    return f"{shown_python()} {shown_path(__file__)}"


EXAMPLES = """\
names: scenarios, demonstrations and exhibits share one namespace (--list
shows them); they never start with "-" and never contain "://". A
positional argument with "://" is a URL and belongs to --check.

examples:
{examples}"""


EXAMPLE_LINES = [
    ("", "the three basic cases"),
    ("expired-client revoked", "two scenarios, in this order"),
    ("--lesson --pause", "teach: Enter between cases"),
    ("--trace no-client-cert", "the handshake, as a ladder"),
    ("--tls1.2 expired-client", "the same under TLS 1.2"),
    ("cleartext-cert", "TLS 1.2 shows the certificate"),
    ("--all --width 80", "every scenario, 80 columns"),
    ("--markdown > gallery.md", "the README's gallery table"),
]


def examples(width=100):
    """The worked examples of --help: comments beside the commands when they
    fit in `width` columns, else above them (a long interpreter path)."""
    p, lines = program(), []
    for args, comment in EXAMPLE_LINES:
        command = f"  {p} {args}".rstrip()
        if len(p) + 2 + 26 + 4 + len(comment) <= width:
            lines.append(f"{command:{len(p) + 2 + 26}}  # {comment}")
        else:
            lines += [f"  # {comment}", command]
    certs = shown_path(os.path.join(HERE, "certs"))
    words = shlex.split(p) + ["--check", "--cacert", f"{certs}/ca.crt", "--cert",
                              f"{certs}/client.crt", "--key", f"{certs}/client.key",
                              "https://localhost:3000/"]
    lines.append("  # check your own files, and a running server")
    lines += wrap_command(pair_options([shlex.quote(w) for w in words]), width, "  ", "      ")
    return "\n".join(lines) + "\n"


def fit_help(text, width):
    """Wrap the lines of --help's text that are wider than `width`, each
    continuing under its description (the text after its first gap of two
    spaces or more)."""
    out = []
    for line in text.splitlines():
        gap = re.match(r"(\s*\S.*?\s{2,})(\S.*)", line) or re.match(r"(\s*)(.*)", line)
        if len(line) <= width:
            out.append(line)
            continue
        out += wrap(gap.group(2), width, gap.group(1), " " * len(gap.group(1)))
    return "\n".join(out) + "\n"


def usage_line(width):
    """The usage line, its parts carried over under the first when one line
    does not fit `width`."""
    parts = ("[NAME ...]", "[--all|--lesson|--mistakes|--list|--check]", "[modifiers]")
    indent = " " * len("usage: " + program())
    if len(indent) + 1 + max(map(len, parts)) > width:      # a long interpreter path
        indent = "   "
    lines = ["%(prog)s"]
    for part in parts:
        shown = lines[-1].replace("%(prog)s", program())
        if len(f"usage: {shown} {part}") > width and lines[-1] != "%(prog)s":
            lines.append(indent)
        lines[-1] += " " + part
    return "\n".join(lines)


def usage_parser():
    """client.py's ArgumentParser: usage errors in the one error format, and
    "did you mean --trace?" for an unknown option."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import client                                   # the project's client, as a library
    return client.ArgumentParser


def make_parser():
    """The demo's options (designed once: see EXAMPLES and the README)."""
    width = terminal_width()
    p = usage_parser()(prog=program(), allow_abbrev=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage=usage_line(width),
                       description="Run mutual TLS for real: success and failures, explained.",
                       epilog=fit_help(EXAMPLES.format(examples=examples(width)), width))
    p.add_argument("names", nargs="*", metavar="NAME", help="scenarios, demonstrations or exhibits "
                   "to run, in this order (see --list)")
    mode = p.add_argument_group("modes (one at a time)", "with none: the three basic cases "
                                "(success, no-cacert, no-client-cert)")
    mode.add_argument("--all", action="store_true", help="run every scenario of the failure "
                      "gallery: each failure, and the successes beside them")
    mode.add_argument("--lesson", action="store_true", help="the classroom path: six cases in "
                      "teaching order, each with what you just saw (--lesson [--pause])")
    mode.add_argument("--mistakes", action="store_true", help="run every mistakes-gallery exhibit")
    mode.add_argument("--list", action="store_true", help="list every name and exit")
    mode.add_argument("--check", action="store_true", help="check your own certificates "
                      "(--cacert, --cert, --key) and, given a URL, a server")
    check = p.add_argument_group("files for --check")
    check.add_argument("--cacert", metavar="CA", help="the CA certificate you trust")
    check.add_argument("--cert", metavar="CERT", help="your client certificate")
    check.add_argument("--key", metavar="KEY", help="its private key (leave it out when the "
                       "key sits in the CERT file)")
    mod = p.add_argument_group("modifiers (with a run of cases)")
    mod.add_argument("--tls1.2", dest="tls12", action="store_true",
                     help="rerun each case with client.py's code limited to TLS 1.2, "
                          "beside openssl s_client and curl; then show the client "
                          "certificate in clear (cleartext-cert)")
    mod.add_argument("--trace", action="store_true",
                     help="draw each handshake as a ladder, from openssl s_client -trace")
    mod.add_argument("--raw-trace", action="store_true", help="print s_client -trace's raw output")
    mod.add_argument("--verbose", action="store_true",
                     help="show every openssl command that builds the certificates")
    mod.add_argument("--markdown", action="store_true", help="print only the gallery table, "
                     "as Markdown, from real runs (every scenario unless NAMEs are given)")
    mod.add_argument("--certs", default=os.path.join(HERE, "certs"), metavar="DIR",
                     help="certificates folder (default: certs/ next to this script)")
    mod.add_argument("--port", type=int, metavar="N",
                     help="the demo's servers listen on N, N+1, ... (make demo passes PORT); "
                          "a port that is taken gives way to a free one (default: 3000 for "
                          "--lesson, so the projected commands name make run's port; else "
                          "free ones)")
    mod.add_argument("--no-curl", action="store_true", help="do not run the curl commands")
    mod.add_argument("--width", type=int, metavar="N",
                     help="wrap output at N columns (default: the terminal's, else 100)")
    mod.add_argument("--pause", action="store_true", help="wait for Enter between cases")
    return p


MODES = ("all", "lesson", "mistakes", "list", "check")
RUN_MODIFIERS = ("tls12", "trace", "raw_trace", "verbose", "markdown", "no_curl", "pause", "port")


def option(dest):
    """An option's spelling on the command line, from its argparse dest."""
    return "--tls1.2" if dest == "tls12" else "--" + dest.replace("_", "-")


def parse_args(argv):
    """Read the command line and refuse, in one line, what does not fit."""
    p = make_parser()
    args = p.parse_intermixed_args(argv)
    modes = [m for m in MODES if getattr(args, m)]
    urls = [n for n in args.names if "://" in n]
    names = [n for n in args.names if "://" not in n]
    if len(modes) > 1:
        p.error(f"{option(modes[0])} and {option(modes[1])} are two modes; choose one")
    mode = modes[0] if modes else None
    if mode in ("all", "lesson", "mistakes", "list") and names:
        p.error(f"{option(mode)} takes no NAME (got {names[0]!r}); to run just that, "
                f"leave out {option(mode)}: {program()} {shlex.join(names)}")
    if urls and mode != "check":
        p.error(f"{urls[0]!r} is a URL, which only --check takes: {program()} --check "
                f"--cacert CA {urls[0]}")
    if mode == "check":
        if names:
            p.error(f"--check takes no NAME (got {names[0]!r}), only an optional URL")
        if len(urls) > 1:
            p.error(f"--check takes one URL (got {len(urls)})")
        if not args.cacert:
            p.error("--check needs --cacert CA: the CA certificate you trust")
        if args.key and not args.cert:      # --cert alone is fine: the key may sit in its file
            p.error("--key needs --cert: pass both, e.g. --cert certs/client.crt "
                    "--key certs/client.key")
    for dest in ("cacert", "cert", "key"):
        if getattr(args, dest) and mode != "check":
            p.error(f"{option(dest)} belongs to --check (the demo's cases use files from --certs)")
    for dest in RUN_MODIFIERS:
        if getattr(args, dest) and mode in ("list", "check"):
            p.error(f"{option(dest)} does not apply to {option(mode)}")
        scenario_only = dest not in ("verbose", "no_curl", "pause")
        if getattr(args, dest) and mode == "mistakes" and scenario_only:
            p.error(f"{option(dest)} applies to scenarios, not to --mistakes")
    if args.port is None:
        args.port = 3000 if mode == "lesson" else 0
    if not 0 <= args.port <= 65000:                 # room for N+1, ... above it
        p.error(f"--port {args.port} is not a port for the demo's servers: use 1-65000, "
                f"e.g. --port 3000")
    if args.width is not None and args.width < 60:
        p.error(f"--width {args.width} is too narrow: use 60 or more")
    args.mode, args.urls = mode, urls
    args.names = names
    return args


def list_names():
    """Print every scenario, demonstration and exhibit, one line each."""
    gallery = load_gallery()
    exhibits = [(e.name, e.title) for e in gallery.EXHIBITS] if gallery else []
    entries = [(s.name, s.title) for s in SCENARIOS] + list(DEMOS.items()) + exhibits
    width = max(len(name) for name, _ in entries)
    for name, title in entries:
        screen.say(title, f"{name:{width}}  ")
    if gallery is None:
        screen.say("(the mistakes gallery, mistakes/gallery.py, is not built yet: no exhibits)")
    return 0


def resolve_names(names):
    """Check each name; return [(kind, name)] in the order given, kind being
    'scenario', 'demo' or 'exhibit'."""
    plan, gallery = [], None
    for name in names:
        if name in SCENARIO_BY_NAME:
            plan.append(("scenario", name))
        elif name in DEMOS:
            plan.append(("demo", name))
        else:
            gallery = gallery or load_gallery()
            exhibits = [e.name for e in gallery.EXHIBITS] if gallery else []
            if name not in exhibits:
                known = list(SCENARIO_BY_NAME) + list(DEMOS) + exhibits
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                what = "a scenario or an exhibit" if gallery else \
                    "a scenario (and the mistakes gallery, mistakes/gallery.py, is not built yet)"
                raise DemoError("unknown name", f"{name!r} is not {what}",
                                f"{hint}see {program()} --list")
            plan.append(("exhibit", name))
    return plan


# --- checking your own certificates --------------------------------------
# (built separately: check_certificates(cacert, cert, key, url) -> exit code)


# --- checking your own certificates --------------------------------------
#
# `--check` points the project at *your* files, and optionally your server:
#     python3 mtls_demo.py --check --cacert CA [--cert CERT [--key KEY]] [URL]
# CERT and KEY are what a client presents (curl's --cert/--key; no KEY when it
# sits in CERT); CA is the CA that must vouch for them, and for the server
# at URL. Each check prints one line, "ok   ...", "warn ..." or "FAIL ... --
# fix"; the exit code is 0 when nothing failed, 1 when something did, 2 for
# a missing file or option.
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
                          "extensions public_key signature")


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
        self.say(screen.paint(mark, colour) + " " + body, plain_length=len(mark) + 1)
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
         "-text", "-certopt", "no_header,no_serial,no_validity,no_subject,"
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
    signature = re.search(r"Signature Algorithm: (\S+)", out)
    return Cert(pem, fields.get("subject", ""), fields.get("issuer", ""),
                to_seconds(fields.get("notBefore")), to_seconds(fields.get("notAfter")),
                int(version.group(1)) if version else 3, key_type.group(1) if key_type else "?",
                int(bits.group(1)) if bits else None, extensions, public_key(out),
                signature.group(1) if signature else "?")


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
        if exc.reason in LOAD_HINTS and exc.reason != "KEY_VALUES_MISMATCH":
            python = f"Python ssl will not load the pair, {exc.reason}: {LOAD_HINTS[exc.reason]}"
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


def nearby_files(folders, skip):
    """The PEM blocks of each certificate-like file (*.crt, *.pem, *.cer) next
    to the user's: (path, blocks) pairs, at most 500 files a folder, 1 MB each."""
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
                    yield full, pem_blocks(f.read(1 << 20))
            except OSError:
                continue


def find_nearby(issuer, folders, skip):
    """Look for the issuer's certificate in the files next to the user's:
    a missing intermediate is usually there. Returns (path, certificate)."""
    cn = common_name(issuer)
    for full, blocks in nearby_files(folders, skip):
        for label, block in blocks:
            # A cheap filter first: the CN's bytes appear in the DER as they are.
            if label != "CERTIFICATE" or cn.encode() not in pem_to_der(block):
                continue
            found = read_certificate(block)
            if found and found.subject == issuer:
                return full, found
    return None, None


def find_chain_file(leaf, folders, skip):
    """A file next to the user's that starts with the same leaf and holds more
    (trustme's and certbot's chain/fullchain files): (path, its certificates)."""
    der = pem_to_der(leaf.pem)
    for full, blocks in nearby_files(folders, skip):
        pems = [b for label, b in blocks if label == "CERTIFICATE"]
        if len(pems) > 1 and pem_to_der(pems[0]) == der:
            certs = [read_certificate(p) for p in pems]
            if None not in certs:
                return full, certs
    return None, None


def chains_to(ca_path, certs, tmp):
    """Does certs[0] chain to the CA file, the rest of `certs` helping as
    intermediates? (openssl verify, dates and strict rules aside: the chain
    check judges those.)"""
    args = ["verify", "-no_check_time", "-CAfile", ca_path]
    if certs[1:]:
        args += ["-untrusted", write_pems(certs[1:], os.path.join(tmp, "nearby-rest.pem"))]
    code, _ = run_openssl(args + [write_pems(certs[:1], os.path.join(tmp, "nearby-first.pem"))])
    return code == 0


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


def check_completeness(cert_path, certs, cas, ca_path, report, key=None, tmp=None):
    """The cert file must hold the leaf and every intermediate up to (not
    necessarily including) a CA in the CA file. Returns what it learned:
    ("complete" | "incomplete" | "other-ca" | "unknown", the file holding the issuer);
    for "other-ca", (the file, the other root CA's certificate)."""
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
        return "other-ca", (cert_path, top, None)
    folders = [os.path.dirname(cert_path) or ".", os.path.dirname(ca_path) or "."]
    skip = {os.path.abspath(cert_path), os.path.abspath(ca_path)}
    q, ca_name = shlex.quote, os.path.basename(ca_path)
    # trustme and certbot write the leaf alone and, beside it, a file with the
    # leaf followed by its intermediates: that file is the one to present.
    chain_path, chain_certs = find_chain_file(certs[0], folders, skip)
    if chain_path and chains_to(ca_path, chain_certs, tmp):
        steps = " -> ".join(c.subject for c in path_in_file(chain_certs))
        report.line("FAIL", "complete chain", f"{name} holds only {top.subject}, issued by "
                    f"{top.issuer}, which {ca_name} does not hold; {chain_path} next to it holds "
                    f"the whole chain ({steps}, which chains to {ca_name})",
                    f"use {chain_path} as the certificate:",
                    tools=chain_fix_tools(chain_path, key or "KEY"))
        return "incomplete", chain_path
    # Otherwise climb: the issuer's certificate, then its issuer's, from the
    # files nearby, until one is issued by a CA in the CA file.
    found, current = [], top
    for _ in range(8):                          # a deeper chain than this is not a real one
        if any(issued(c, current) for c in cas) or current.subject == current.issuer:
            break
        found_path, issuer = find_nearby(current.issuer, folders, skip)
        if issuer is None or any(issuer.pem == c.pem for _, c in found):
            break
        found.append((found_path, issuer))
        current = issuer
    if not found:
        report.line("FAIL", "complete chain", f"{name} ends at {top.subject}, issued by "
                    f"{top.issuer}, which is neither in {name} nor in {ca_name} "
                    f"(and in no file next to them)",
                    f"if {top.issuer} is an intermediate CA, append its certificate: "
                    f"cat {q(cert_path)} INTERMEDIATE.crt > chain.pem and use chain.pem; "
                    f"if it is another root CA, this certificate is from the wrong CA (see chain)")
        return "unknown", None
    names = " and ".join(f"{c.subject} (in {p})" for p, c in found)
    if current.subject == current.issuer and not any(c.pem == current.pem for c in cas):
        # Not a gap in the file but another CA: the chain check says it, with the
        # chain to send too when that CA's intermediates were found.
        chain = os.path.splitext(cert_path)[0] + "-chain.pem"
        send = chain_command(cert_path, found[:-1], chain) if found[:-1] else None
        return "other-ca", (found[-1][0], current, send and (send, chain))
    if not chains_to(ca_path, [c for _, c in found], tmp):
        report.line("FAIL", "complete chain", f"{name} ends at {top.subject}; the issuers found "
                    f"next to it, {names}, do not chain to {ca_name} (the next one, "
                    f"{current.issuer}, is in no file here)",
                    f"ask whoever issued {name} for its whole chain, leaf first, and use that "
                    f"file as the certificate")
        return "unknown", None
    chain = os.path.splitext(cert_path)[0] + "-chain.pem"
    how = chain_command(cert_path, found, chain)
    report.line("FAIL", "complete chain", f"{name} is incomplete: it ends at {top.subject}, issued "
                f"by the intermediate CA {names}, which chains to {ca_name}; a peer that trusts "
                f"only the root cannot link them",
                f"send the chain: {how}, then use it as the certificate:",
                tools=chain_fix_tools(chain, key or "KEY"))
    return "incomplete", found[0][0]


def chain_command(cert_path, found, chain):
    """The shell command that writes the leaf's file, then each intermediate
    found nearby, into `chain`: `cat` for a file that holds only what the
    chain needs; for one that holds more, `openssl x509 -in` when it is the
    file's first certificate, else `awk` picks out its block."""
    q = shlex.quote
    wanted = {pem_to_der(c.pem) for _, c in found}
    parts, seen = [f"cat {q(cert_path)}"], set()
    for file, cert in found:
        if file in seen:
            continue
        seen.add(file)
        with open(file, "rb") as f:
            ders = [pem_to_der(b) for label, b in pem_blocks(f.read(1 << 20))
                    if label == "CERTIFICATE"]
        if set(ders) <= wanted:
            parts[0] += f" {q(file)}"           # the whole file belongs in the chain
        elif ders and ders[0] == pem_to_der(cert.pem):
            parts.append(f"openssl x509 -in {q(file)}")
        else:                                   # the k-th certificate block of the file
            k = ders.index(pem_to_der(cert.pem)) + 1
            parts.append(f"awk '/BEGIN CERTIFICATE/{{n++}} n=={k}; "
                         f"/END CERTIFICATE/ && n=={k}{{exit}}' {q(file)}")
    if len(parts) == 1:
        return f"{parts[0]} > {q(chain)}"
    return f"({'; '.join(parts)}) > {q(chain)}"


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
    66: "see key size", 67: "see key size", 68: "see signature",
}


# What Python's ssl says when it will not even load a certificate and key
# (SSL_CTX_use_certificate at the security level), and the check that explains it.
LOAD_HINTS = {"CA_MD_TOO_WEAK": "see signature", "EE_KEY_TOO_SMALL": "see key size",
              "CA_KEY_TOO_SMALL": "see key size", "KEY_VALUES_MISMATCH": "see key match"}


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


def check_chain(cert_path, certs, ca_path, completeness, report, tmp, role="client", key=None):
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
    if state == "no-ca":
        report.line("FAIL", "chain", said, f"{os.path.basename(ca_path)} holds no CA "
                    f"certificate: see CA")
        return False
    if code in (2, 20, 21) and state == "other-ca":
        other_path, other_root, send = found
        report.line("FAIL", "chain", f"{said}. {name} was issued under another CA, "
                    f"{other_root.subject} (in {other_path}), not by the CA in "
                    f"{os.path.basename(ca_path)}: a peer that trusts that CA refuses it (unknown_ca)",
                    f"get a certificate signed by the CA the peer trusts, or (if you run the "
                    f"peer) add {other_path} to the CAs it trusts"
                    + (f" and send the chain: {send[0]}, then use it as the certificate:"
                       if send else ""),
                    tools=chain_fix_tools(send[1], key or "KEY") if send else ())
        return False
    hint = verify_hint(code, depth, subject)
    if code not in VERIFY_HINTS:            # a strict-only failure? ask again without -x509_strict
        _, lax = openssl_verify(certs[0], certs[1:], ca_path, purpose, tmp, strict=False)
        if lax is None:
            said += "; without -x509_strict openssl verify accepts it: only strict verifiers refuse it"
    report.line("FAIL", "chain", said, hint)
    return False


def is_weak_signature(algorithm):
    """SHA-1 or MD5 (or older): collisions can be made, so a signature can be forged."""
    return bool(re.search(r"(?i)sha1|md[245]", algorithm))


def check_signature(cert_path, chain, ca_path, key_path, cas, report):
    """How each certificate of the chain is signed: not with SHA-1 or MD5.
    A self-signed root's own signature is never checked by anyone, so it does not count."""
    signed = [c for c in chain if c.subject != c.issuer]
    weak = [c for c in signed if is_weak_signature(c.signature)]
    if not weak:
        report.line("ok", "signature", ", ".join(f"{c.subject} signed with {c.signature}"
                                                 for c in signed)
                    or "only self-signed certificates")
        return True
    # OpenSSL 3 refuses SHA-1 signatures from security level 1 up (CA_MD_TOO_WEAK);
    # `openssl verify` checks no security level by default, so the chain check can say OK.
    renew = renew_command(cert_path, key_path, ca_path, cas) if weak[0] is chain[0] else None
    fix = (f"have the CA re-sign it with SHA-256: {renew.replace(' -days ', ' -sha256 -days ')}"
           if renew else f"have {weak[0].issuer} re-sign it with SHA-256 (openssl x509 -req "
           f"... -sha256, or openssl ca -md sha256), keeping its key and extensions")
    report.line("FAIL", "signature", "; ".join(f"{c.subject} is signed with {c.signature}"
                                               for c in weak)
                + ": SHA-1 and MD5 signatures can be forged, and OpenSSL 3 refuses them from "
                "security level 1 up (Python's ssl and curl: ca md too weak, CA_MD_TOO_WEAK), "
                "though openssl verify without -auth_level 1 accepts them", fix)
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
            report.line("ok", "CA", f"{ca.subject} in {name}: basicConstraints "
                        f"{', '.join(ca.extensions['Basic Constraints'])}, keyUsage "
                        f"{', '.join(ca.extensions['Key Usage'])}")


def can_anchor(cert):
    """Could this certificate end a chain as its CA? CA:TRUE, or self-signed
    without basicConstraints (a v1 root, or a CA that lacks the extension:
    the CA check says what strict verifiers make of it). A leaf cannot."""
    basic = cert.extensions.get("Basic Constraints")
    return "CA:TRUE" in basic if basic is not None else cert.subject == cert.issuer


def ca_problem(ca, ca_path, v1_leaf=False):
    """(why, fix) if a CA certificate would not vouch for anyone under strict rules, else None."""
    basic = ca.extensions.get("Basic Constraints")
    ku = ca.extensions.get("Key Usage")
    if not can_anchor(ca):
        return ("is not a CA (no basicConstraints CA:TRUE): it cannot vouch for anyone",
                "pass the CA's certificate with --cacert (the issuer of your certificates)")
    no_basic = basic is None and ca.version > 1     # a v1 root has no extensions at all
    if not no_basic and ku is not None and "Certificate Sign" in ku:
        return None
    key = os.path.splitext(ca_path)[0] + ".key"
    key = key if os.path.exists(key) else "CA.key"
    subj = "/" + "/".join(p.replace("/", "\\/") for p in reversed(re.split(r"(?<!\\),", ca.subject)))
    have = "no keyUsage" if ku is None else f"keyUsage {', '.join(ku)} without keyCertSign"
    if no_basic:
        have = "no basicConstraints" + ("" if ku is None else f" (only keyUsage {', '.join(ku)})")
    # openssl x509 -x509_strict says "invalid CA certificate" (error 79) for a
    # self-signed v3 CA without basicConstraints; lenient verifiers accept it.
    return (f"has {have}: strict verifiers (Python 3.13's ssl.create_default_context(), "
            f"anything with VERIFY_X509_STRICT) refuse every chain through it"
            + (" as an invalid CA certificate" if no_basic else "")
            + ("; this, not the v1 leaf, is what strict checks reject" if v1_leaf else ""),
            f"reissue the CA with the same key and name, so existing certificates stay valid: "
            f"openssl req -x509 -new -key {shlex.quote(key)} -subj {shlex.quote(subj)} -days 3650 "
            + ("-addext 'basicConstraints=critical,CA:TRUE' " if no_basic else "")
            + "-addext 'keyUsage=critical,keyCertSign,cRLSign' -out ca-new.crt")


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


def check_strict(cert_path, key_path, ca_path, report, tmp, chain_state=None):
    """Python's own ssl, strict: does a server that trusts CA accept CERT/KEY?
    `chain_state` is what check_completeness learned (another CA: see chain)."""
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
                    f"({engine})", LOAD_HINTS.get(exc.reason, "see the checks above for the cause"))
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
    if hint == "see complete chain" and chain_state == "other-ca":
        hint = "see chain"                  # no gap in the file: the issuer is another CA
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
    if not pems and cert_path and "error setting certificate" in out:
        # s_client would not load our certificate (a SHA-1 signature, a small key):
        # that is our side's fault, found above; look at the server without it.
        m = re.search(r"error:[0-9A-F]+:[^:]*:[^:]*:([^:]+):", out)
        reason = m.group(1) if m else last_error_line(out)
        report.line("warn", "server", f"openssl s_client would not present your certificate "
                    f"({reason}, {LOAD_HINTS.get(reason.upper().replace(' ', '_'), 'see above')})"
                    f": the server is looked at without one")
        pems, names, requests_cert, out = fetch_server_chain(host, port, None, None)
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
        what, _, fix = failure.message.partition(" -- ")
        # A file Python's ssl will not load: the check that found why says the fix.
        reason = next((r for r in LOAD_HINTS if r in what), None)
        report.line("FAIL", "request", f"client.py (make_client_context, fetch) says: "
                    f"{failure.label}: {what}", LOAD_HINTS[reason] if reason else fix or None)
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
        print("error: interrupted: stopped by Ctrl-C -- run it again to retry", file=sys.stderr)
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
    # The key file the printed fixes name: --key, or the cert file when the key is in it.
    key_for_fix = key or (cert if loaded and loaded[2] else None)
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
            renew = (renew_command(cert, key_for_fix, cacert, cas) if c is certs[0] and key_info
                     else None)
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
        # A leaf passed as --cacert vouches for nobody: the CA check has said so,
        # and a chain "complete" up to it, or a handshake that trusts it, means nothing.
        real_cas = [c for c in cas if can_anchor(c)]
        completeness = (check_completeness(cert, certs, real_cas, cacert, report, key_for_fix,
                                           tmp) if real_cas else ("no-ca", None))
        check_chain(cert, certs, ca_pem, completeness, report, tmp, key=key_for_fix)
        check_signature(cert, path_in_file(certs), cacert, key_for_fix, cas, report)
        if key_info and real_cas:
            check_strict(cert_pem, key_info[0], ca_pem, report, tmp, completeness[0])
        check_purpose(certs[0], report)
        check_identity(certs[0], report)
        check_key_size(path_in_file(certs), key_info, report)
    if url and ca_pem:
        report.say(f"The server at {url}:")
        chain = path_in_file(loaded[0]) if loaded else []
        cert_pem, key_pem = (loaded[1], key_info[0]) if loaded and key_info else (None, None)
        check_server(url, ca_pem, cacert, chain, cert_pem, key_pem, report, tmp)


# --- main ----------------------------------------------------------------

def choose_plan(args):
    """The cases to run, in order, as [(kind, name)]."""
    if args.mode == "all":
        return [("scenario", s.name) for s in SCENARIOS]
    if args.mode == "lesson":
        return [("scenario", lesson.name) for lesson in LESSON]
    if args.mode == "mistakes":
        gallery = load_gallery()
        if gallery is None:
            raise gallery_missing()
        return [("exhibit", e.name) for e in gallery.EXHIBITS]
    if args.names:
        return resolve_names(args.names)
    if args.markdown:
        return [("scenario", s.name) for s in SCENARIOS]
    return [("scenario", name) for name in ARTICLE_CASES]


class Pauser:
    """--pause: wait for Enter between cases, if there is someone to press it."""

    def __init__(self, wanted):
        self.wanted, self.told = wanted, False

    def wait(self, what):
        """Wait for Enter ("-- press Enter `what` --"); without a terminal, say
        once that we do not."""
        if not self.wanted:
            return
        stdin = sys.stdin
        if stdin is None or stdin.closed or not stdin.isatty():
            if not self.told:
                screen.say("(--pause: input is not a terminal, so the demo does not pause)")
                self.told = True
            self.wanted = False
            return
        screen.print()
        try:
            input(f"-- press Enter {what} (Ctrl-C stops) --")
        except EOFError:
            screen.say("(--pause: input closed, so the demo does not pause any more)")
            self.wanted = False


def run_plan(plan, args):
    """Run the planned cases, print the table; return the exit code."""
    certs = shown_path(args.certs)
    kinds = {kind for kind, _ in plan}
    names = [name for _, name in plan]
    article_only = kinds == {"scenario"} and set(names) <= set(ARTICLE_CASES)
    ensure_certificates(certs, "certs" if article_only or kinds == {"demo"} else "scenarios",
                        args.verbose, load_gallery() if "exhibit" in kinds else None)
    args.no_curl = args.no_curl or args.markdown          # the table has no curl column
    args.curl = not args.no_curl and shutil.which("curl") is not None
    if not args.no_curl and not args.curl:
        screen.say("note: curl is not installed, so the curl commands are left out "
                   "(apt-get install curl; --no-curl hides this note).")
    if args.tls12 and shutil.which("openssl") is None:
        screen.say("note: openssl is not installed, so the TLS 1.2 replay shows curl only.")

    if args.mode == "lesson":
        screen.print()
        screen.say(LESSON_INTRO.format(certs=certs))
    results, runs, pauser = [], [], Pauser(args.pause)
    lessons = {lesson.name: lesson for lesson in LESSON}
    # Start every server the plan needs at once: they boot in parallel.
    # Inside the try, with nothing printed before it: a pipe closed early
    # (| head) or a Ctrl-C must still reach the finally that stops them.
    # With --port N, the first server listens on N, the next on N+1, ...
    servers = {}
    set_make_run(certs, args.port)
    try:
        for kind, name in plan:
            options = tuple(server_command(SCENARIO_BY_NAME[name], certs)) if kind == "scenario" \
                else tuple(server_command(SCENARIO_BY_NAME["success"], certs))
            if kind != "exhibit" and options not in servers:
                port = args.port + len(servers) if args.port else 0
                servers[options] = ServerProcess(options, port)
        for number, (kind, name) in enumerate(plan, 1):
            if number > 1 and args.mode != "lesson":
                pauser.wait(f"for case {number} of {len(plan)}")
            if kind == "exhibit":
                gallery = load_gallery()
                result = gallery.run_exhibit(name, os.path.abspath(args.certs), width=screen.width)
                results.append(Result(*result))
                continue
            if kind == "demo":
                screen.heading(f"{name}: {DEMOS[name]}")
                server = servers[tuple(server_command(SCENARIO_BY_NAME["success"], certs))]
                results.append(cleartext_case(server, certs))
                continue
            scenario = SCENARIO_BY_NAME[name]
            if args.mode == "lesson":        # what is about to happen, then the question
                lesson = lessons[name]
                screen.heading(f"Case {number} of {len(plan)}: {lesson.heading} ({name})")
                screen.say(lesson.setup[0].upper() + lesson.setup[1:], "Setup: ")
                screen.say(lesson.ask[0].upper() + lesson.ask[1:], "Ask the class: ", code="1")
                pauser.wait("to run it")
            else:
                screen.heading(f"{name}: {scenario.title}")
            if scenario.strict and not STRICT_CHECKS:
                results.append(skipped_case(scenario))
                continue
            case = run_case(scenario, servers[tuple(server_command(scenario, certs))], certs,
                            args, lessons[name] if args.mode == "lesson" else None)
            runs.append(case)
            results += [case.result] + ([case.tls12] if case.tls12 else [])
    finally:
        for server in servers.values():
            server.stop()
    if args.markdown:
        screen.quiet = False
        for line in markdown_table(runs):
            print(line)
        return 0 if all(r.ok is not False for r in results) else 1
    print_table(results, LESSON_TABLE_WIDTH if args.mode == "lesson" else None)
    matched = sum(r.ok is True for r in results)
    skipped = sum(r.ok is None for r in results)
    counted = len(results) - skipped
    screen.print()
    screen.say(f"{matched} of {counted} cases behaved as expected."
               + (f" {skipped} skipped (see above)." if skipped else ""))
    if args.mode == "lesson":
        default = os.path.abspath(args.certs) == os.path.join(HERE, "certs")
        p = program() + ("" if default else f" --certs {shlex.quote(certs)}") + \
            (f" --port {args.port}" if args.port else "")
        screen.say(f"Next: {p} --all (every scenario), --trace NAME (the handshake, drawn), "
                   f"--tls1.2 NAME (the same under TLS 1.2).")
    return 0 if matched == counted else 1


def main(argv=None):
    """Run the chosen cases and print the table; exit 0 if all matched."""
    global screen
    args = parse_args(argv)
    introduced.clear()
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")      # see no-color.org
    screen = Screen(args.width or terminal_width(), colour, quiet=args.markdown)
    try:
        if args.mode == "list":
            return list_names()
        if args.mode == "check":
            checker = globals().get("check_certificates")
            if checker is None:
                raise DemoError("not built yet", "--check (checking your own certificates) is "
                                "not built yet", "meanwhile: " + (
                                    f"openssl verify -CAfile {shlex.quote(args.cacert)} "
                                    f"{shlex.quote(args.cert)}" if args.cert else
                                    f"openssl x509 -in {shlex.quote(args.cacert)} -noout -text"))
            return checker(args.cacert, args.cert, args.key, args.urls[0] if args.urls else None,
                           width=screen.width)
        plan = choose_plan(args)
        others = [name for kind, name in plan if kind != "scenario"]
        if args.markdown and others:
            raise DemoError("bad option", f"--markdown makes the failure-gallery table, of "
                            f"scenarios only, and {others[0]!r} is not one",
                            f"leave it out: {program()} --markdown "
                            + " ".join(n for k, n in plan if k == "scenario"))
        # --tls1.2 shows both differences: the verdict inside the handshake
        # (each case's rerun), and the client certificate in clear (the relay).
        if args.tls12 and not args.markdown and ("demo", "cleartext-cert") not in plan:
            plan.append(("demo", "cleartext-cert"))
        return run_plan(plan, args)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the demo's servers are stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:            # output piped into `head`, say: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
