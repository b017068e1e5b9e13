"""client_errors.py: why client.py's request failed, in one line with the fix.

Prevents: a client failure that says only "SSL error" or "PEM lib". Every
failure becomes a Failure: an exit code (the table in client.py), a short
label, and "what happened, and why -- the fix": a server we do not trust
(which rule its certificate broke), a server that refused our certificate
(TLS 1.3 says so only at our first read, as an alert), nothing listening,
plain HTTP, and files or URLs that cannot work (DER instead of PEM, a key
that is not the certificate's, a URL without https://). Also loading our
certificate and key from a pipe (<(cat ...)) without a passphrase prompt.
"""

import contextlib
import functools
import http.client
import os
import shlex
import socket
import ssl
import stat
import sys
import tempfile
import time
import urllib.parse

from armour import ConfigError
from armour.certificate_fields import (leaf_first_command, leaf_out_of_place, pem_to_ders,
                                       read_certificate)
from armour.own_files import (  # noqa: F401  (the server's, for client.py too)
    looked_in, refuse_passphrase, warn_if_key_exposed)
from armour.keylog import KeylogError, open_keylog
from armour.refusals import printable, spell_all

# Text from elsewhere (a URL, a server's answer) as our one-line error shows
# it: control characters escaped, so it cannot forge lines or colours;
# non-ASCII letters kept.
shown = functools.partial(printable, keep_non_ascii=True)

EXIT_OK, EXIT_USAGE, EXIT_CONNECT = 0, 2, 3
EXIT_SERVER_UNTRUSTED, EXIT_CLIENT_REJECTED, EXIT_HTTP, EXIT_TLS = 4, 5, 6, 7


class Failure(Exception):
    """A failed request, classified: exit code, short label, and the sentence
    a user needs (what, why -- fix)."""

    def __init__(self, code, label, message):
        super().__init__(f"{label}: {message}")
        self.code, self.label, self.message = code, label, message


@contextlib.contextmanager
def checking_cacert(context, cacert):
    """Around load_verify_locations(cadata=...): refuse a --cacert with no
    valid certificate, or with no CA certificate (a leaf vouches for nobody)."""
    try:
        yield
    except (ssl.SSLError, ValueError):
        raise Failure(EXIT_USAGE, "bad file", f"CA certificate {cacert!r} holds no valid "
                      f"PEM certificate -- pass the CA certificate, e.g. --cacert certs/ca.crt")
    if context.cert_store_stats()["x509_ca"] == 0:
        raise Failure(EXIT_USAGE, "bad file", f"{cacert!r} holds no CA certificate (none has "
                      f"basicConstraints CA:TRUE): it is a server's or a client's own "
                      f"certificate -- pass the CA that signed the server's, e.g. "
                      f"--cacert certs/ca.crt")


def read_identity(cert, key):
    """Our certificate (chain) and key as PEM text; the key may be in --cert."""
    chain = read_pem_text(cert, "client certificate", "--cert", "CERTIFICATE")
    key_pem = read_pem_text(key, "client key", "--key", "PRIVATE KEY") if key else chain
    if not key and "PRIVATE KEY-----" not in chain:
        raise Failure(EXIT_USAGE, "bad file", f"{cert!r} holds no private key -- pass the "
                      f"key too, e.g. --key certs/client.key")
    return chain, key_pem


def open_client_keylog(context, path):
    """armour/keylog.py's open_keylog, its warning on stderr, a refusal as a Failure."""
    try:
        print(open_keylog(context, path), file=sys.stderr)
    except KeylogError as exc:          # "bad key log" in server.py; "bad file" here
        raise Failure(EXIT_USAGE, "bad file", f"{exc.what} -- {exc.fix}") from None


class IdentityFiles:
    """File names OpenSSL can read for our certificate and key, and the chain's text."""

    def __init__(self, cert, key, chain):
        self.cert, self.key, self.chain = cert, key, chain


@contextlib.contextmanager
def checking_identity(cert, key):
    """Around load_cert_chain: give OpenSSL file names it can read (a private
    copy of what a pipe, <(cat ...), gave: it was read once already, and is
    deleted right after), and turn its complaint into one line."""
    chain, key_pem = read_identity(cert, key)
    try:
        with tempfile.TemporaryDirectory() as folder:
            cert_path = cert if is_regular(cert) else private_copy(folder, "cert.pem", chain)
            key_path = key
            if key and not is_regular(key):
                key_path = private_copy(folder, "key.pem", key_pem)
            yield IdentityFiles(cert_path, key_path, chain)
    except ConfigError as exc:                  # own_files.refuse_passphrase: an encrypted key
        raise Failure(EXIT_USAGE, exc.label, f"{exc.what} -- {exc.fix}") from None
    except ssl.SSLError as exc:
        # KEY_VALUES_MISMATCH: same type, other key. NO_CERTIFICATE_ASSIGNED
        # (OpenSSL 3): a key of another type (EC key, RSA certificate).
        if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED", "KEY_TYPE_MISMATCH"):
            misordered(cert, chain)                 # the key may fit a later certificate
            raise Failure(EXIT_USAGE, "bad file", f"{key or cert!r} is not the private key of "
                          f"{cert!r}: they do not match -- pass the matching --key") from None
        raise Failure(EXIT_USAGE, "bad file", f"cannot load certificate {cert!r} with key "
                      f"{key or cert!r} ({exc.reason or exc}) -- pass the PEM files made "
                      f"with them, e.g. by 'make certs'") from None


