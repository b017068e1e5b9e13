#!/usr/bin/env python3
"""client.py: an HTTPS client that presents a certificate (mutual TLS).

The Python twin of the article's curl command, with curl's option names:

    python3 client.py --cacert certs/ca.crt --cert certs/client.crt \\
                      --key certs/client.key https://localhost:3000/

--cacert  the CA we trust to vouch for the *server* (without it: only the
          system's CAs, exactly like curl, so a home-made CA is refused)
--cert    our certificate, sent when the server asks for one (a chain file,
          leaf then intermediate, sends both)
--key     the private key that proves the certificate is ours

Reads those files (a pipe such as <(cat certs/ca.crt) works too); writes the
response body to stdout. Needs Python 3.9+. On failure it prints one line,
"error: <label>: <what happened, and why> -- <the fix>", to stderr, and exits with:

    0  success            4  server not trusted (its certificate failed our checks)
    2  usage or files     5  the server rejected our certificate, or the lack of one
    3  cannot connect     6  HTTP error status (e.g. 403 Forbidden)
                          7  other TLS or protocol failure

Reading order: the TLS context, the request, why it failed, reading files
and URLs carefully, main.
"""

import sys

# Checked before anything else runs, so an old Python gets one line instead
# of a traceback. (Python 3.5 and older stop earlier, at a SyntaxError on
# the f-strings below: that cannot be helped.)
if sys.version_info < (3, 9):
    sys.stderr.write("error: unsupported Python: client.py needs Python 3.9+ (this is %d.%d) "
                     "-- run it with python3.9 or newer\n" % sys.version_info[:2])
    sys.exit(2)

import http.client
import os
import shlex
import socket
import ssl
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from armour.command_line import ArgumentParser, seconds  # noqa: F401  (the demo imports it here)
from armour.keylog import KeylogError, open_keylog

EXIT_OK, EXIT_USAGE, EXIT_CONNECT = 0, 2, 3
EXIT_SERVER_UNTRUSTED, EXIT_CLIENT_REJECTED, EXIT_HTTP, EXIT_TLS = 4, 5, 6, 7


class Failure(Exception):
    """A failed request, classified: exit code, short label, and the sentence
    a user needs (what, why -- fix)."""

    def __init__(self, code, label, message):
        super().__init__(f"{label}: {message}")
        self.code, self.label, self.message = code, label, message


# --- the TLS context: whom we trust, and what we present -----------------

def make_client_context(cacert=None, cert=None, key=None, keylog=None):
    """Build the TLS settings of an mTLS client: which CA may vouch for the
    server, and (optionally) our own certificate and key."""
    # PROTOCOL_TLS_CLIENT turns on both checks a client must make:
    # verify_mode = CERT_REQUIRED (the server's certificate must chain to a
    # CA we trust) and check_hostname (it must name the host in the URL).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Strict X.509 checks, as ssl.create_default_context() sets on 3.13.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    # The host must be in the subjectAltName; the CN is never consulted
    # (RFC 6125 6.4.4), even when the SAN lists only IP addresses.
    context.hostname_checks_common_name = False
    # Key-exchange groups: OpenSSL's defaults, X25519 (whose key share we send
    # first), P-256, X448, P-521, P-384, ffdhe2048-8192. The server picks one,
    # so a wide offer reaches more servers; a costly group is the server's to
    # refuse, as server.py does (groups.cnf).
    if cacert:
        pem = read_pem(cacert, "CA certificate", "--cacert", "CERTIFICATE")
        try:
            context.load_verify_locations(cadata=pem)     # text we read: pipes work too
        except (ssl.SSLError, ValueError):
            raise Failure(EXIT_USAGE, "bad file", f"CA certificate {cacert!r} holds no valid "
                          f"PEM certificate -- pass the CA certificate, e.g. --cacert certs/ca.crt")
        if context.cert_store_stats()["x509_ca"] == 0:     # a leaf can vouch for nobody
            raise Failure(EXIT_USAGE, "bad file", f"{cacert!r} holds no CA certificate (none has "
                          f"basicConstraints CA:TRUE): it is a server's or a client's own "
                          f"certificate -- pass the CA that signed the server's, e.g. "
                          f"--cacert certs/ca.crt")
    else:
        context.load_default_certs()      # the system's CAs, as curl uses
    chain = ""
    if cert:
        # Sent only if the server asks (CertificateRequest); the key signs the
        # handshake transcript (CertificateVerify) to prove we hold it.
        chain = read_pem(cert, "client certificate", "--cert", "CERTIFICATE")
        key_pem = read_pem(key, "client key", "--key", "PRIVATE KEY") if key else chain
        if not key and "PRIVATE KEY-----" not in chain:
            raise Failure(EXIT_USAGE, "bad file", f"{cert!r} holds no private key -- pass the "
                          f"key too, e.g. --key certs/client.key")
        load_identity(context, cert, key, chain, key_pem)
    if keylog:
        try:
            print(open_keylog(context, keylog), file=sys.stderr)   # TLS secrets, for Wireshark
        except KeylogError as exc:          # "bad key log" in server.py; "bad file" here
            raise Failure(EXIT_USAGE, "bad file", f"{exc.what} -- {exc.fix}") from None
    # Remembered for error messages: what we trusted and what we sent.
    context.mtls_sent = {"cacert": cacert, "cert": cert, "chain": chain}
    return context


