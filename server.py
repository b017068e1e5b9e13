#!/usr/bin/env python3
"""server.py: an HTTPS server that lets in only clients with a certificate.

This is mutual TLS (mTLS). In ordinary HTTPS only the server proves who it
is. Here the server also asks the client for a certificate during the TLS
handshake (a CertificateRequest message), checks that our CA signed it, and
hangs up on anyone who cannot show one. The answer it sends then greets the
client by the name in that certificate: the server knows who called.

Reads:   certs/ca.crt      the CA whose signature a client certificate needs
         certs/server.crt  our certificate, sent to every client
         certs/server.key  our private key, which proves we own server.crt
         CRL files, if --crl is given (revoked client certificates)
Writes:  one log line per connection to stderr:
           accepted 127.0.0.1:51000 as cn:my-client
           rejected 127.0.0.1:51002: no client certificate (the client sent none)
           forbidden 127.0.0.1:51004: cn:other is not on the allow-list (--allow)
           closed 127.0.0.1:51000: idle for 30 s with no request (--idle-timeout)
Run:     python3 server.py                  (https://localhost:3000/)
         python3 server.py --port 8443 --allow cn:my-client --crl certs/ca.crl
         kill -HUP PID     re-reads certificate, key, CA and CRL files
         Ctrl-C, or kill PID (SIGTERM), stops it at once.

Reading order. The mTLS path first: the TLS context (what we prove, what we
demand), who the client is (identity and the allow-list), the handshake, and
the response. Then the armour, each piece named after the failure it
prevents: the waiting room and the worker pool (no client can hang the
server), why a client was rejected (one plain log line each), the checks a
certificate forwarded by a proxy meets (the same, as far as a header
allows), checks of our own files (dates, wrong certificates, key log), and
main.

Simplified on purpose: a fixed greeting, and one worker thread per
connection being served. A production service would add real routes and
structured logs; the TLS part stays as it is here.
"""

import sys

if sys.version_info < (3, 9):       # before anything newer can fail with a traceback
    sys.stderr.write("error: unsupported Python: server.py needs Python 3.9+ (this is %d.%d) "
                     "-- run it with python3.9 or newer\n" % sys.version_info[:2])
    sys.exit(2)

import os

# Key-exchange groups (see groups.cnf and set_key_exchange_groups). OpenSSL
# reads its config file once, when ssl or hashlib is first imported, so this
# comes before those imports. Only server.py run as a program does it (a module
# must not change the settings of the program that imports it), and never over
# an OPENSSL_CONF already set (a distribution's crypto policy, FIPS).
GROUPS_CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "groups.cnf")
GROUPS_FROM = os.environ.get("OPENSSL_CONF")       # the file that decides, if any
if __name__ == "__main__" and not GROUPS_FROM and os.path.isfile(GROUPS_CONF) \
        and not {"_ssl", "_hashlib"} & set(sys.modules):
    GROUPS_FROM = os.environ["OPENSSL_CONF"] = GROUPS_CONF
    import ssl                                      # noqa: E402  (reads groups.cnf, once)
    del os.environ["OPENSSL_CONF"]                  # read: programs we start are not affected

import argparse
import base64
import binascii
import calendar
import concurrent.futures
import errno
import http.server
import io
import ipaddress
import math
import re
import selectors
import signal
import socket
import socketserver
import ssl
import stat
import threading
import time
import urllib.parse

# --- settings ------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = os.path.join(HERE, "certs")

# Limits that keep one client (or a crowd of them) from tying the server up.
# Each is a total deadline, not a per-read timeout: a client sending one
# byte at a time must not be able to stretch it.
HANDSHAKE_TIMEOUT = 10.0   # seconds from connect to a finished TLS handshake
REQUEST_TIMEOUT = 10.0     # seconds to send a whole request head (slowloris)
IDLE_TIMEOUT = 30.0        # seconds a keep-alive connection may sit idle
MAX_CONNECTIONS = 128      # connections served at once (one worker thread each)
MAX_PENDING = 1000         # connections whose ClientHello is not whole yet (no thread)
LINGER_TIMEOUT = 1.0       # seconds we read a rejected client's leftovers (see close_gently)
MAX_REQUEST_HEAD = 65536   # bytes of request line and headers (http.server alone: 6.5 MB)
SESSION_LIFETIME = 600.0   # seconds a TLS session can be resumed, at most (see renew_sessions)
WARN_DAYS = 30             # warn when a certificate or CRL expires within this many days
# A TLS 1.3 session ticket tells the client how long to keep it: its
# lifetime hint, OpenSSL's default session timeout, 7200 s. Python's ssl
# cannot change it (no SSL_CTX_set_timeout), so it says 7200 s whatever
# SESSION_LIFETIME is; a client that tries a ticket after SESSION_LIFETIME
# just gets a full handshake (tests/test_trust.py shows both).

# The key-exchange groups we offer, in our order of preference: the same
# list as groups.cnf (which says why these three). Where neither that file
# nor set_groups() can be used, one group by our key's type (see
# set_key_exchange_groups).
KEY_EXCHANGE_GROUPS = "X25519:P-256:P-384"
ONE_GROUP = {"rsa": "X25519", "ec": "prime256v1"}
GROUP_NAMES = {"X25519": "X25519", "prime256v1": "P-256", "secp384r1": "P-384",
               "secp521r1": "P-521", "ffdhe2048": "ffdhe2048"}     # Python's name: TLS's

# TLS 1.2 ciphers: ECDHE key exchange (forward secrecy) with AEAD encryption
# only, as in Mozilla's "intermediate" profile. TLS 1.3's cipher suites are
# all AEAD; its key exchange is chosen by the groups (KEY_EXCHANGE_GROUPS).
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
])


class ConfigError(Exception):
    """A problem the person starting the server can fix (file, port, ...):
    a short label, what is wrong, and the fix."""

    def __init__(self, label, what, fix):
        super().__init__(f"{label}: {what} -- {fix}")
        self.label, self.what, self.fix = label, what, fix


def log(message):
    """Write one timestamped line to stderr, the server's log."""
    try:
        sys.stderr.write(time.strftime("%H:%M:%S ") + message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):    # stderr is a closed pipe: keep serving regardless
        pass


# --- the TLS context: what we prove, and what we demand ------------------

def make_server_context(ca, cert, key, crl=None, keylog=None, crl_chain=False):
    """Build the TLS settings of an mTLS server: our identity, and the CA a
    client certificate must come from. `crl` is one CRL file or a list."""
    crls = [crl] if isinstance(crl, str) else list(crl or ())
    for path, what, flag in [(ca, "CA certificate", "--ca"), (cert, "server certificate", "--cert"),
                             (key, "server key", "--key")] + [(c, "CRL", "--crl") for c in crls]:
        check_readable(path, what, flag)

    # PROTOCOL_TLS_SERVER: negotiate the best version both sides have...
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # ...but never below TLS 1.2 (1.0 and 1.1 are broken and deprecated, RFC 8996).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    # Renegotiation (TLS 1.2 only; 1.3 has none) would let a client restart
    # the handshake mid-connection; nothing here needs it, and it has a
    # history of attacks.
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)

    # Our certificate and the key that proves it is ours. A key protected by a
    # passphrase would make OpenSSL prompt on the terminal (and hang a server
    # started without one); the password callback refuses instead.
    key_type = check_server_certificate(cert)  # first: a wrong certificate is not a wrong key
    set_key_exchange_groups(context, key_type)
    try:
        context.load_cert_chain(cert, key, password=lambda: refuse_passphrase(key))
    except ssl.SSLError as exc:
        raise explain_load_error(exc, cert, key) from None
    except OSError as exc:                    # e.g. permission denied despite os.access
        raise ConfigError("unreadable file", f"cannot read {exc.filename or cert!r} "
                          f"({exc.strerror})", "check its permissions") from None

    # The heart of mTLS. CERT_REQUIRED makes the server send a
    # CertificateRequest in the handshake and fail the handshake when the
    # client sends no certificate, or one that does not chain to `ca`.
    context.verify_mode = ssl.CERT_REQUIRED
    load_client_ca(context, ca)
    # Strict X.509 rules (RFC 5280, as ssl.create_default_context() asks for
    # since Python 3.13; here on every version): e.g. a CA must carry keyUsage.
    context.verify_flags |= ssl.VERIFY_X509_STRICT

    for path in crls:
        load_crl(context, path)
    if crls:
        # Loading a CRL is not enough: this flag tells OpenSSL to look the
        # client's certificate up in the CRL of the CA that issued it. With
        # --crl-chain, every certificate in the client's chain is looked up
        # (a revoked intermediate is caught too), and then every CA in the
        # chain, the root included, must have a current CRL here.
        check = ssl.VERIFY_CRL_CHECK_CHAIN if crl_chain else ssl.VERIFY_CRL_CHECK_LEAF
        context.verify_flags |= check

    if keylog:
        open_keylog(context, keylog)
    keep_forwarding_checks(context, crls)
    return context


def set_key_exchange_groups(context, key_type):
    """Offer X25519, P-256 and P-384 for the key exchange, and no finite-field group.

    A file the user named with OPENSSL_CONF decides, if there is one. Else
    Python 3.15's set_groups() sets them; before it, groups.cnf does, for the
    whole process (see the top of this file). Where a file decides,
    set_ecdh_curve() must not be called: it would replace that list with one
    group. Left with neither (server.py imported as a module, before 3.15),
    we set the one group Python can, by our key's type; Python 3.9 and 3.10
    cannot set X25519, so there it is P-256. A client without that one group
    then cannot connect."""
    context.groups = KEY_EXCHANGE_GROUPS.replace(":", ", ")   # for the log
    if GROUPS_FROM and GROUPS_FROM != GROUPS_CONF:
        context.groups = f"the groups OPENSSL_CONF={GROUPS_FROM} allows"
    elif hasattr(context, "set_groups"):
        context.set_groups(KEY_EXCHANGE_GROUPS)
    elif not GROUPS_FROM:
        group = ONE_GROUP.get(key_type, "prime256v1")
        try:
            context.set_ecdh_curve(group)
        except (ssl.SSLError, ValueError):        # before 3.11, Python names EC curves only
            group = "prime256v1"
            context.set_ecdh_curve(group)
        context.groups = GROUP_NAMES[group]


