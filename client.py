#!/usr/bin/env python3
"""client.py: an HTTPS client that presents a certificate (mutual TLS).

The Python twin of the article's curl command, with curl's option names:

    python3 client.py --cacert certs/ca.crt --cert certs/client.crt \\
                      --key certs/client.key https://localhost:3000/

--cacert  the CA we trust to vouch for the *server* (without it: only the
          system's CAs, exactly like curl, so a home-made CA is refused)
--cert    our certificate, sent when the server asks for one
--key     the private key that proves the certificate is ours

Reads those files; writes the response body to stdout. On failure it prints
one line, "error: <what>: <why> -- <fix>", to stderr and exits with:

    0  success            4  server not trusted (its certificate failed our checks)
    2  usage or files     5  the server rejected our certificate, or the lack of one
    3  cannot connect     6  HTTP error status (e.g. 403 Forbidden)
                          7  other TLS or protocol failure

Reading order: exit codes, the TLS context, the request, why it failed, main.
"""

import argparse
import http.client
import math
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

# --- exit codes ----------------------------------------------------------

EXIT_OK, EXIT_USAGE, EXIT_CONNECT = 0, 2, 3
EXIT_SERVER_UNTRUSTED, EXIT_CLIENT_REJECTED, EXIT_HTTP, EXIT_TLS = 4, 5, 6, 7