def load_identity(context, cert, key, cert_pem, key_pem):
    """Load our certificate (chain) and key into the context."""
    try:
        with tempfile.TemporaryDirectory() as folder:
            # OpenSSL reads files by name. A pipe (<(cat ...)) was read once
            # already, so OpenSSL gets a private copy, deleted right after.
            cert_path = cert if is_regular(cert) else private_copy(folder, "cert.pem", cert_pem)
            key_path = key
            if key and not is_regular(key):
                key_path = private_copy(folder, "key.pem", key_pem)
            # No passphrase prompt: a script must never stop to ask the terminal.
            context.load_cert_chain(cert_path, key_path,
                                    password=lambda: refuse_passphrase(key or cert))
    except ssl.SSLError as exc:
        # KEY_VALUES_MISMATCH: same type, other key. NO_CERTIFICATE_ASSIGNED
        # (OpenSSL 3): a key of another type (EC key, RSA certificate).
        if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED", "KEY_TYPE_MISMATCH"):
            raise Failure(EXIT_USAGE, "bad file", f"{key or cert!r} is not the private key of "
                          f"{cert!r}: they do not match -- pass the matching --key") from None
        raise Failure(EXIT_USAGE, "bad file", f"cannot load certificate {cert!r} with key "
                      f"{key or cert!r} ({exc.reason or exc}) -- pass the PEM files made "
                      f"with them, e.g. by 'make certs'") from None


def refuse_passphrase(key):
    """Called by OpenSSL when a key is encrypted: refuse, rather than prompt."""
    raise Failure(EXIT_USAGE, "encrypted key", f"{key!r} needs a passphrase -- decrypt it "
                  f"with 'openssl pkey -in {key} -out client-plain.key' and pass that with --key")


# --- the request ---------------------------------------------------------

class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Return 3xx responses as they are, instead of following them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None          # urllib then reports the 3xx as an HTTPError


def fetch(url, context, timeout=10.0):
    """GET `url` over TLS with `context`; return (status, body text).

    Raises Failure, classified, when the connection or the handshake fails.
    """
    parts = check_url(url)
    if parts.scheme == "http":
        raise describe_plain_http(parts, context, timeout)
    # ProxyHandler({}): talk to the server directly, even if https_proxy is set.
    # RefuseRedirects: like curl without -L, a 3xx is an answer, not an order:
    # following it could take us to plain http://, or show our certificate
    # to another server.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), RefuseRedirects(),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:     # a real HTTP answer, e.g. 403
        with exc:
            return exc.code, exc.read().decode("utf-8", "replace")
    except urllib.error.URLError as exc:
        # urllib wraps what fails while connecting, shaking hands and sending.
        raise classify(exc.reason, parts, context, answered=False) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # Unwrapped: it failed while we waited for the answer, after the handshake.
        raise classify(exc, parts, context, answered=True) from None