def load_client_ca(context, ca):
    """Trust `ca` (and only it) to vouch for clients; refuse a file that
    holds no CA certificate, which would start a server that refuses everyone."""
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError:
        raise ConfigError("bad file", f"CA certificate {ca!r} holds no PEM certificate"
                          + der_hint(ca), "pass the CA's certificate, e.g. --ca certs/ca.crt") from None
    if context.cert_store_stats()["x509_ca"] == 0:
        raise ConfigError("bad file", f"{ca!r} holds no CA certificate (none has "
                          f"basicConstraints CA:TRUE), so no client could ever get in",
                          "pass the certificate of the CA that signs your clients, e.g. --ca certs/ca.crt")


def load_crl(context, path):
    """Add the revocation list in `path`, and nothing else.

    load_verify_locations() loads *every* certificate in a file as trusted,
    CRL or not: a CRL file with another CA's certificate appended would make
    that CA trusted. So we read the file first, refuse anything but CRLs, and
    check the trust store before and after."""
    labels = pem_labels(path)
    if not labels:
        raise ConfigError("bad file", f"CRL {path!r} is not a PEM CRL" + der_hint(path, "crl"),
                          "make one with 'openssl ca -gencrl' (make crl)")
    others = sorted(set(labels) - {"X509 CRL"})
    if others:
        raise ConfigError("bad file", f"CRL file {path!r} also holds {', '.join(others)} "
                          f"blocks; a certificate loaded from it would be trusted like --ca",
                          "pass a file with only CRLs (-----BEGIN X509 CRL-----), one --crl each")
    before = context.cert_store_stats()
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigError("bad file", f"CRL {path!r} cannot be read as a CRL",
                          "make a fresh one with 'openssl ca -gencrl' (make crl)") from None
    after = context.cert_store_stats()
    if (after["x509"], after["x509_ca"]) != (before["x509"], before["x509_ca"]):
        raise ConfigError("bad file", f"loading CRL {path!r} added a trusted certificate",
                          "pass a file with only CRLs")


def check_readable(path, what, flag):
    """Fail with a clear message unless `path` is a readable file."""
    if os.path.isdir(path):
        raise ConfigError("bad file", f"{what} {path!r} is a folder, not a file", f"pass {flag} FILE")
    if not os.path.exists(path):
        made_by = "'make certs'" if flag in ("--ca", "--cert", "--key") else "'make crl'"
        raise ConfigError("missing file", f"{what} {path!r} not found",
                          f"run {made_by} first, or pass {flag} FILE")
    if not os.path.isfile(path):       # a FIFO or a device: opening it could block for ever
        raise ConfigError("bad file", f"{what} {path!r} is not a regular file", f"pass {flag} FILE")
    if not os.access(path, os.R_OK):
        raise ConfigError("unreadable file", f"{what} {path!r} is not readable by this user",
                          "check its permissions")


def refuse_passphrase(key):
    """Called by OpenSSL when a key is encrypted: refuse, rather than prompt."""
    raise ConfigError("encrypted key", f"server key {key!r} is encrypted with a passphrase",
                      f"decrypt it with 'openssl pkey -in {key} -out server-plain.key' "
                      f"and pass that with --key")


def explain_load_error(exc, cert, key):
    """Turn OpenSSL's complaint about a certificate/key pair into a ConfigError."""
    reason = getattr(exc, "reason", None) or str(exc)
    if reason == "KEY_VALUES_MISMATCH":
        return ConfigError("wrong key", f"{key!r} is not the private key of {cert!r}",
                           "pass the key that was made with that certificate")
    if "CERTIFICATE" not in pem_labels(cert):
        return ConfigError("bad file", f"server certificate {cert!r} is not a PEM certificate "
                           f"(no '-----BEGIN CERTIFICATE-----' line)" + der_hint(cert),
                           "pass --cert certs/server.crt")
    if not any(label.endswith("PRIVATE KEY") for label in pem_labels(key)):
        return ConfigError("bad file", f"server key {key!r} is not a PEM private key (no "
                           f"'-----BEGIN ... PRIVATE KEY-----' line)", "pass --key certs/server.key")
    return ConfigError("bad file", f"cannot load certificate {cert!r} with key {key!r} ({reason})",
                       "both must be PEM files, e.g. from 'make certs'")


# --- who the client is ---------------------------------------------------
#
# A certificate's identities are its subjectAltName (SAN) entries, each with
# its type, or its subject's CN when it has no SAN at all (RFC 6125 and
# service meshes name peers by SAN). We spell each one with its type, the
# same way in the log and in --allow: cn:my-client, dns:svc.example,
# uri:spiffe://example.org/x, ip:10.0.0.1, email:a@example.org. Values are
# compared raw, exactly; they are escaped only when printed.

IDENTITY_TYPES = ("cn", "dns", "uri", "ip", "email")


def identities_of(info):
    """The typed identities of a certificate read by read_certificate()."""
    if info["has_san"]:
        return info["san"]
    return [("cn", cn) for cn in info["cns"]]


def greeting_name(ids):
    """The bare name to greet: the URI, else the DNS name, else whatever there is."""
    for wanted in ("uri", "dns"):
        for kind, value in ids:
            if kind == wanted:
                return value
    return ids[0][1] if ids else "(no name)"


def spell(identity):
    """An identity as the log and --allow write it: cn:my-client. A backslash
    or a comma in the value is escaped too, so that no name can pass for two
    in a log line."""
    kind, value = identity
    value = printable(value.replace("\\", "\\\\")).replace(",", "\\x2c")
    return f"{kind}:{value}"


def spell_all(ids):
    return ", ".join(spell(i) for i in ids) or "(no identity)"


def printable(name):
    """Escape control and non-ASCII characters: a certificate's name is the
    client's text, and a newline in it must not forge a second log line."""
    return "".join(c if c.isprintable() and c.isascii() else ascii(c)[1:-1] for c in name)


def refusal_for(ids, allow, info=None):
    """Why these identities may not be served, or None if they may."""
    if info is not None and info["ca"]:
        # A CA certificate could sign a certificate for any name, the proxy's too.
        return f"{spell_all(ids)}: a CA certificate (basicConstraints CA:TRUE) is no client"
    for kind in ("uri", "cn"):
        # SPIFFE: an SVID has exactly one URI SAN; a subject, one CN. With two,
        # which one is it? (A registration step may have checked the other.)
        count = sum(1 for k, _ in ids if k == kind)
        if count > 1:
            return f"{spell_all(ids)}: {count} {kind.upper()} names, so no single identity"
    if allow and not allow.intersection(ids):
        return f"{spell_all(ids)} is not on the allow-list (--allow)"
    return None


def parse_identity(text):
    """Read a typed identity from the command line (--allow, --trust-proxy):
    "cn:my-client" -> ("cn", "my-client"). Any other spelling is refused,
    with the right one in the message."""
    kind, sep, value = text.partition(":")
    if sep and kind in IDENTITY_TYPES and value and value == value.strip():
        if kind == "ip":
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not an IP address -- write e.g. "
                                                 f"ip:10.0.0.1 or ip:::1") from None
        return kind, value
    raise argparse.ArgumentTypeError(f"{text!r} is not a typed identity -- write "
                                     f"{suggest_identity(text)} (types: {', '.join(IDENTITY_TYPES)})")


def suggest_identity(text):
    """The typed spelling a user most likely meant, from a name copied out of
    a log, a greeting, openssl x509 -subject or openssl x509 -ext."""
    text = text.strip()
    if not text:
        return "cn:NAME (an empty name matches nothing)"
    match = re.search(r"(?:^|[/,=\s])CN\s*=\s*([^,/]+)", text, re.IGNORECASE)
    if match:
        return "cn:" + match.group(1).strip()
    kind, sep, value = text.partition(":")
    if sep and kind in IDENTITY_TYPES and not value.strip():
        return f"{kind}:NAME (an empty name matches nothing)"
    aliases = {"dns": "dns", "uri": "uri", "ip": "ip", "ip address": "ip", "email": "email", "cn": "cn"}
    if sep and kind.strip().lower() in aliases and "//" not in kind + sep + value[:2]:
        return f"{aliases[kind.strip().lower()]}:{value.strip()}"
    if "://" in text:
        return "uri:" + text
    return "cn:" + text


# --- the handshake and the response --------------------------------------