def misordered(cert, chain):
    """Raise a Failure if the chain in `cert` starts with a CA certificate and
    holds one that is not (the leaf, which must come first): OpenSSL matched
    the key against the CA's certificate, so the key looked wrong."""
    ders = pem_to_ders(chain.encode("latin-1"))
    index = leaf_out_of_place(ders)
    if index is None:
        return
    first, leaf = read_certificate(ders[0]), read_certificate(ders[index])
    fixed = os.path.splitext(cert)[0] + "-fixed.pem"
    raise Failure(EXIT_USAGE, "wrong order", f"{cert!r} starts with a CA certificate "
                  f"({printable(first['cn'] or '(no CN)')}); our own certificate "
                  f"({printable(leaf['cn']) if leaf['cn'] else spell_all(leaf['san'])}) is certificate {index + 1} of "
                  f"{len(ders)}, and OpenSSL takes the first one for ours -- put it first: "
                  f"{leaf_first_command(cert, index, fixed)}, then pass --cert {fixed}")


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
        "the server says our certificate is not for client authentication (by its "
        "extendedKeyUsage, keyUsage or nsCertType) -- use a client certificate"),
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
    # A probe, not a request: it presents no certificate of ours, and only
    # tells TLS from not-TLS (a failed check of the server's still means TLS).
    probe = ssl.create_default_context()
    try:
        with socket.create_connection((host, port), timeout) as sock:
            with probe.wrap_socket(sock, server_hostname=host):
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


def read_pem_text(path, what, flag, label):
    """Read a PEM file's text ourselves (a pipe works too), to hand to OpenSSL
    as it is; fail with a clear line unless it holds a '-----BEGIN <label>-----'
    block. (certificate_fields.read_pem decodes blocks to DER, to read fields.)"""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise Failure(EXIT_USAGE, "missing file", f"{what} {path!r} not found{looked_in(path)} -- "
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
        raise Failure(EXIT_USAGE, "bad URL", f"'{shown(url)}' {why} -- use {shown(meant)}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port                              # raises ValueError if out of range
    except ValueError as exc:
        fix = "write an IPv6 address inside [ ], e.g. https://[::1]:3000/" \
            if "IPv6" in str(exc) else "use a port from 1 to 65535, e.g. https://localhost:3000/"
        raise Failure(EXIT_USAGE, "bad URL", f"'{shown(url)}': {exc} -- {fix}") from None
    # http.client sends the path as it is: a space or a non-ASCII letter in
    # it must be percent-encoded first (RFC 3986 2.1).
    odd = [c for c in url if c == " " or not c.isprintable()
           or (not c.isascii() and c not in parts.netloc)]
    if odd:
        what = "a space" if odd[0] == " " else f"the character {shown(odd[0])}"
        meant = urllib.parse.quote(url, safe=URL_SAFE)
        raise Failure(EXIT_USAGE, "bad URL", f"'{shown(url)}' holds {what}, which must be "
                      f"written {urllib.parse.quote(odd[0])} in a URL -- use {meant}")
    clean = parts._replace(scheme="https", netloc=parts.netloc.rpartition("@")[2])
    if parts.scheme not in ("https", "http"):
        raise Failure(EXIT_USAGE, "bad URL", f"{url!r} is not an https:// URL -- use "
                      f"{urllib.parse.urlunsplit(clean)}")
    if not parts.hostname:
        raise Failure(EXIT_USAGE, "bad URL", f"{url!r} names no host -- use a URL such as "
                      f"https://localhost:3000/")
    if parts.username is not None or parts.password is not None:
        masked = parts._replace(netloc="user:***@" + clean.netloc) if parts.password is not None \
            else parts
        raise Failure(EXIT_USAGE, "bad URL", f"{urllib.parse.urlunsplit(masked)!r} holds a user "
                      f"name or password, which client.py never sends (our certificate says "
                      f"who we are) -- use {urllib.parse.urlunsplit(clean)}")
    return parts


def host_port(parts):
    """host:port as a user would write it, IPv6 in brackets: [::1]:3000."""
    host, port = parts.hostname or "?", parts.port or (80 if parts.scheme == "http" else 443)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def clip(text, limit):
    """The first `limit` characters of text, with '...' if cut."""
    return text if len(text) <= limit else text[:limit] + "..."