# --- why it failed -------------------------------------------------------

# Alerts a server sends when it refuses our certificate (RFC 8446 6.2).
# Under TLS 1.3 they arrive *after* our side of the handshake has finished,
# at our first read, so urllib raises them from getresponse(), unwrapped.
CLIENT_REJECTED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": ("certificate required",
        "the server requires a client certificate and we sent none -- pass --cert and --key"),
    "SSLV3_ALERT_CERTIFICATE_REVOKED": ("certificate revoked",
        "the server found our certificate in its revocation list -- get a new one"),
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": ("wrong purpose",
        "the server says our certificate is not for client authentication "
        "(it lacks extendedKeyUsage clientAuth) -- use a client certificate"),
    "SSLV3_ALERT_BAD_CERTIFICATE": ("certificate rejected",
        "the server refused our certificate (bad_certificate) -- see the server's log for why"),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": ("certificate rejected",
        "the server refused our certificate (certificate_unknown) -- see the server's log for why"),
}

# Verify codes (X509_V_ERR_*) for the *server's* chain, which we refused:
# 2 UNABLE_TO_GET_ISSUER_CERT, 18 DEPTH_ZERO_SELF_SIGNED_CERT,
# 19 SELF_SIGNED_CERT_IN_CHAIN, 20 UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
# 21 UNABLE_TO_VERIFY_LEAF_SIGNATURE; 9 CERT_NOT_YET_VALID,
# 10 CERT_HAS_EXPIRED; 62 HOSTNAME_MISMATCH, 64 IP_ADDRESS_MISMATCH.
NO_CHAIN_TO_OUR_CA = {2, 18, 19, 20, 21}
NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
           "HTTP_REQUEST", "UNKNOWN_PROTOCOL"}


def classify(reason, parts, context, answered=False):
    """Turn an exception from urllib into a Failure with a label and a fix."""
    sent = getattr(context, "mtls_sent", {"cacert": None, "cert": "?", "chain": ""})
    where = host_port(parts)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return refused_server(reason, parts, context, sent["cacert"])
    if isinstance(reason, ssl.SSLError) and reason.reason in CLIENT_REJECTED:
        return Failure(EXIT_CLIENT_REJECTED, *CLIENT_REJECTED[reason.reason])
    if isinstance(reason, ssl.SSLError) and reason.reason == "TLSV1_ALERT_UNKNOWN_CA":
        return Failure(EXIT_CLIENT_REJECTED, "unknown CA", unknown_ca(sent))
    if isinstance(reason, ssl.SSLError) and reason.reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED":
        return Failure(EXIT_CLIENT_REJECTED, "certificate expired", expired_alert(sent))
    if isinstance(reason, ssl.SSLError) and reason.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        # TLS 1.2's catch-all alert. We cannot see whether the server asked
        # for a certificate (CertificateRequest), so say both causes.
        if not sent["chain"]:
            return Failure(EXIT_TLS, "handshake failed", "the server ended the handshake with "
                           "handshake_failure, which does not say why: it wants a client "
                           "certificate and we sent none, or we share no cipher or TLS version "
                           "-- pass --cert and --key if it asks for one; else see the server's log")
        return Failure(EXIT_TLS, "handshake failed", "the server ended the handshake "
                       "(handshake_failure) -- see the server's log")
    if isinstance(reason, (ssl.SSLEOFError, ConnectionResetError, http.client.RemoteDisconnected)):
        return Failure(EXIT_TLS, "connection closed", f"{where} closed the connection without "
                       f"an answer -- see the server's log")
    if isinstance(reason, ssl.SSLError) and reason.reason in NOT_TLS:
        return Failure(EXIT_TLS, "not TLS", f"{where} answered, but not in TLS (a plain HTTP "
                       f"server?); client.py speaks only HTTPS -- for a plain HTTP server use "
                       f"curl http://{where}{parts.path or '/'}")
    if isinstance(reason, ssl.SSLError):
        return Failure(EXIT_TLS, "TLS error", f"{reason.reason or reason} -- see the server's log")
    if isinstance(reason, ConnectionRefusedError):
        return Failure(EXIT_CONNECT, "connection refused", nothing_listens(parts, sent))
    if isinstance(reason, socket.gaierror):
        return Failure(EXIT_CONNECT, "unknown host", f"cannot resolve {parts.hostname!r} -- "
                       f"fix the URL")
    if isinstance(reason, socket.timeout) and answered:
        return Failure(EXIT_TLS, "no answer", f"{where} accepted the connection and our "
                       f"request, but sent no answer in time -- see the server's log, or "
                       f"wait longer with --timeout")
    if isinstance(reason, socket.timeout):
        return Failure(EXIT_CONNECT, "timeout", f"{where} did not answer in time -- is it "
                       f"the right host and port?")
    if isinstance(reason, http.client.HTTPException):   # TLS worked; the HTTP did not
        return Failure(EXIT_TLS, "bad response", f"{where} answered something that is not "
                       f"valid HTTP ({type(reason).__name__}: {clip(str(reason), 80)!r}) -- "
                       f"is it the server you meant?")
    return Failure(EXIT_CONNECT, "connection failed", f"{where}: {clip(str(reason), 200)} -- "
                   f"check the URL")