def handshake(server, sock, address, deadline):
    """Do the TLS handshake on a new connection; return the verified TLS
    socket, with .ids, .name, .refusal and .proxy set, or log why not and
    return None."""
    peer = format_address(address)
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        # Peek at the first bytes without consuming them. A TLS connection
        # starts with a handshake record, content type 22 (RFC 8446 5.1).
        first = sock.recv(8, socket.MSG_PEEK)
    except OSError as exc:
        server.log(f"rejected {peer}: {describe_rejection(exc, server.context)}")
        return None
    if not first:
        server.log(f"rejected {peer}: connected and closed without a word (a port scan?)")
        return None
    if first[0] != 22:
        reject_non_handshake(server, sock, peer, first)
        return None

    context = server.context    # read once: a reload may swap it meanwhile
    try:
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except OSError:             # reset already: "closed before TLS handshake"
        server.log(f"rejected {peer}: client reset the connection during the handshake")
        return None
    server.track(sock, tls)
    # What is left of the deadline covers the whole handshake: CPython's
    # do_handshake() counts its timeout from the start of the call, not
    # per read, so a client dribbling its messages is cut off too.
    tls.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        tls.do_handshake()
    except (ssl.SSLError, OSError) as exc:
        server.log(f"rejected {peer}: {describe_rejection(exc, context)}")
        close_gently(tls)
        return None

    # OpenSSL has verified the chain. Read the names from the certificate.
    try:
        info = read_certificate(tls.getpeercert(binary_form=True))
    except ValueError as exc:
        server.log(f"rejected {peer}: cannot read the client certificate's fields "
                   f"({printable(str(exc))})")
        close_gently(tls)
        return None
    if tls.session_reused:
        # A resumed session (a ticket from an earlier connection) skips the
        # certificate checks: OpenSSL made them when the session began. Each
        # resumption also hands out a new ticket, so without this check an
        # expired client could stay in for ever by reconnecting often enough.
        # We can see only the leaf (and our own CAs) here, not the rest of
        # the chain the client sent: so sessions live at most SESSION_LIFETIME
        # seconds (see renew_sessions), after which every check is made again.
        late = out_of_date(info, time.time())
        expired = expired_cas(context, info["issuer_cn"])
        if expired:
            late = f"was issued by our CA {expired}, which has expired"
        if late:
            server.log(f"rejected {peer}: client certificate {late} (checked again on a "
                       f"resumed session)")
            close_gently(tls)
            return None

    tls.context, tls.born = context, time.monotonic()
    tls.ids = identities_of(info)
    tls.name = greeting_name(tls.ids)
    # A proxy is a client whose one identity is --trust-proxy, in a sound
    # certificate (one CN or one URI, not a CA): its word is taken for others'.
    tls.proxy = (server.trust_proxy is not None and tls.ids == [server.trust_proxy]
                 and refusal_for(tls.ids, (), info) is None)
    # Authorization belongs to the connection: decide once, here. (Behind a
    # trusted proxy each request carries its own client: see the handler.)
    tls.refusal = None if tls.proxy else refusal_for(tls.ids, server.allow, info)
    resumed = " (resumed session)" if tls.session_reused else ""
    if tls.refusal:
        server.log(f"forbidden {peer}: {tls.refusal}{resumed}")
    elif tls.proxy:
        server.log(f"accepted {peer} as {spell_all(tls.ids)}, a trusted proxy (--trust-proxy){resumed}")
    else:
        server.log(f"accepted {peer} as {spell_all(tls.ids)}{resumed}")
    return tls


class GreetingHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET with a greeting to the client named by its certificate."""

    protocol_version = "HTTP/1.1"   # keep-alive: many requests per handshake
    server_version = "mtls-server/1.0"
    # http.server's own errors (400, 414, 431, 501) in plain text, like ours.
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"

    def version_string(self):
        """The Server header: our name only, not the Python version."""
        return self.server_version

    def setup(self):
        """Wrap the verified TLS socket in a deadline reader and a buffered
        writer; each response leaves in one write (see handle_one_request)."""
        self.connection = self.request
        # A refused client gets a moment to send its request (to read our
        # 403), not a keep-alive connection's idle time: it must not hold a worker.
        idle = LINGER_TIMEOUT if self.connection.refusal else self.server.idle_timeout
        self.reader = DeadlineReader(self.connection, idle, self.server.request_timeout)
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = self.connection.makefile("wb", 65536)
        self.name = self.connection.name

    def handle_one_request(self):
        """Serve one request; BaseHTTPRequestHandler flushes wfile after it,
        so headers and body go out in a single TLS record."""
        self.reader.expect_request()
        super().handle_one_request()

    def parse_request(self):
        """After http.server has read the request head, and before it picks
        a do_* method: refuse a client that may not be served, whatever the
        method (GET, HEAD, POST, ...)."""
        if not super().parse_request():
            return False
        names = [name.strip().lower() for name in self.headers.keys()]
        if not all(TOKEN.fullmatch(name) for name in self.headers.keys()) or self.headers.defects:
            self.send_error(400, "Bad Request", "a header name that is not a token")
            return False
        tls = self.connection
        if self.server.context is not tls.context or \
                time.monotonic() - tls.born > self.server.session_lifetime:
            # A connection is as old as its handshake's checks: after a reload,
            # or after --session-lifetime, this answer is its last, and the
            # client must reconnect and be checked again (a revoked one too).
            self.close_connection = True
        if "content-length" in names or "transfer-encoding" in names:
            # We read no request bodies, and the bytes of an unread one would
            # be taken for the next request: behind a proxy, a request with
            # headers the client wrote (request smuggling). So: answer, and close.
            self.close_connection = True
        refusal = self.connection.refusal
        if refusal:                      # decided at the handshake: 403, and hang up
            self.reply(403, f"403 Forbidden: {refusal}\n", close=True)
            self.wfile.flush()
            return False
        if self.connection.proxy:        # a trusted proxy: who is its client?
            refusal = self.identify_forwarded_client()
            if refusal:
                self.reply(403, f"403 Forbidden: {refusal}\n")
                self.wfile.flush()
                return False
        return True

    def identify_forwarded_client(self):
        """Behind a TLS-terminating proxy (--trust-proxy), the client's
        certificate arrives in a header: X-Client-Cert, the URL-encoded PEM
        (nginx: proxy_set_header X-Client-Cert $ssl_client_escaped_cert).
        We trust it only on this connection, authenticated as the proxy.
        Set self.name, or return why the request is refused."""
        peer = format_address(self.client_address)
        proxy = spell_all(self.connection.ids)
        header = self.headers.get_all("X-Client-Cert") or []
        if len(header) != 1 or not header[0].strip():
            self.server.log(f"forbidden {peer}: the proxy {proxy} forwarded "
                            f"{len(header) or 'no'} X-Client-Cert headers")
            return "the proxy forwarded no single client certificate (X-Client-Cert)"
        try:
            ders = pem_to_ders(urllib.parse.unquote(header[0]).encode("ascii", "replace"))
            info = read_certificate(ders[0])
        except (ValueError, IndexError) as exc:
            self.server.log(f"forbidden {peer}: the proxy {proxy} forwarded an X-Client-Cert "
                            f"we cannot read ({printable(str(exc))})")
            return "the forwarded client certificate cannot be read"
        context = self.server.context   # the latest files: a HUP applies to the next request
        code = check_forwarded(info, context, time.time())
        if code:
            reason = describe_verify_code(code, "", context)
            self.server.log(f"rejected {peer}: {reason} (forwarded by {proxy})")
            return reason
        ids = identities_of(info)
        refusal = refusal_for(ids, self.server.allow, info)
        if refusal:
            self.server.log(f"forbidden {peer}: {refusal} (forwarded by {proxy})")
            return refusal
        self.server.log(f"proxied {peer}: {spell_all(ids)} (forwarded by {proxy})")
        self.name = greeting_name(ids)
        return None

    def do_GET(self):
        """Greet the client by the name in its certificate."""
        self.reply(200, f"Hello, {self.name}\n")

    def do_HEAD(self):
        """Like GET, without the body."""
        self.do_GET()

    def reply(self, status, text, close=False):
        """Send a text/plain response with a Content-Length (keep-alive needs it)."""
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if close or self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        """Stay quiet per request: the connection line already says who came."""

    def log_message(self, format, *args):
        """Route http.server's own messages (e.g. code 400, Bad request) to our
        log, escaped: they can quote what the client sent."""
        self.server.log(f"answered {format_address(self.client_address)}: "
                        f"{printable(format % args)}")

    def log_error(self, format, *args):
        """http.server reports a read past our deadline as "Request timed
        out: TimeoutError(...)"; log which deadline it was instead."""
        if args and isinstance(args[-1], socket.timeout):
            self.server.log(f"closed {format_address(self.client_address)}: {args[-1]}")
        else:
            self.log_message(format, *args)


class DeadlineReader(io.RawIOBase):
    """Reads a socket under a total deadline, not a per-read timeout, so a
    client sending one byte every few seconds (slowloris) cannot hold a
    thread forever. A waiting keep-alive connection gets the idle timeout;
    once a request starts, its whole head must arrive within REQUEST_TIMEOUT."""

    def __init__(self, sock, idle_timeout, request_timeout):
        self.sock, self.idle_timeout, self.request_timeout = sock, idle_timeout, request_timeout
        self.expect_request()

    def expect_request(self):
        """Start waiting for the next request on this connection."""
        self.waiting = True
        self.deadline = time.monotonic() + self.idle_timeout
        self.received = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout(self.why_late())
        self.sock.settimeout(remaining)
        try:
            count = self.sock.recv_into(buffer)
        except socket.timeout:
            raise socket.timeout(self.why_late()) from None
        if self.waiting and count:
            self.waiting = False
            self.deadline = time.monotonic() + self.request_timeout
        self.received += count
        if self.received > MAX_REQUEST_HEAD:
            # Raised as a timeout so that http.server ends the connection and
            # log_error() names the reason, as for a deadline.
            raise socket.timeout(f"request head over {MAX_REQUEST_HEAD} bytes: a client "
                                 f"that will not stop sending")
        return count

    def why_late(self):
        """Say which deadline passed, for the log."""
        if self.waiting:
            return f"idle for {self.idle_timeout:g} s with no request (--idle-timeout)"
        return (f"request head not complete after {self.request_timeout:g} s "
                f"(--request-timeout): a slow or stalled client")


TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")     # a header name (RFC 9110 5.6.2)