class Failure(Exception):
    """A failed request, classified: exit code, short label, and the sentence
    a user needs (what, why, fix)."""

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
    # Strict X.509 checks, Python 3.13's default, on every version.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if cacert:
        check_readable(cacert, "CA certificate", "--cacert")
        try:
            context.load_verify_locations(cafile=cacert)
        except ssl.SSLError:
            raise Failure(EXIT_USAGE, "bad file", f"{cacert!r} holds no PEM certificate: "
                          f"pass the CA certificate, e.g. --cacert certs/ca.crt") from None
    else:
        context.load_default_certs()      # the system's CAs, as curl uses
    if cert:
        # Sent only if the server asks (CertificateRequest); the key signs the
        # handshake transcript (CertificateVerify) to prove we hold it.
        check_readable(cert, "client certificate", "--cert")
        if key:
            check_readable(key, "client key", "--key")
        try:
            # No passphrase prompt: a script must never stop to ask the terminal.
            context.load_cert_chain(cert, key, password=lambda: refuse_passphrase(key or cert))
        except ssl.SSLError as exc:
            raise Failure(EXIT_USAGE, "bad file", explain_load_error(exc, cert, key)) from None
    if keylog:
        try:
            os.close(os.open(keylog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # private
            context.keylog_filename = keylog
        except OSError as exc:
            raise Failure(EXIT_USAGE, "bad file", f"cannot write the key log {keylog!r} "
                          f"({exc.strerror}) -- pass --keylog a file in a folder you can write") from None
        print(f"warning: writing TLS session secrets to {keylog}; debug only", file=sys.stderr)
    # Remembered for error messages: TLS 1.2 reports "no certificate" vaguely.
    context.has_client_cert = bool(cert)
    return context


def check_readable(path, what, flag):
    """Fail with a clear message unless `path` is a readable file."""
    if os.path.isdir(path):
        raise Failure(EXIT_USAGE, "bad file", f"{what} {path!r} is a folder, not a file -- fix {flag}")
    if not os.path.isfile(path):
        raise Failure(EXIT_USAGE, "missing file",
                      f"{what} {path!r} not found: run 'make certs' first, or fix {flag}")
    if not os.access(path, os.R_OK):
        raise Failure(EXIT_USAGE, "unreadable file", f"{what} {path!r} is not readable: check its permissions")


def refuse_passphrase(key):
    """Called by OpenSSL when a key is encrypted: refuse, rather than prompt."""
    raise Failure(EXIT_USAGE, "encrypted key", f"{key!r} needs a passphrase -- decrypt it "
                  f"with 'openssl pkey -in {key} -out client-plain.key' and pass that with --key")


def explain_load_error(exc, cert, key):
    """Turn OpenSSL's complaint about a certificate/key pair into a sentence."""
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        return f"{key!r} is not the private key of {cert!r}: pass the matching --key"
    # OpenSSL says only "PEM lib"; look at the files to say which one is wrong.
    if not pem_holds(cert, "CERTIFICATE"):
        return (f"{cert!r} is not a PEM certificate (no '-----BEGIN CERTIFICATE-----' line) "
                f"-- pass --cert certs/client.crt")
    if not pem_holds(key or cert, "PRIVATE KEY"):
        if not key:
            return f"{cert!r} holds no private key -- pass the key too, e.g. --key certs/client.key"
        return (f"{key!r} is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line) "
                f"-- pass --key certs/client.key")
    return (f"cannot load certificate {cert!r} with key {key or cert!r} "
            f"({exc.reason or exc}): both must be PEM files, e.g. from 'make certs'")


def pem_holds(path, label):
    """True if the file holds a PEM block such as -----BEGIN CERTIFICATE-----."""
    try:
        with open(path, "rb") as f:
            return f"{label}-----".encode() in f.read(1 << 20)
    except OSError:
        return False


# --- the request ---------------------------------------------------------

class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Return 3xx responses as they are, instead of following them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None          # urllib then reports the 3xx as an HTTPError

def fetch(url, context, timeout=10.0):
    """GET `url` over TLS with `context`; return (status, body text).

    Raises Failure, classified, when the connection or the handshake fails.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port                              # raises ValueError if out of range
    except ValueError as exc:
        raise Failure(EXIT_USAGE, "bad URL", f"{url!r}: {exc} -- try https://localhost:3000/") from None
    if parts.scheme != "https" or not parts.hostname:
        raise Failure(EXIT_USAGE, "bad URL", f"{url!r} is not an https:// URL: "
                      f"try https://{parts.netloc or 'localhost:3000'}{parts.path or '/'}")
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
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise classify(exc, parts, getattr(context, "has_client_cert", True)) from None


# --- why it failed -------------------------------------------------------

# Alerts a server sends when it refuses our certificate (RFC 8446 6.2).
# Under TLS 1.3 they arrive *after* our side of the handshake has finished,
# at our first read, so urllib raises them from getresponse(), unwrapped.
CLIENT_REJECTED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": ("certificate required",
        "the server requires a client certificate and we sent none -- pass --cert and --key"),
    "TLSV1_ALERT_UNKNOWN_CA": ("unknown CA",
        "the server cannot link our certificate to a CA it trusts -- use a certificate "
        "issued by the server's CA; if an intermediate CA signed it, pass the chain "
        "file (leaf + intermediate) as --cert; the server's log says more"),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": ("certificate expired",
        "the server says our certificate has expired -- get a new one (if it has not "
        "expired, the server's CRL has: see the server's log)"),
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

# Verify codes for the *server's* certificate, which we refused ourselves.
# (X509_V_ERR_*: 2 UNABLE_TO_GET_ISSUER_CERT, 18 DEPTH_ZERO_SELF_SIGNED_CERT,
# 19 SELF_SIGNED_CERT_IN_CHAIN, 20 UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
# 21 UNABLE_TO_VERIFY_LEAF_SIGNATURE, 9 CERT_NOT_YET_VALID,
# 10 CERT_HAS_EXPIRED, 62 HOSTNAME_MISMATCH.)
SERVER_UNTRUSTED = {
    2: "server not trusted", 18: "server not trusted",
    19: "server not trusted", 20: "server not trusted", 21: "server not trusted",
    9: "server certificate not yet valid", 10: "server certificate expired",
    62: "hostname mismatch",
}


def classify(exc, parts, has_cert):
    """Turn an exception from urllib into a Failure with a label and a fix."""
    reason = getattr(exc, "reason", exc)       # URLError wraps the real error
    if not isinstance(reason, BaseException):
        reason = exc
    where = f"{parts.hostname}:{parts.port or 443}"

    if isinstance(reason, ssl.SSLCertVerificationError):
        # Any other code is a certificate that fails the (strict) X.509 rules.
        label = SERVER_UNTRUSTED.get(reason.verify_code, "server certificate invalid")
        why = reason.verify_message
        if label == "server not trusted":
            fix = "pass --cacert with the CA that signed it, e.g. --cacert certs/ca.crt"
            if reason.verify_code in (20, 21):      # may also be a missing intermediate
                fix += "; if you did, the server must also send its intermediate CA certificate"
            return Failure(EXIT_SERVER_UNTRUSTED, label, f"the server's certificate does not "
                           f"chain to a CA we trust ({why}) -- {fix}")
        if label == "hostname mismatch":
            return Failure(EXIT_SERVER_UNTRUSTED, label, f"the server's certificate is not valid "
                           f"for {parts.hostname!r} -- use a name listed in its "
                           f"subjectAltName, or reissue it for this name")
        return Failure(EXIT_SERVER_UNTRUSTED, label, f"we refused the server's certificate "
                       f"({why}) -- the server needs a new certificate")
    if isinstance(reason, ssl.SSLError) and reason.reason in CLIENT_REJECTED:
        label, message = CLIENT_REJECTED[reason.reason]
        return Failure(EXIT_CLIENT_REJECTED, label, message)
    if isinstance(reason, ssl.SSLError) and reason.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        # TLS 1.2's generic alert; a server sends it for a missing certificate.
        if not has_cert:
            return Failure(EXIT_CLIENT_REJECTED, "certificate required",
                           "the server requires a client certificate and we sent none "
                           "(TLS 1.2 handshake_failure) -- pass --cert and --key")
        return Failure(EXIT_TLS, "handshake failed", "the server ended the handshake "
                       "(handshake_failure) -- see the server's log")
    if isinstance(reason, (ssl.SSLEOFError, ConnectionResetError, http.client.RemoteDisconnected)):
        return Failure(EXIT_TLS, "connection closed", f"{where} closed the connection without "
                       f"an answer -- see the server's log")
    if isinstance(reason, ssl.SSLError):
        if reason.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            return Failure(EXIT_TLS, "not TLS", f"{where} does not speak TLS -- is it an http:// server?")
        return Failure(EXIT_TLS, "TLS error", f"{reason.reason or reason} -- see the server's log")
    if isinstance(reason, ConnectionRefusedError):
        return Failure(EXIT_CONNECT, "connection refused", f"nothing listens on {where} -- "
                       f"start the server (make run) or fix the URL")
    if isinstance(reason, socket.gaierror):
        return Failure(EXIT_CONNECT, "unknown host", f"cannot resolve {parts.hostname!r} -- fix the URL")
    if isinstance(reason, socket.timeout):
        return Failure(EXIT_CONNECT, "timeout", f"{where} did not answer in time -- is it the right port?")
    if isinstance(reason, (ValueError, http.client.InvalidURL)):   # e.g. a space in the path
        return Failure(EXIT_USAGE, "bad URL", f"{parts.geturl()!r}: {reason}")
    if isinstance(reason, http.client.HTTPException):   # TLS worked; the HTTP did not
        return Failure(EXIT_TLS, "bad response", f"{where} answered something that is not "
                       f"valid HTTP ({type(reason).__name__}: {str(reason)[:80]!r}) -- is it "
                       f"the server you meant?")
    return Failure(EXIT_CONNECT, "connection failed", f"{where}: {reason}")


# --- main ----------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line, like every other error here."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} -- see {self.prog} --help\n")


def seconds(text):
    """Read a timeout from the command line: seconds, more than 0, at most a day."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 86400:                      # also false for nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 86400")
    return value


def parse_args(argv):
    """Read the command line (curl's names for the same options)."""
    p = ArgumentParser(
        description="HTTPS client that presents a client certificate (mutual TLS).",
        epilog="example: python3 client.py --cacert certs/ca.crt --cert certs/client.crt "
               "--key certs/client.key https://localhost:3000/")
    p.add_argument("url", nargs="?", default="https://localhost:3000/",
                   help="https:// URL to GET (default https://localhost:3000/)")
    p.add_argument("--cacert", metavar="FILE", help="CA that signed the server's certificate")
    p.add_argument("--cert", metavar="FILE", help="our client certificate (PEM)")
    p.add_argument("--key", metavar="FILE", help="our private key (PEM; default: inside --cert)")
    p.add_argument("--keylog", metavar="FILE", help="write TLS secrets for Wireshark (debug only)")
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="S",
                   help="seconds to wait for each step: connect, handshake, response (default 10)")
    args = p.parse_args(argv)
    if args.key and not args.cert:
        p.error("--key needs --cert: pass both, e.g. --cert certs/client.crt --key certs/client.key")
    return args


def main(argv=None):
    """Make one request; print the body, or one line saying what went wrong."""
    args = parse_args(argv)
    try:
        context = make_client_context(args.cacert, args.cert, args.key, args.keylog)
        status, body = fetch(args.url, context, args.timeout)
    except Failure as failure:
        print(f"error: {failure.label}: {failure.message}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130                                # the shell's code for SIGINT
    if not 200 <= status < 300:                   # 3xx too: we do not follow redirects
        reason = http.client.responses.get(status, "")
        detail = f": {body.strip()}" if body.strip() else ""
        if 300 <= status < 400:
            detail += " -- a redirect, which client.py does not follow (like curl without -L)"
        print(f"error: HTTP {status} {reason}{detail}", file=sys.stderr)
        return EXIT_HTTP
    sys.stdout.write(body)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