def refused_server(error, parts, context, cacert):
    """We refused the server's certificate: say which rule it broke."""
    code, why = error.verify_code, error.verify_message
    if code in NO_CHAIN_TO_OUR_CA and not cacert:
        return Failure(EXIT_SERVER_UNTRUSTED, "server not trusted", f"the server's certificate "
                       f"does not chain to a CA this system trusts ({why}) -- pass --cacert "
                       f"with the CA that signed it, e.g. --cacert certs/ca.crt")
    if code in NO_CHAIN_TO_OUR_CA:
        # The user passed a CA: repeating "pass --cacert" would go round in a
        # circle. Typical: 'make clean && make certs' under a running server.
        cause, fix = "the server uses another CA", "else ask which CA signed its certificate"
        trust = rollover_trust(cacert)
        if trust:                     # after make ca-2 and the rollover phases
            return Failure(EXIT_SERVER_UNTRUSTED, "server not trusted", f"the server's "
                           f"certificate does not chain to the CA in --cacert {cacert!r} ({why}), "
                           f"and {trust!r} beside it trusts a CA that {cacert!r} lacks: the "
                           f"certificates went through a CA rollover (make ca-2) -- trust what "
                           f"the server trusts: --cacert {shlex.quote(trust)}")
        if code in (20, 21):          # the issuer is missing: maybe only an intermediate
            cause += ", or does not send its intermediate CA"
            fix = ("if it has an intermediate CA, serve the chain file (leaf + intermediate) "
                   "as its --cert")
        return Failure(EXIT_SERVER_UNTRUSTED, "server not trusted", f"the server's certificate "
                       f"does not chain to the CA in --cacert {cacert!r} ({why}): {cause} -- "
                       f"if you rebuilt the certificates, restart the server (or kill -HUP it); "
                       f"{fix}")
    if code in (62, 64):
        kind, a = ("IP address", "an") if code == 64 else ("name", "a")
        return Failure(EXIT_SERVER_UNTRUSTED, "hostname mismatch", f"the server's certificate "
                       f"is not valid for the {kind} {parts.hostname!r} (its subjectAltName "
                       f"does not list it; the CN is not consulted) -- use {a} {kind} listed in "
                       f"its subjectAltName, or reissue it with this {kind} in it")
    if code in (9, 10):
        ca = out_of_date(context.get_ca_certs())
        if ca and cacert:
            return Failure(EXIT_SERVER_UNTRUSTED, "CA certificate " + ca[0], f"our CA "
                           f"certificate {ca[1]!r} in --cacert {cacert!r} {ca[2]}; the server's "
                           f"own certificate may be fine -- renew the CA certificate (re-sign it "
                           f"with the same key) and pass the new one with --cacert")
        whose = "its own or an intermediate CA it sends; our CAs are in date" if cacert \
            else "its own, an intermediate or the CA"
        if code == 9:
            return Failure(EXIT_SERVER_UNTRUSTED, "server certificate not yet valid",
                           f"a certificate in the server's chain ({whose}) is not valid yet "
                           f"-- check the clocks here and on the machine that issued it")
        return Failure(EXIT_SERVER_UNTRUSTED, "server certificate expired", f"a certificate in "
                       f"the server's chain ({whose}) has expired -- the server needs a renewed "
                       f"certificate (then restart it, or kill -HUP it)")
    # Any other code: a certificate that fails the (strict) X.509 rules.
    return Failure(EXIT_SERVER_UNTRUSTED, "server certificate invalid", f"we refused the "
                   f"server's certificate ({why}) -- the server needs a certificate that "
                   f"passes strict X.509 checks")