def format_address(address):
    """127.0.0.1:5000, or [::1]:5000 for IPv6."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the server: accepting, waiting, serving -----------------------------
#
# Why not wrap the listening socket in TLS, as most tutorials do? Then the
# handshake runs inside accept(), on the one thread that accepts: a single
# client that connects and sends nothing stops every other client, and a
# failed handshake is raised out of accept() and lost without a log line
# (mistakes/ shows both). Here a connection goes through three stations:
#
#   1. the accept loop (serve_forever, the main thread) only accepts;
#   2. the waiting room (one thread, a selector) holds each new connection
#      until its whole ClientHello has arrived, costing no thread; a silent
#      or dribbling one is closed at the handshake deadline, and when the
#      room is full the connection that has waited longest makes room;
#   3. a worker from a fixed pool (concurrent.futures, --max-connections
#      threads) does the handshake under the rest of that deadline, then
#      serves HTTP. A connection takes a slot before it is handed over, so
#      none ever queues behind a busy pool: with no slot free it is refused.

class MTLSServer(http.server.HTTPServer):
    """An http.server that does the TLS handshake itself, per connection,
    in a worker thread, once the client's ClientHello has arrived."""

    request_queue_size = 128

    def __init__(self, address, context, *, allow=(), trust_proxy=None, log=log,
                 handshake_timeout=HANDSHAKE_TIMEOUT, request_timeout=REQUEST_TIMEOUT,
                 idle_timeout=IDLE_TIMEOUT, max_connections=MAX_CONNECTIONS,
                 max_pending=MAX_PENDING, session_lifetime=SESSION_LIFETIME, reload=None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.context, self.log = context, log
        self.allow = {parse_identity(a) if isinstance(a, str) else tuple(a) for a in allow}
        if isinstance(trust_proxy, str):
            trust_proxy = parse_identity(trust_proxy)
        self.trust_proxy = trust_proxy
        self.handshake_timeout, self.request_timeout = handshake_timeout, request_timeout
        self.idle_timeout, self.max_connections = idle_timeout, max_connections
        self.reload_context = reload         # a function returning a fresh context
        self.reload_requested = False
        self.context_born, self.session_lifetime = time.monotonic(), session_lifetime
        self.slots = threading.BoundedSemaphore(max_connections)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_connections, "mtls-worker")
        self.open_sockets, self.open_lock = {}, threading.Lock()   # see track()
        super().__init__(address, GreetingHandler)
        self.waiting_room = WaitingRoom(self, max_pending)

    def server_bind(self):
        """Bind without HTTPServer's reverse DNS lookup of our own address."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        """Accept a TCP connection, and turn off Nagle's algorithm on it: a
        small response must leave at once, not wait for the client's ACK."""
        sock, address = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def process_request(self, sock, address):
        """Station 1 -> 2: start the handshake clock, and let it wait."""
        self.waiting_room.add(sock, address, time.monotonic() + self.handshake_timeout)

    def start_worker(self, sock, address, deadline):
        """Station 2 -> 3, called by the waiting room when a connection has
        spoken: give it a slot and a worker, or refuse it if none is free."""
        if not self.slots.acquire(blocking=False):
            self.log(f"rejected {format_address(address)}: too many connections "
                     f"(limit {self.max_connections}, --max-connections)")
            sock.close()
            return
        self.track(sock, sock)
        try:
            self.pool.submit(self.serve_connection, sock, address, deadline)
        except RuntimeError as exc:          # shut down, or no thread could start
            self.log(f"rejected {format_address(address)}: no worker ({exc})")
            self.finish_connection(sock)

    def serve_connection(self, sock, address, deadline):
        """Station 3, in a worker thread: handshake, then HTTP, then clean up."""
        try:
            tls = handshake(self, sock, address, deadline)
            if tls is not None:
                self.finish_request(tls, address)
                close_tls(tls)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError):
            pass                                 # the client went away mid-request
        except ssl.SSLError as exc:              # e.g. a broken record after the handshake
            self.log(f"closed {format_address(address)}: TLS error after the handshake "
                     f"({describe_ssl_error(exc)})")
        except OSError:
            pass                                 # the client went away mid-request
        except Exception as exc:                 # a bug of ours: log it, keep serving
            self.log(f"error {format_address(address)}: {exc!r}")
        finally:
            self.finish_connection(sock)

    def track(self, sock, current):
        """Remember each open connection by its TCP socket, and the object
        that now owns it (the TLS socket, after wrap_socket), so that
        server_close() can end it and finish_connection() can close it."""
        with self.open_lock:
            self.open_sockets[sock] = current

    def finish_connection(self, sock):
        """Close a connection and free its slot."""
        with self.open_lock:
            current = self.open_sockets.pop(sock, sock)
        current.close()
        self.slots.release()

    def server_close(self):
        """Stop listening, close waiting connections, and end open ones: after
        this, no request is served, not even on a keep-alive connection."""
        super().server_close()
        if not hasattr(self, "waiting_room"):    # bind() failed: nothing else started
            return
        # The connections we end now would each log a misleading line
        # ("client hung up"): from here on, log nothing.
        self.log = lambda message: None
        self.waiting_room.close()
        with self.open_lock:
            open_now = list(self.open_sockets.values())
        for sock in open_now:
            try:      # shutdown() wakes a worker blocked in recv(); close() would not
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)

    # Live reload. `kill -HUP PID` asks for it; a rotated certificate or a
    # fresh CRL then takes effect for new connections, without a restart. A
    # connection already open gets one more answer, then must reconnect (see
    # GreetingHandler.parse_request). Every session_lifetime seconds, the
    # same happens quietly (renew_sessions): it re-reads the files too.

    def request_reload(self):
        """Note that a reload is wanted. The SIGHUP handler calls this: a
        signal can interrupt the main thread anywhere, even halfway through a
        log write, so the handler only sets a flag (as nginx does)."""
        self.reload_requested = True

    def service_actions(self):
        """Called by serve_forever() after every poll (at least each 0.5 s):
        a safe moment for a reload that a signal asked for, or a renewal."""
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        elif time.monotonic() - self.context_born > self.session_lifetime:
            self.renew_sessions()

    def renew_sessions(self):
        """Build a fresh TLS context from the same files, quietly. Session
        tickets and cached sessions belong to the context that issued them,
        so none older than session_lifetime can be resumed: a client whose
        intermediate CA expired, or whose certificate was revoked, meets every
        check again at its next full handshake."""
        self.context_born = time.monotonic()
        if self.reload_context is not None:
            try:
                self.context = self.reload_context()
            except Exception as exc:       # keep serving; say so, and try again later
                self.log(f"could not renew the TLS context (sessions stay valid longer): "
                         f"{getattr(exc, 'what', exc)}")

    def reload(self):
        """Re-read certificate, key, CA and CRL; keep the old ones if that fails."""
        if self.reload_context is None:
            self.log("reload ignored: this server was started without a way to reload")
            return
        try:
            self.context = self.reload_context()   # one assignment: atomic for other threads
            self.context_born = time.monotonic()
            self.log("reloaded certificates: new connections use them")
        except ConfigError as exc:
            self.log(f"reload failed, still serving with the previous certificates: {exc.what} "
                     f"-- fix the file on disk, then kill -HUP {os.getpid()} again")
        except Exception as exc:     # whatever it was, a reload must not stop a running server
            self.log(f"reload failed, still serving with the previous certificates: {exc!r}")

    def handle_error(self, request, client_address):
        """Never print a traceback for something a client did."""
        self.log(f"error {format_address(client_address)}: {sys.exc_info()[1]!r}")


class WaitingRoom:
    """Station 2: new connections wait here until their ClientHello is
    whole, all of them watched by one thread with a selector, so a crowd of
    silent or dribbling connections costs no worker and cannot lock real
    clients out."""

    def __init__(self, server, capacity):
        self.server, self.capacity = server, capacity
        self.selector = selectors.DefaultSelector()
        self.arrivals = []                       # handed over by the accept loop
        self.lock = threading.Lock()
        self.bell, self.bell_rope = socket.socketpair()   # wakes the selector
        self.bell.setblocking(False)
        self.selector.register(self.bell, selectors.EVENT_READ)
        self.waiting = {}                        # sock -> (address, deadline), oldest first
        self.closing = False
        self.thread = threading.Thread(target=self.run, name="waiting-room", daemon=True)
        self.thread.start()

    def add(self, sock, address, deadline):
        """Called by the accept loop: queue the connection, ring the bell."""
        with self.lock:
            self.arrivals.append((sock, address, deadline))
        self.ring()

    def close(self):
        """Stop the thread; it closes every connection still waiting."""
        self.closing = True
        self.ring()
        self.thread.join(5)

    def ring(self):
        try:
            self.bell_rope.send(b"!")
        except OSError:                          # full (it is ringing already) or closed
            pass

    def run(self):
        """Wait for bytes, arrivals or deadlines; hand over, admit, expire."""
        while not self.closing:
            timeout = None
            if self.waiting:
                earliest = min(deadline for _, deadline in self.waiting.values())
                timeout = max(earliest - time.monotonic(), 0)
            for key, _ in self.selector.select(timeout):
                try:
                    if key.fileobj is self.bell:
                        self.admit()
                    elif key.fileobj in self.waiting:    # not closed by admit() just now
                        self.examine(key.fileobj)
                except Exception as exc:         # a bug of ours: this thread must not die of it
                    self.server.log(f"error in the waiting room: {exc!r}")
            self.expire()
        for sock in list(self.waiting):
            self.leave(sock)
            sock.close()
        with self.lock:
            for sock, _, _ in self.arrivals:     # accepted, never admitted
                sock.close()
            self.arrivals = []
        self.selector.close()
        self.bell.close()
        self.bell_rope.close()

    def admit(self):
        """Take the new arrivals in; if the room is full, the connection that
        has waited longest (and said nothing) is closed to make room."""
        try:
            while self.bell.recv(4096):
                pass
        except OSError:
            pass
        with self.lock:
            arrivals, self.arrivals = self.arrivals, []
        for sock, address, deadline in arrivals:
            if len(self.waiting) >= self.capacity:
                oldest = next(iter(self.waiting))
                self.server.log(f"rejected {format_address(self.leave(oldest)[0])}: "
                                f"{silence(oldest)}, closed to make room for a new connection "
                                f"(--max-pending {self.capacity})")
                oldest.close()
            self.waiting[sock] = (address, deadline)
            self.selector.register(sock, selectors.EVENT_READ)

    def examine(self, sock):
        """A waiting connection sent something: hand it over, wait on, or close it."""
        verdict = hello_arrived(sock)
        if verdict == "wait":
            return
        address, deadline = self.leave(sock)
        if verdict == "yes":
            ready_for_worker(sock)
            self.server.start_worker(sock, address, deadline)
        else:
            self.server.log(f"rejected {format_address(address)}: {verdict}")
            sock.close()

    def expire(self):
        """Close the connections whose handshake deadline passed in silence."""
        now = time.monotonic()
        for sock, (address, deadline) in list(self.waiting.items()):
            if deadline <= now:
                self.leave(sock)
                self.server.log(f"rejected {format_address(address)}: {silence(sock)} within "
                                f"{self.server.handshake_timeout:g} s (--handshake-timeout): "
                                f"an idle, slow or silent client")
                sock.close()

    def leave(self, sock):
        """Take a connection out of the room; return its (address, deadline)."""
        self.selector.unregister(sock)
        return self.waiting.pop(sock)


def silence(sock):
    """What a waiting connection has said: "sent nothing", or "sent only part
    of its ClientHello"."""
    try:
        said = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (OSError, ValueError):
        said = b""
    return "sent only part of its ClientHello" if said else "sent nothing"


MAX_HELLO = 32768            # bytes a ClientHello may take, records included


def hello_arrived(sock):
    """Has a waiting connection sent its whole ClientHello? "yes" (or it is
    not TLS, or it closed: either way, time for a worker), "wait", or a
    reason to close it now.

    TLS sends the ClientHello in handshake records (RFC 8446 5.1: type 22,
    version, 2-byte length), and the hello itself starts with its type (1)
    and a 3-byte length (4.1.2). While bytes are missing, we set the socket's
    receive low-water mark (SO_RCVLOWAT) to the total still needed, so that
    the selector wakes us only when all of them are there: a client dribbling
    its hello, a byte or a record at a time, holds no worker."""
    try:
        armed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        data = sock.recv(MAX_HELLO, socket.MSG_PEEK)
        if not data or data[0] != 22:
            return "yes"                       # closed, or not a handshake: the worker says so
        pos, hello, need = 0, b"", 0
        while True:
            if len(data) < pos + 5:
                need = pos + 5                 # the next record's header
                break
            length = int.from_bytes(data[pos + 3:pos + 5], "big")
            if data[pos] != 22 or not 0 < length <= 16384:
                return "a malformed ClientHello (bad record)"
            if len(data) < pos + 5 + length:
                need = pos + 5 + length        # the rest of this record
                break
            hello += data[pos + 5:pos + 5 + length]
            pos += 5 + length
            if len(hello) >= 4:
                if hello[0] != 1 or 4 + int.from_bytes(hello[1:4], "big") > MAX_HELLO:
                    return "a malformed ClientHello (not a hello, or too big)"
                if len(hello) >= 4 + int.from_bytes(hello[1:4], "big"):
                    return "yes"
        if need > MAX_HELLO:
            return "a malformed ClientHello (too big)"
        if armed > 1 and len(data) < armed:
            return "yes"           # woken before the bytes we waited for: it hung up; say so
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
        return "wait"
    except (OSError, ValueError):  # ValueError: not a plain socket; OSError: no SO_RCVLOWAT
        return "yes"               # (Windows) or a reset: the worker finds out and logs it


def ready_for_worker(sock):
    """Reset the low-water mark, so that the worker's reads return what there is."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
    except (OSError, ValueError):
        pass


def close_tls(tls):
    """End a served connection with a close_notify alert (RFC 8446 6.1):
    it tells the client the data is complete, not cut off by an attacker.
    unwrap() sends it and waits briefly for the client's reply."""
    try:
        tls.settimeout(LINGER_TIMEOUT)
        tls.unwrap()
    except (OSError, ValueError):      # the client has gone already
        pass


def close_gently(sock):
    """Prepare to close so that the client surely reads our last words (a
    TLS alert, a 400); the caller then closes.

    Under TLS 1.3 the client finishes its side of the handshake before the
    server has checked the client certificate, and sends its request at
    once. If we close while that request sits unread in our receive buffer,
    the kernel answers with a TCP reset, which can destroy the alert
    before the client reads it. So: send FIN, read what the client sent
    (briefly, bounded), then close.
    """
    try:
        sock.shutdown(socket.SHUT_WR)   # on an SSLSocket, also drops TLS state
        drain_input(sock, LINGER_TIMEOUT)
    except OSError:
        pass


def drain_input(sock, seconds, limit=65536, until=None):
    """Read and return what the client sends, for at most `seconds` in all
    and `limit` bytes, stopping at end of input or once `until` arrives.
    One total deadline, so a client sending a byte at a time cannot stretch it."""
    deadline = time.monotonic() + seconds
    data = b""
    while len(data) < limit and not (until and until in data):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def reject_non_handshake(server, sock, peer, first):
    """A connection that does not start with a TLS handshake record: answer
    plain HTTP in HTTP (as nginx does), name anything else, and close."""
    if first[0] == 21:                   # an alert record (RFC 8446 5.1): TLS, but a goodbye
        alert = ALERTS.get(first[6], f"alert {first[6]}") if len(first) >= 7 else "an alert"
        server.log(f"rejected {peer}: the client sent a TLS alert ({alert}) instead of a "
                   f"ClientHello: it gave up before the handshake")
    elif first.split(b" ")[0].isalpha():
        server.log(f"rejected {peer}: not TLS at all: plain HTTP on the TLS port")
        body = (b"400 Bad Request: this server speaks HTTPS with a client certificate.\n"
                b"Use https://, and present a certificate, e.g.\n"
                b"  curl --cacert certs/ca.crt --cert certs/client.crt --key certs/client.key https://...\n")
        try:
            # Consume the request head first (bounded), so closing sends no reset.
            drain_input(sock, LINGER_TIMEOUT, limit=16384, until=b"\r\n\r\n")
            sock.settimeout(LINGER_TIMEOUT)
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
    else:
        server.log(f"rejected {peer}: not TLS at all (first bytes {first[:4].hex()})")
    close_gently(sock)


# --- why a client was rejected -------------------------------------------

# OpenSSL's verify codes (X509_V_ERR_*), for a client certificate we refused.
VERIFY_REASONS = {
    3: "no CRL for a CA in the client's chain: pass --crl with the CRL of the CA that "
       "issued it (with --crl-chain: of every CA in the chain, the root included)",
    9: "a certificate in the client's chain is not valid yet (check the clocks)",
    10: "a certificate in the client's chain has expired: the leaf or an intermediate",
    11: "our CRL is not valid yet (its lastUpdate is in the future): check this machine's clock",
    12: "our CRL has expired (its nextUpdate passed): publish a fresh one (make crl), then "
        "kill -HUP the server",
    18: "client certificate is self-signed, not issued by our CA",
    19: "client certificate is signed by an unknown CA (its chain ends in a root we do not trust)",
    20: "client certificate is signed by an unknown CA (or it came without its intermediate CA)",
    23: "client certificate has been revoked (it is listed in the CRL)",
    26: "client certificate has the wrong purpose (its extendedKeyUsage lacks clientAuth)",
}

# OpenSSL's reason codes, for handshakes that failed for other reasons.
SSL_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate (the client sent none)",
    "UNSUPPORTED_PROTOCOL": "client offered only TLS 1.0/1.1; TLS 1.2 or newer is required",
    "TLSV1_ALERT_PROTOCOL_VERSION": "client offered only TLS 1.0/1.1; TLS 1.2 or newer is required",
    "NO_SHARED_CIPHER": "no cipher or key-exchange group in common with the client (we offer "
                        "ECDHE with AEAD ciphers, on {groups})",
    "NO_SUITABLE_KEY_SHARE": "no key-exchange group in common with the client (we offer "
                             "{groups})",
    "TLSV1_ALERT_UNKNOWN_CA": "client does not trust our certificate (it lacks our CA, or "
                              "we did not send our intermediate CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client refused our certificate (wrong hostname or not trusted)",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client refused our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "client says a certificate in our chain has expired",
    "UNEXPECTED_EOF_WHILE_READING": "client hung up during the handshake",
    "HTTP_REQUEST": "not TLS at all: plain HTTP on the TLS port",
}

# TLS alert descriptions (RFC 8446 6.2), for an alert sent instead of a hello.
ALERTS = {0: "close_notify", 10: "unexpected_message", 40: "handshake_failure",
          42: "bad_certificate", 46: "certificate_unknown", 48: "unknown_ca",
          50: "decode_error", 70: "protocol_version", 80: "internal_error", 90: "user_canceled"}