def nothing_listens(parts, sent):
    """The message for a refused connection: the command that starts a
    server on this very port (and certificates folder), or, for ::1, why
    a server started by make run is not there."""
    where, port = host_port(parts), parts.port or 443
    if parts.hostname == "::1":
        # make run listens on localhost, which server.py resolves to 127.0.0.1.
        return (f"nothing listens on {where}; a server started with make run listens on "
                f"127.0.0.1 only -- try https://127.0.0.1:{port}{parts.path or '/'} (or "
                f"https://localhost:{port}/), or start the server with --host ::1")
    settings = ""
    folder = os.path.dirname(os.path.normpath(sent["cacert"])) if sent["cacert"] else "certs"
    if folder not in ("certs", os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs")):
        settings += f" CERTS={shlex.quote(folder)}"
    if port != 3000:
        settings += f" PORT={port}"
    return f"nothing listens on {where} -- start the server (make run{settings}) or fix the URL"


def rollover_trust(cacert):
    """After a CA rollover (make ca-2, rollover-phase1..3) the folder's
    trust.pem names a CA that --cacert lacks: return that file, or None."""
    trust = os.path.join(os.path.dirname(cacert), "trust.pem")
    if os.path.abspath(trust) == os.path.abspath(cacert) or not is_regular(trust):
        return None
    names = []
    for path in (cacert, trust):
        scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            scratch.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError, ValueError):
            return None
        names.append({ca["serialNumber"] + repr(ca["subject"]) for ca in scratch.get_ca_certs()})
    return trust if names[1] - names[0] else None


def unknown_ca(sent):
    """The message for the alert unknown_ca: the server could not verify us."""
    if sent["chain"].count("BEGIN CERTIFICATE") > 1:
        # We sent leaf + intermediate already; blaming our chain would be wrong.
        # OpenSSL also sends unknown_ca when the server lacks a CA's CRL.
        return ("the server could not verify our certificate chain, which we sent whole "
                "(unknown_ca) -- read the server's log: it may not trust our root CA (its --ca), "
                "or its --crl lacks the CRL of a CA in our chain")
    return ("the server could not verify our certificate (unknown_ca): it does not trust the CA "
            "that signed it, or lacks that CA's CRL (--crl) -- read the server's log; if an "
            "intermediate CA signed ours, pass the chain file (leaf + intermediate) as --cert")


def expired_alert(sent):
    """The message for the alert certificate_expired, sent by the server."""
    cert = sent["cert"] or "CERT"
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        scratch.load_verify_locations(cadata=sent["chain"])  # lists the intermediates we send
        ca = out_of_date(scratch.get_ca_certs())
    except (ssl.SSLError, ValueError):
        ca = None
    if ca:
        return (f"the intermediate CA certificate {ca[1]!r} that we send in --cert {cert!r} "
                f"{ca[2]} -- renew it, and put the new one in the chain file")
    return ("the server says a certificate in the chain has expired: the leaf, an intermediate, "
            f"or the server's CA (or the server's CRL) -- check ours: openssl x509 -noout -enddate -in {shlex.quote(cert)}; "
            "if it is in date, the server's CA (its --ca) or CRL has expired: see its log")