def describe_rejection(exc, context=None):
    """Say in plain words why a TLS handshake with a client failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return describe_verify_code(exc.verify_code, exc.verify_message, context)
    if isinstance(exc, socket.timeout):
        return "handshake not finished in time (--handshake-timeout): an idle or slow client"
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):   # the latter on 3.9
        return "client hung up during the handshake"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in SSL_REASONS:
            groups = getattr(context, "groups", KEY_EXCHANGE_GROUPS.replace(":", ", "))
            return SSL_REASONS[reason].replace("{groups}", groups)
        if reason.startswith("TLSV1_ALERT_") or reason.startswith("SSLV3_ALERT_"):
            return f"client aborted the handshake (alert {reason.split('ALERT_')[1].lower()})"
        if exc.library == "ASN1" or "ASN1" in reason:
            return f"client certificate could not be parsed (malformed DER: {describe_ssl_error(exc)})"
        return f"not a TLS handshake we accept ({describe_ssl_error(exc)})"
    if isinstance(exc, ConnectionResetError):
        return "client reset the connection during the handshake"
    return f"connection failed: {exc}"


def describe_verify_code(code, message, context=None):
    """Say in plain words why a client certificate failed verification,
    from OpenSSL's verify code (or check_forwarded's, the same codes)."""
    if code == 10 and context is not None:
        expired = expired_cas(context)
        if expired:     # perhaps our own CA: then it is not the client's fault
            return (f"a certificate in the client's chain has expired: the leaf, an "
                    f"intermediate, or our CA {expired} (--ca)")
    return VERIFY_REASONS.get(code, f"client certificate fails verification: {message}")


def describe_ssl_error(exc):
    """OpenSSL's reason, without the interpreter's source position."""
    text = exc.reason or getattr(exc, "strerror", None) or str(exc)
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(text)).replace("_", " ").lower()


def expired_cas(context, named=None):
    """The CAs in our trust store that have expired (only those with CN
    `named`, if given), named, or ""."""
    if not hasattr(context, "ca_dates"):     # decoded once per context: resumptions are hot
        context.ca_dates = [
            ([v for rdn in ca.get("subject", ()) for k, v in rdn if k == "commonName"],
             ca["notAfter"], ssl.cert_time_to_seconds(ca["notAfter"]))
            for ca in context.get_ca_certs()]
    now = time.time()
    names = []
    for cn, not_after, seconds in context.ca_dates:
        if named is not None and named not in cn:
            continue
        if seconds < now:
            names.append(f"{printable(cn[0]) if cn else '(no CN)'} (expired {not_after})")
    return ", ".join(names)


# --- a forwarded certificate: the checks a direct client meets ----------
#
# Behind a proxy (--trust-proxy), a client's certificate arrives in a
# header, and OpenSSL never sees it: the proxy verified it, or should have.
# A proxy that forgot revocation (no ssl_crl), or resumed a session from
# before the revocation or the expiry, would hand us a client we would
# refuse at the door. So each forwarded certificate meets, on every request,
# the checks OpenSSL makes on a direct client, in OpenSSL's order, with the
# same verify codes (and so the same log line): issued by one of our --ca
# (by name, and by key identifier when both carry one), for clientAuth,
# not revoked in the --crl of its CA (which must be current), and within
# its dates and its CA's.
#
# Its *signature* is not checked (Python's ssl verifies signatures only
# inside a handshake); that stays the proxy's job. It would add little: a
# certificate is no secret (every server it was shown to holds a copy), so
# whoever holds the proxy's key can forward any real client's certificate
# and be taken for that client. The proxy's key is the thing to guard.
# Also simplified: only the leaf arrives (nginx forwards no chain), so a
# client issued by an intermediate CA needs that intermediate in --ca, and
# --crl-chain cannot apply.

def keep_forwarding_checks(context, crls):
    """Keep on the context what check_forwarded needs, read once per
    context: the CAs it trusts (--ca) and the CRLs it loaded (--crl)."""
    context.forward_cas, context.forward_crls = [], []
    for der in context.get_ca_certs(binary_form=True):
        try:
            context.forward_cas.append(read_certificate(der))
        except ValueError:
            pass                        # OpenSSL took it; we cannot name it: no issuer match
    for path in crls:
        for _, der in read_pem(path, "X509 CRL"):
            try:
                context.forward_crls.append(read_crl(der))
            except ValueError:
                pass                    # then its CA has no CRL here: code 3 refuses its clients


def check_forwarded(info, context, now):
    """The verify code (VERIFY_REASONS) for which OpenSSL would refuse a
    direct client with this certificate, or None if it would accept it."""
    issuers = [ca for ca in getattr(context, "forward_cas", ())
               if ca["subject"] == info["issuer"]
               and (None in (ca["ski"], info["aki"]) or ca["ski"] == info["aki"])]
    if not issuers:
        return 18 if info["issuer"] == info["subject"] else 20
    if info["eku"] is not None and not {OID_CLIENT_AUTH, OID_ANY_EKU} & set(info["eku"]):
        return 26
    crls = getattr(context, "forward_crls", ())
    if crls:                            # --crl given: the CA that issued it must have one here
        own = [crl for crl in crls if crl["issuer"] == info["issuer"]]
        if not own:
            return 3
        if all(crl["this_update"] > now for crl in own):
            return 11
        if all(crl["next_update"] is not None and crl["next_update"] < now for crl in own):
            return 12
        if any(info["serial"] in crl["revoked"] for crl in own):
            return 23
    if now < info["not_before"]:
        return 9
    if now > info["not_after"] or all(now > ca["not_after"] for ca in issuers):
        return 10
    return None


# --- checks of our own files ---------------------------------------------
#
# Python's ssl module gives the fields of the peer's certificate
# (getpeercert) and the dates of trusted CAs (get_ca_certs), but nothing
# for our own certificate, a CRL, or a certificate that arrives in a
# header. Rather than call private functions or the openssl binary, we read
# the few fields we need from the DER bytes ourselves (X.509 is ASN.1 DER,
# RFC 5280 4.1 and 5.1): names, dates, basicConstraints, extendedKeyUsage,
# subjectAltName, key identifiers, serial numbers, a CRL's revoked serials.
# It only reads; OpenSSL verifies every signature (and every direct client:
# check_forwarded, above, repeats its checks for a certificate in a header).

OID_CN = bytes.fromhex("550403")                    # 2.5.4.3 commonName
OID_SAN = bytes.fromhex("551d11")                   # 2.5.29.17 subjectAltName
OID_RSA = bytes.fromhex("2a864886f70d010101")       # 1.2.840.113549.1.1.1 rsaEncryption
OID_EC = bytes.fromhex("2a8648ce3d0201")            # 1.2.840.10045.2.1 id-ecPublicKey
OID_BASIC_CONSTRAINTS = bytes.fromhex("551d13")     # 2.5.29.19
OID_EKU = bytes.fromhex("551d25")                   # 2.5.29.37 extendedKeyUsage
OID_SERVER_AUTH = bytes.fromhex("2b06010505070301")  # 1.3.6.1.5.5.7.3.1
OID_CLIENT_AUTH = bytes.fromhex("2b06010505070302")  # 1.3.6.1.5.5.7.3.2
OID_SKI = bytes.fromhex("551d0e")                   # 2.5.29.14 subjectKeyIdentifier
OID_AKI = bytes.fromhex("551d23")                   # 2.5.29.35 authorityKeyIdentifier
OID_ANY_EKU = bytes.fromhex("551d2500")             # 2.5.29.37.0
SAN_TYPES = {0x81: "email", 0x82: "dns", 0x86: "uri", 0x87: "ip"}   # GeneralName tags


def der_items(data, start=0, end=None):
    """The DER elements in data[start:end], as (tag, content start, content end)."""
    end = len(data) if end is None else end
    items, pos = [], start
    while pos < end:
        if pos + 2 > end:
            raise ValueError("truncated DER")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:                               # long form: length in n bytes
            n = length & 0x7F
            if not 1 <= n <= 4 or pos + n > end:
                raise ValueError("bad DER length")
            length, pos = int.from_bytes(data[pos:pos + n], "big"), pos + n
        if pos + length > end:
            raise ValueError("DER element runs past its end")
        items.append((tag, pos, pos + length))
        pos += length
    return items


def der_inside(data, item):
    """The elements inside a constructed DER element."""
    return der_items(data, item[1], item[2])


def der_time(data, item):
    """A UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime as seconds since the epoch."""
    tag, start, end = item
    text = data[start:end].decode("ascii")
    if tag == 0x17:
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    elif tag != 0x18:
        raise ValueError("not a time")
    # YYYYMMDDHHMMSS, read by hand: time.strptime costs ~20 us a call.
    numbers = [int(text[:4])] + [int(text[i:i + 2]) for i in range(4, 14, 2)]
    return calendar.timegm(numbers)


def der_string(data, item):
    """A DirectoryString as text (BMPString is UTF-16, UniversalString UTF-32)."""
    tag, start, end = item
    raw = data[start:end]
    codec = {0x1E: "utf-16-be", 0x1C: "utf-32-be"}.get(tag, "utf-8")
    return raw.decode(codec, "replace")


def common_names(data, name):
    """Every CN of a Name (a subject may hold several)."""
    names = []
    for rdn in der_inside(data, name):
        for attribute in der_inside(data, rdn):
            oid, value = der_inside(data, attribute)[:2]
            if data[oid[1]:oid[2]] == OID_CN:
                names.append(der_string(data, value))
    return names


def common_name(data, name):
    """The CN of a Name, or None (the last one, if there are several)."""
    names = common_names(data, name)
    return names[-1] if names else None


def read_certificate(der):
    """The fields of an X.509 certificate this server uses, as a dict:
    cn, cns (all CNs), issuer_cn, not_before, not_after (epoch seconds), ca (bool),
    eku (list of OIDs, or None when absent), has_san, san [(type, value)];
    and, to find its issuer and its CRL entry: serial, issuer and subject
    (the Names' DER bytes), ski and aki (key identifiers, or None)."""
    try:
        certificate = der_inside(der, der_items(der)[0])
        tbs = der_inside(der, certificate[0])
        if tbs[0][0] == 0xA0:                           # [0] version, absent in v1
            tbs = tbs[1:]
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
        validity = der_inside(der, tbs[3])
        spki_oid = der_inside(der, der_inside(der, tbs[5])[0])[0]
        key = {OID_RSA: "rsa", OID_EC: "ec"}.get(der[spki_oid[1]:spki_oid[2]], "other")
        info = {"key": key, "cn": common_name(der, tbs[4]), "cns": common_names(der, tbs[4]),
                "issuer_cn": common_name(der, tbs[2]),
                "not_before": der_time(der, validity[0]), "not_after": der_time(der, validity[1]),
                "ca": False, "eku": None, "has_san": False, "san": [],
                "serial": int.from_bytes(der[tbs[0][1]:tbs[0][2]], "big", signed=True),
                "issuer": der[tbs[2][1]:tbs[2][2]], "subject": der[tbs[4][1]:tbs[4][2]],
                "ski": None, "aki": None}
        for tag, start, end in tbs[6:]:
            if tag != 0xA3:                              # [3] extensions
                continue
            for extension in der_inside(der, der_items(der, start, end)[0]):
                parts = der_inside(der, extension)       # id, [critical], OCTET STRING
                oid, value = der[parts[0][1]:parts[0][2]], der_items(der, parts[-1][1], parts[-1][2])[0]
                if oid == OID_BASIC_CONSTRAINTS:
                    inner = der_inside(der, value)
                    info["ca"] = bool(inner) and inner[0][0] == 0x01 and der[inner[0][1]] != 0
                elif oid == OID_EKU:
                    info["eku"] = [der[s:e] for _, s, e in der_inside(der, value)]
                elif oid == OID_SKI:
                    info["ski"] = der[value[1]:value[2]]
                elif oid == OID_AKI:                     # [0] keyIdentifier, if present
                    ids = [der[s:e] for t, s, e in der_inside(der, value) if t == 0x80]
                    info["aki"] = ids[0] if ids else None
                elif oid == OID_SAN:
                    info["has_san"] = True
                    for name_tag, s, e in der_inside(der, value):
                        if name_tag in SAN_TYPES:
                            raw = der[s:e]
                            text = (str(ipaddress.ip_address(raw)) if name_tag == 0x87
                                    else raw.decode("utf-8", "replace"))
                            info["san"].append((SAN_TYPES[name_tag], text))
        return info
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a well-formed X.509 certificate: {exc}") from None


def read_crl(der):
    """The issuer (its CN, and its Name's DER bytes), the thisUpdate/nextUpdate
    dates and the revoked serial numbers of a CRL (RFC 5280 5.1)."""
    try:
        tbs = der_inside(der, der_inside(der, der_items(der)[0])[0])
        if tbs[0][0] == 0x02:                            # version, absent in v1 CRLs
            tbs = tbs[1:]
        # signature, issuer, thisUpdate, nextUpdate (optional),
        # revokedCertificates (optional), [0] crlExtensions (optional)
        rest = tbs[3:]
        next_update = None
        if rest and rest[0][0] in (0x17, 0x18):
            next_update, rest = der_time(der, rest[0]), rest[1:]
        revoked = set()
        if rest and rest[0][0] == 0x30:                  # each: serial, date, [extensions]
            for entry in der_inside(der, rest[0]):
                serial = der_inside(der, entry)[0]
                revoked.add(int.from_bytes(der[serial[1]:serial[2]], "big", signed=True))
        return {"issuer_cn": common_name(der, tbs[1]), "issuer": der[tbs[1][1]:tbs[1][2]],
                "this_update": der_time(der, tbs[2]), "next_update": next_update,
                "revoked": revoked}
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a well-formed CRL: {exc}") from None


PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def pem_labels(path):
    """The labels of the PEM blocks in a file: ["CERTIFICATE", "X509 CRL", ...]."""
    return [label for label, _ in read_pem(path)]


def read_pem(path, want=None):
    """The PEM blocks in a file, as (label, DER bytes), optionally only `want`."""
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 22)
    except OSError as exc:
        raise ConfigError("unreadable file", f"cannot read {path!r} ({exc.strerror})",
                          "check its permissions") from None
    blocks = []
    for label, body in PEM_BLOCK.findall(text):
        if want is None or label.decode() == want:
            try:
                blocks.append((label.decode(), base64.b64decode(b"".join(body.split()))))
            except binascii.Error:
                blocks.append((label.decode(), b""))
    return blocks


def pem_to_ders(text):
    """The certificates in a PEM text (bytes), as DER."""
    return [base64.b64decode(b"".join(body.split()))
            for label, body in PEM_BLOCK.findall(text) if label == b"CERTIFICATE"]


def der_hint(path, kind="x509"):
    """If `path` looks like DER rather than PEM, the command that converts it."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return ""
    if head[:1] == b"\x30" and len(head) == 2 and head[1] >= 0x80:
        return (f"; it looks like DER (binary): convert it with "
                f"'openssl {kind} -inform DER -in {path} -out {path}.pem'")
    return ""


def check_server_certificate(cert):
    """Refuse, at start, a --cert that no client would accept as a server:
    a CA certificate, or a certificate for client authentication only.
    Return the type of its key: "rsa", "ec" or "other"."""
    blocks = read_pem(cert, "CERTIFICATE")
    try:
        info = read_certificate(blocks[0][1])
    except (IndexError, ValueError):
        return None                     # OpenSSL will say what is wrong with it
    if info["ca"]:
        raise ConfigError("wrong certificate", f"{cert!r} is a CA certificate (basicConstraints "
                          f"CA:TRUE), not a server certificate", "pass --cert certs/server.crt")
    eku = info["eku"]
    if eku is not None and OID_SERVER_AUTH not in eku and OID_ANY_EKU not in eku:
        raise ConfigError("wrong certificate", f"{cert!r} is not for TLS servers (its "
                          f"extendedKeyUsage lacks serverAuth: a client certificate?)",
                          "pass --cert certs/server.crt")
    return info["key"]


def warn_if_no_san(cert):
    """A warning when the server certificate has no subjectAltName, or None:
    clients that follow RFC 9525 (client.py among them) match the host name
    against the SAN only, and refuse a certificate that names it in the CN alone."""
    try:
        info = read_certificate(read_pem(cert, "CERTIFICATE")[0][1])
    except (IndexError, ValueError):
        return None                         # make_server_context has said what is wrong
    if info["has_san"]:
        return None
    name = info["cn"] or "localhost"
    return (f"warning: server certificate {cert!r} ({printable(info['cn'] or '(no CN)')}) has no "
            f"subjectAltName: clients that ignore the CN, as RFC 9525 asks (client.py among them), "
            f"refuse it with 'hostname mismatch' -- reissue it with subjectAltName = "
            f"DNS:{printable(name)} (as make certs does)")


def out_of_date(info, now):
    """"expired on DATE" or "not valid until DATE" for a certificate, or None."""
    if now > info["not_after"]:
        return f"expired on {format_date(info['not_after'])}"
    if now < info["not_before"]:
        return f"is not valid until {format_date(info['not_before'])}"
    return None


def format_date(seconds):
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def date_warnings(ca, cert, crls, warn_days, now=None):
    """Warnings, one line each, for files that will make handshakes fail:
    certificates (ours, our chain, the CAs) and CRLs that are out of date
    or expire within `warn_days` days."""
    now = time.time() if now is None else now
    soon = now + warn_days * 86400
    pid = os.getpid()
    checks = [(cert, "server certificate", "every client refuses this server",
               f"renew it, then kill -HUP {pid}"),
              (ca, "CA certificate", "every client certificate it signed is refused",
               f"renew the CA (same key), then kill -HUP {pid}")]
    warnings = []
    for path, what, consequence, fix in checks:
        for _, der in read_pem(path, "CERTIFICATE"):
            try:
                info = read_certificate(der)
            except ValueError:
                continue
            name = f"{what} {path!r} ({printable(info['cn'] or '(no CN)')})"
            late = out_of_date(info, now)
            if late:
                warnings.append(f"warning: {name} {late}: {consequence} -- {fix}")
            elif info["not_after"] < soon:
                days = int((info["not_after"] - now) // 86400)
                warnings.append(f"warning: {name} expires in {days} days, on "
                                f"{format_date(info['not_after'])} -- {fix}")
    for path in crls:
        for _, der in read_pem(path, "X509 CRL"):
            try:
                crl = read_crl(der)
            except ValueError:
                continue
            name = f"CRL {path!r} (from {printable(crl['issuer_cn'] or '(no CN)')})"
            fix = f"publish a fresh CRL (make crl), then kill -HUP {pid}"
            if crl["next_update"] is not None and crl["next_update"] < now:
                warnings.append(f"warning: {name} expired on {format_date(crl['next_update'])} "
                                f"(its nextUpdate): every client is refused -- {fix}")
            elif crl["this_update"] > now:
                warnings.append(f"warning: {name} is not valid until "
                                f"{format_date(crl['this_update'])}: every client is refused "
                                f"-- check this machine's clock")
            elif crl["next_update"] is not None and crl["next_update"] < soon:
                days = int((crl["next_update"] - now) // 86400)
                warnings.append(f"warning: {name} expires in {days} days, on "
                                f"{format_date(crl['next_update'])} -- {fix}")
    return warnings


def describe_groups(context):
    """Log lines: which key-exchange groups the server really accepts.

    Python cannot list them, so we try: for each group, a TLS 1.3 client
    that offers only it, talking to our context through memory buffers (no
    network), which the server either answers or refuses. About 5 ms, at
    start only. It shows whether groups.cnf (or the user's OPENSSL_CONF) took
    effect, and catches a finite-field group left open."""
    accepted, refused, untested = [], [], []
    for name, tls_name in GROUP_NAMES.items():
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)    # it never reads our answer
        client.minimum_version = ssl.TLSVersion.TLSv1_3
        try:
            client.set_ecdh_curve(name)
        except (ssl.SSLError, ValueError):        # Python 3.9 and 3.10: EC curves only
            untested.append(tls_name)
            continue
        to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
        hello, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        try:
            client.wrap_bio(to_client, hello, server_hostname="probe").do_handshake()
        except ssl.SSLWantReadError:               # the ClientHello is written
            to_server.write(hello.read())
        try:
            context.wrap_bio(to_server, out, server_side=True).do_handshake()
        except ssl.SSLWantReadError:               # answered: waits for the client's certificate
            accepted.append(tls_name)
        except ssl.SSLError:                       # no group in common
            refused.append(tls_name)
    source = (f"OPENSSL_CONF={GROUPS_FROM}" if GROUPS_FROM and GROUPS_FROM != GROUPS_CONF
              else "set_groups()" if hasattr(context, "set_groups")
              else "groups.cnf" if GROUPS_FROM else "set_ecdh_curve(), one group")
    line = f"key-exchange groups ({source}): {', '.join(accepted) or 'none'}"
    line += f"; refused: {', '.join(refused)}" if refused else ""
    line += f"; untested (Python < 3.11): {', '.join(untested)}" if untested else ""
    lines = [line]
    if "ffdhe2048" in accepted:
        lines.append(f"warning: a finite-field group is accepted: one ClientHello asking for "
                     f"ffdhe8192 costs ~100 ms of CPU -- set 'Groups = {KEY_EXCHANGE_GROUPS}' "
                     f"in the system_default section of {GROUPS_FROM}")
    return lines


def warn_if_key_exposed(key):
    """A warning when the private key file is readable by group or others, or None."""
    mode = os.stat(key).st_mode & 0o777
    if mode & 0o077:
        return f"warning: {key} has mode {mode:04o}, readable by other users -- chmod 600 {key}"
    return None


def open_keylog(context, path):
    """Write TLS secrets to `path` (for Wireshark), refusing any file that
    someone else could read or has planted.

    The file is created (or opened) with O_NOFOLLOW and mode 0600, and
    checked: a regular file, ours, no group or other bits. Then Python opens
    the path again itself (keylog_filename takes a name, not a descriptor),
    so we look at the path once more and refuse if it is no longer the file
    we checked. The race that remains: someone who can write to the folder
    could swap the file and swap it back between those two looks. Keep key
    logs in a folder only you can write to."""
    # O_NONBLOCK: a FIFO with no reader fails at once instead of blocking us.
    flags = (os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_NONBLOCK", 0))
    try:
        fd = os.open(path, flags, 0o600)
        try:
            checked = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigError("bad key log", f"cannot use {path!r} as the key log ({why})",
                          "pass --keylog a new file in a folder only you can write to") from None
    problem = None
    if not stat.S_ISREG(checked.st_mode):
        problem = "it is not a regular file"
    elif checked.st_uid != os.geteuid():
        problem = "it belongs to another user"
    elif checked.st_mode & 0o077:
        problem = f"its mode is {checked.st_mode & 0o777:04o}: others could read the secrets"
    if problem is None:
        context.keylog_filename = path
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (checked.st_dev, checked.st_ino) or not stat.S_ISREG(now.st_mode):
            problem = "it was replaced while we opened it"
    if problem:
        raise ConfigError("bad key log", f"refusing the key log {path!r}: {problem}",
                          f"remove it, or chmod 600 {path}, or pass --keylog a new file")
    log(f"warning: writing TLS session secrets to {path}; use only for debugging")


def raise_open_file_limit(needed):
    """Raise the soft limit on open files to the hard limit, so that the
    waiting room and the workers fit; return a warning if they do not."""
    try:
        import resource             # Unix only
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (f"warning: only {soft} open files allowed (ulimit -n), {needed} wanted for "
                f"--max-pending and --max-connections -- raise it with ulimit -n {needed}")
    return None


# --- main ----------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line, like every other error here."""

    def error(self, message):
        fix = "" if " -- " in message else f" -- see {self.prog} --help"
        self.exit(2, f"error: bad option: {message}{fix}\n")


def seconds(text):
    """Read a timeout from the command line: seconds, more than 0, at most a day."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 86400:                      # also false for nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds: use more than 0, "
                                         f"at most 86400")
    return value


def count(text):
    """Read a count from the command line: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def parse_args(argv):
    """Read the command line."""
    p = ArgumentParser(
        description="HTTPS server that requires a client certificate (mutual TLS).",
        epilog="example: python3 server.py --port 3000 --allow cn:my-client")
    p.add_argument("--host", default="localhost", help="address to listen on (default localhost)")
    p.add_argument("--port", type=int, default=3000, help="TCP port (default 3000; 0 = any free port)")
    p.add_argument("--ca", default=os.path.join(CERTS, "ca.crt"), help="CA that signs client certificates (default certs/ca.crt)")
    p.add_argument("--cert", default=os.path.join(CERTS, "server.crt"), help="server certificate, PEM (default certs/server.crt)")
    p.add_argument("--key", default=os.path.join(CERTS, "server.key"), help="server private key, PEM (default certs/server.key)")
    p.add_argument("--crl", action="append", default=[], metavar="FILE",
                   help="a certificate revocation list (PEM) to check clients against; "
                        "repeat for each CA's CRL")
    p.add_argument("--crl-chain", action="store_true",
                   help="check every certificate of the client's chain against the CRLs, not "
                        "just its own (needs a current CRL from every CA, the root included)")
    p.add_argument("--allow", action="append", default=[], metavar="ID", type=parse_identity,
                   help="only this client identity is served, e.g. cn:my-client or "
                        "uri:spiffe://example.org/x (repeatable)")
    p.add_argument("--trust-proxy", metavar="ID", type=parse_identity,
                   help="a client with this identity (e.g. cn:my-proxy) is a reverse proxy: "
                        "take each request's client from its X-Client-Cert header, checked "
                        "against --ca and --crl as a direct client is")
    p.add_argument("--keylog", metavar="FILE", help="write TLS secrets for Wireshark (debug only)")
    p.add_argument("--warn-days", type=int, default=WARN_DAYS, metavar="N",
                   help=f"warn when a certificate or CRL expires within N days (default {WARN_DAYS})")
    p.add_argument("--handshake-timeout", type=seconds, default=HANDSHAKE_TIMEOUT, metavar="S",
                   help=f"seconds from connect to a finished TLS handshake (default {HANDSHAKE_TIMEOUT:g})")
    p.add_argument("--request-timeout", type=seconds, default=REQUEST_TIMEOUT, metavar="S",
                   help=f"seconds to send a request head, once begun (default {REQUEST_TIMEOUT:g})")
    p.add_argument("--idle-timeout", type=seconds, default=IDLE_TIMEOUT, metavar="S",
                   help=f"seconds a keep-alive connection may wait idle (default {IDLE_TIMEOUT:g})")
    p.add_argument("--max-connections", type=count, default=MAX_CONNECTIONS, metavar="N",
                   help=f"connections served at once; more are refused (default {MAX_CONNECTIONS})")
    p.add_argument("--session-lifetime", type=seconds, default=SESSION_LIFETIME, metavar="S",
                   help=f"seconds a TLS session may be resumed without a full handshake "
                        f"(default {SESSION_LIFETIME:g})")
    p.add_argument("--max-pending", type=count, default=MAX_PENDING, metavar="N",
                   help=f"connections whose ClientHello is not whole yet; the oldest makes room "
                        f"(default {MAX_PENDING})")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error(f"--port {args.port} is not a TCP port -- use 1-65535 (or 0 for any free port)")
    if args.warn_days < 0:
        p.error(f"--warn-days {args.warn_days} is negative -- use 0 to warn only when expired")
    return args


def resolve(host, port):
    """The address to listen on for `host`, as (address, port): IPv4 first.

    "localhost" often resolves to ::1 before 127.0.0.1. A client that finds
    nothing on ::1 falls back to 127.0.0.1, but https://127.0.0.1/ has no
    fallback, so we listen on IPv4 when we can (--host ::1 for IPv6)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError("bad option", f"cannot resolve --host {host!r} ({why})",
                          "try --host 127.0.0.1") from None
    info.sort(key=lambda entry: entry[0] != socket.AF_INET)
    return info[0][4][:2]


def explain_listen_error(exc, host, port):
    """Say why we cannot listen on host:port, and what to do about it."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port in use: port {port} on {host} is in use (is another server running?) "
                f"-- stop it, or pass --port N (0 = any free port)")
    if exc.errno == errno.EACCES:
        return f"port not allowed: cannot listen on port {port} ({exc.strerror}) -- use a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"bad option: {host!r} is not an address of this machine -- pass --host localhost"
    return f"cannot listen: {host}:{port} ({exc.strerror or exc}) -- pass another --host or --port"