def out_of_date(ca_certs):
    """The first CA certificate outside its dates, as ("expired" or "not yet
    valid", its CN, what happened), or None. Uses get_ca_certs(), the only
    certificate dates Python's ssl module reveals."""
    now = time.time()
    for ca in ca_certs:
        name = dict(pair for rdn in ca["subject"] for pair in rdn).get("commonName", "?")
        if ssl.cert_time_to_seconds(ca["notAfter"]) < now:
            return "expired", name, f"expired on {ca['notAfter']}"
        if ssl.cert_time_to_seconds(ca["notBefore"]) > now:
            return "not yet valid", name, (f"is not valid before {ca['notBefore']} (check "
                                           f"this machine's clock)")
    return None


def describe_plain_http(parts, context, timeout):
    """An http:// URL: shake hands with TLS there, and say what answers."""
    host, port = parts.hostname, parts.port or 80
    https = urllib.parse.urlunsplit(parts._replace(scheme="https"))
    try:
        with socket.create_connection((host, port), timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                pass
    except ssl.SSLEOFError as exc:             # it hung up: that says nothing about TLS
        return classify(exc, parts, context)
    except ssl.SSLError as exc:
        if exc.reason in NOT_TLS:
            return Failure(EXIT_USAGE, "bad URL", f"{parts.geturl()!r} is plain HTTP, and "
                           f"{host_port(parts)} does not speak TLS; client.py speaks only "
                           f"HTTPS with certificates -- for a plain HTTP server use "
                           f"curl {parts.geturl()}")
    except (OSError, ValueError) as exc:
        return classify(exc, parts, context)
    # The handshake worked, or failed in a way only TLS can fail.
    return Failure(EXIT_USAGE, "bad URL", f"{parts.geturl()!r} asks for plain HTTP, but "
                   f"{host_port(parts)} speaks TLS -- use {https}")


# --- reading files and URLs carefully ------------------------------------
#
# Not the lesson, but what turns a vague OpenSSL complaint ("PEM lib") into
# a line that names the file, what is wrong with it, and the fix.

MAX_FILE = 10 << 20          # a CA bundle is well under 1 MiB

# Which target of the Makefile makes which file; the rest come from elsewhere.
MAKE_CERTS = {"ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"}
MAKE_SCENARIOS = ("rogue-", "expired-", "revoked-", "elsewhere-", "other-client", "int-", "ca.crl")


def read_pem(path, what, flag, label):
    """Read a PEM file ourselves (a pipe works too); fail with a clear line
    unless it holds a '-----BEGIN <label>-----' block."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise Failure(EXIT_USAGE, "missing file", f"{what} {path!r} not found -- "
                      f"{how_to_make(path, flag)}") from None
    except IsADirectoryError:
        raise Failure(EXIT_USAGE, "bad file", f"{what} {path!r} is a folder, not a file "
                      f"-- fix {flag}") from None
    except OSError as exc:
        raise Failure(EXIT_USAGE, "unreadable file", f"{what} {path!r} is not readable "
                      f"({exc.strerror}) -- check its permissions: "
                      f"ls -l {shlex.quote(path)}") from None
    example = {"--cacert": "certs/ca.crt", "--cert": "certs/client.crt",
               "--key": "certs/client.key"}[flag]
    if not data.strip():
        raise Failure(EXIT_USAGE, "bad file", f"{what} {path!r} is empty -- pass the {what} "
                      f"file, e.g. {flag} {example}")
    if len(data) > MAX_FILE:
        raise Failure(EXIT_USAGE, "bad file", f"{what} {path!r} is over 10 MiB, too big for "
                      f"a certificate or key -- fix {flag}")
    if f"{label}-----".encode() in data:
        return data.decode("latin-1")
    noun = "private key" if label == "PRIVATE KEY" else "certificate"
    if data[:1] == b"\x30":           # an ASN.1 SEQUENCE: DER, PEM's binary form
        tool = "pkey" if noun == "private key" else "x509"
        raise Failure(EXIT_USAGE, "bad file", f"{what} {path!r} is in DER (binary) form, not "
                      f"PEM -- convert it: openssl {tool} -inform DER -in {shlex.quote(path)} "
                      f"-out {shlex.quote(path + '.pem')}")
    if flag == "--cacert":
        raise Failure(EXIT_USAGE, "bad file", f"CA certificate {path!r} holds no PEM "
                      f"certificate -- pass the CA certificate, e.g. --cacert {example}")
    raise Failure(EXIT_USAGE, "bad file", f"{path!r} is not a PEM {noun} (no '-----BEGIN "
                  f"{label}-----' line) -- pass {flag} {example}")


def how_to_make(path, flag):
    """The command that makes a missing file, when the Makefile makes it."""
    folder, name = os.path.split(os.path.normpath(path))
    target = "certs" if name in MAKE_CERTS else "scenarios" if name.startswith(MAKE_SCENARIOS) \
        else None
    if os.path.basename(folder) == "article":     # make article-certs: CERTS/article/
        folder, target = os.path.dirname(folder), "article-certs"
    if target is None or os.path.basename(folder) != "certs":
        return f"fix {flag}"                       # not a file our Makefile makes
    certs = "" if folder == "certs" else f" CERTS={shlex.quote(folder)}"
    return f"run 'make {target}{certs}' first, or fix {flag}"


def is_regular(path):
    """True for a regular file (False for a pipe such as /dev/fd/63)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def private_copy(folder, name, text):
    """Write `text` to a new file readable only by us; return its path."""
    target = os.path.join(folder, name)
    with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
              encoding="latin-1") as f:
        f.write(text)
    return target