def fail(message):
    """Print one line saying what is wrong and how to fix it; return exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    """Start the server and serve until Ctrl-C (or SIGTERM)."""
    args = parse_args(argv)

    def build_context():
        context = make_server_context(args.ca, args.cert, args.key, args.crl, args.keylog,
                                      args.crl_chain)
        for warning in date_warnings(args.ca, args.cert, args.crl, args.warn_days) + [
                warn_if_no_san(args.cert)]:
            if warning:
                log(warning)
        return context
    try:
        context = build_context()
        address = resolve(args.host, args.port)
    except ConfigError as exc:
        return fail(exc)
    for warning in (warn_if_key_exposed(args.key),
                    raise_open_file_limit(args.max_pending + args.max_connections + 64)):
        if warning:
            log(warning)
    try:
        server = MTLSServer(address, context, allow=args.allow, trust_proxy=args.trust_proxy,
                            handshake_timeout=args.handshake_timeout,
                            request_timeout=args.request_timeout, idle_timeout=args.idle_timeout,
                            max_connections=args.max_connections, max_pending=args.max_pending,
                            session_lifetime=args.session_lifetime, reload=build_context)
    except OSError as exc:
        return fail(explain_listen_error(exc, args.host, args.port))

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: server.request_reload())
    # SIGTERM (kill, systemd, docker stop) stops us the way Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    host = args.host if ":" not in args.host else f"[{args.host}]"
    allowed = f"; allowed: {', '.join(spell(a) for a in args.allow)}" if args.allow else ""
    proxy = f"; trusted proxy: {spell(args.trust_proxy)}" if args.trust_proxy else ""
    log(f"serving https://{host}:{server.server_port}/ (pid {os.getpid()}): client certificate "
        f"signed by {args.ca} required, TLS 1.2+{allowed}{proxy}. "
        f"Ctrl-C, or kill {os.getpid()}, stops it.")
    for line in describe_groups(context):
        log(line)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM now would interrupt the clean-up itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.server_close()       # ends open connections too: workers finish at once
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