URL_SAFE = ":/?#[]@!$&'()*+,;=%~"     # characters a URL may hold as they are


def check_url(url):
    """Return the parts of an https:// (or http://) URL, or fail naming the URL
    the user most likely meant."""
    if "://" not in url:
        if url.lower().startswith(("https:", "http:")):       # https:/localhost:3000/
            rest = url.split(":", 1)[1].lstrip("/")
            why = "needs two slashes after 'https:'"
        else:                                                  # localhost:3000
            rest, why = url, "has no https:// in front"
            host, _, path = rest.partition("/")
            if not (("]:" in host) if host.startswith("[") else (":" in host)):
                rest = f"{host}:3000/{path}"     # no port either: server.py's, not 443
        meant = "https://" + rest + ("" if "/" in rest else "/")
        raise Failure(EXIT_USAGE, "bad URL", f"'{printable(url)}' {why} -- use {printable(meant)}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port                              # raises ValueError if out of range
    except ValueError as exc:
        fix = "write an IPv6 address inside [ ], e.g. https://[::1]:3000/" \
            if "IPv6" in str(exc) else "use a port from 1 to 65535, e.g. https://localhost:3000/"
        raise Failure(EXIT_USAGE, "bad URL", f"'{printable(url)}': {exc} -- {fix}") from None
    # http.client sends the path as it is: a space or a non-ASCII letter in
    # it must be percent-encoded first (RFC 3986 2.1).
    odd = [c for c in url if c == " " or not c.isprintable()
           or (not c.isascii() and c not in parts.netloc)]
    if odd:
        what = "a space" if odd[0] == " " else f"the character {printable(odd[0])}"
        meant = urllib.parse.quote(url, safe=URL_SAFE)
        raise Failure(EXIT_USAGE, "bad URL", f"'{printable(url)}' holds {what}, which must be "
                      f"written {urllib.parse.quote(odd[0])} in a URL -- use {meant}")
    clean = parts._replace(scheme="https", netloc=parts.netloc.rpartition("@")[2])
    if parts.scheme not in ("https", "http"):
        raise Failure(EXIT_USAGE, "bad URL", f"{url!r} is not an https:// URL -- use "
                      f"{urllib.parse.urlunsplit(clean)}")
    if not parts.hostname:
        raise Failure(EXIT_USAGE, "bad URL", f"{url!r} names no host -- use a URL such as "
                      f"https://localhost:3000/")
    if parts.username is not None or parts.password is not None:
        shown = parts._replace(netloc="user:***@" + clean.netloc) if parts.password is not None \
            else parts
        raise Failure(EXIT_USAGE, "bad URL", f"{urllib.parse.urlunsplit(shown)!r} holds a user "
                      f"name or password, which client.py never sends (our certificate says "
                      f"who we are) -- use {urllib.parse.urlunsplit(clean)}")
    return parts


def host_port(parts):
    """host:port as a user would write it, IPv6 in brackets: [::1]:3000."""
    host, port = parts.hostname or "?", parts.port or (80 if parts.scheme == "http" else 443)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def printable(text):
    """Escape control characters, so that text from elsewhere (a server's
    answer, a URL) cannot forge lines or colours in our one-line error."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clip(text, limit):
    """The first `limit` characters of text, with '...' if cut."""
    return text if len(text) <= limit else text[:limit] + "..."


# --- main ----------------------------------------------------------------

def parse_args(argv):
    """Read the command line (curl's names for the same options)."""
    p = ArgumentParser(
        description="HTTPS client that presents a client certificate (mutual TLS).",
        epilog="example: python3 client.py --cacert certs/ca.crt --cert certs/client.crt "
               "--key certs/client.key https://localhost:3000/")
    p.add_argument("url", nargs="?", default="https://localhost:3000/",
                   help="https:// URL to GET (default https://localhost:3000/)")
    p.add_argument("--cacert", metavar="FILE", help="CA that signed the server's certificate")
    p.add_argument("--cert", metavar="FILE", help="our client certificate, or chain (PEM)")
    p.add_argument("--key", metavar="FILE", help="our private key (PEM; default: inside --cert)")
    p.add_argument("--keylog", metavar="FILE", help="write TLS secrets for Wireshark (debug only)")
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="S",
                   help="seconds to wait for each step: connect, handshake, response (default 10)")
    args = p.parse_args(argv)
    if args.key and not args.cert:
        p.error("--key needs --cert (a key alone proves nothing): pass both, e.g. "
                "--cert certs/client.crt --key certs/client.key")
    return args


def http_error(status, body):
    """The one line for an HTTP answer that is not a success."""
    label = f"HTTP {status} {http.client.responses.get(status, '')}".rstrip()
    said = printable(clip(body.strip(), 200))
    answer = f'the server answered "{said}"' if said else "the server answered with no text"
    if 300 <= status < 400:
        fix = "a redirect, which client.py does not follow (like curl without -L)"
    elif status == 403:
        fix = "ask the server's operator to allow our identity (server.py --allow)"
    elif status == 404:
        fix = "check the path in the URL"
    else:
        fix = "see the server's log"
    return f"error: {label}: {answer} -- {fix}"


def main(argv=None):
    """Make one request; print the body, or one line saying what went wrong."""
    # Never crash on a character the terminal cannot show: escape it.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = parse_args(argv)
    try:
        context = make_client_context(args.cacert, args.cert, args.key, args.keylog)
        status, body = fetch(args.url, context, args.timeout)
    except Failure as failure:
        print(f"error: {failure.label}: {failure.message}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        print("error: interrupted: stopped by Ctrl-C -- run it again to retry", file=sys.stderr)
        return 130                                # the shell's code for SIGINT
    if not 200 <= status < 300:                   # 3xx too: we do not follow redirects
        print(http_error(status, body), file=sys.stderr)
        return EXIT_HTTP
    sys.stdout.write(body)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
