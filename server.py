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
         and, in a flood of refusals, one line a second with the count per reason.
Run:     python3 server.py                  (https://localhost:3000/)
         python3 server.py --port 8443 --allow cn:my-client --crl certs/ca.crl
         kill -HUP PID     re-reads certificate, key, CA and CRL files
         Ctrl-C, or kill PID (SIGTERM), stops it at once.

Reading order. The mTLS path first: the TLS context (what we prove, what we
demand), who the client is (identity and the allow-list), and the
response. Then the armour, each piece named after the failure it
prevents: the waiting room and the workers (threads work, the selector
waits: no stranger and no crowd of idle clients can tie the server up),
why a client was rejected (one plain log line each), the checks a
certificate forwarded by a proxy meets (the same, as far as a header
allows), checks of our own files (dates, wrong certificates, key log), and
main.

Simplified on purpose: a fixed greeting, and http.server parsing each
request and writing each response. A production service would add real
routes, structured logs and a limit on handshakes per client address; the
TLS part stays as it is here.
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
import heapq
import http.server
import ipaddress
import itertools
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
MAX_CONNECTIONS = 4096     # authenticated connections open at once, busy or idle
MAX_PENDING = 1000         # connections not authenticated yet (they wait with no thread)
WORKERS = 16               # threads that run handshake steps and serve requests
NEXT_REQUEST_WAIT = 0.005  # seconds a worker waits for a busy client's next request
LINGER_TIMEOUT = 1.0       # seconds we read a rejected client's leftovers (see close_gently)
MAX_REQUEST_HEAD = 65536   # bytes of request line and headers (http.server alone: 6.5 MB)
SESSION_LIFETIME = 600.0   # seconds a TLS session can be resumed, at most (see renew_sessions)
WARN_DAYS = 30             # warn when a certificate or CRL expires within this many days
LOG_BURST = 500            # refusals logged one by one at once; then LOG_RATE a second,
LOG_RATE = 50              # and the rest counted (see RefusalLog)

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

def identify_client(server, tls, peer):
    """After a finished handshake: read who the client is, and decide once
    whether it may be served. Set .ids, .name, .refusal and .proxy on the
    TLS socket and return True, or log why it is rejected and return False."""
    context = tls.context       # the one its handshake used (a reload may swap server.context)
    # OpenSSL has verified the chain. Read the names from the certificate.
    try:
        info = read_certificate(tls.getpeercert(binary_form=True))
    except ValueError as exc:
        server.refuse("rejected", peer, f"cannot read the client certificate's fields "
                                        f"({printable(str(exc))})")
        return False
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
            server.refuse("rejected", peer, f"client certificate {late} (checked again on a "
                                            f"resumed session)")
            return False

    tls.born = time.monotonic()
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
        server.refuse("forbidden", peer, f"{tls.refusal}{resumed}")
    elif tls.proxy:
        server.log(f"accepted {peer} as {spell_all(tls.ids)}, a trusted proxy (--trust-proxy){resumed}")
    else:
        server.log(f"accepted {peer} as {spell_all(tls.ids)}{resumed}")
    return True


class GreetingHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET with a greeting to the client named by its certificate."""

    protocol_version = "HTTP/1.1"   # keep-alive: many requests per handshake
    server_version = "mtls-server/1.0"
    # http.server's own errors (400, 414, 431, 501) in plain text, like ours.
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"

    def __init__(self, connection, client_address, server, head):
        """Get ready to serve a verified TLS connection. Unlike http.server's
        handlers, this does not serve the whole connection here: the server
        calls handle_one_request() each time a request's head has arrived
        whole (`head`, a RequestHead), so no thread waits for a request."""
        self.request, self.client_address, self.server = connection, client_address, server
        self.head = head
        self.setup()

    def version_string(self):
        """The Server header: our name only, not the Python version."""
        return self.server_version

    def setup(self):
        """Read from the request head that has arrived, and write through a
        buffered writer; each response leaves in one write (see handle_one_request)."""
        self.connection = self.request
        self.rfile = self.head
        self.wfile = self.connection.makefile("wb", 65536)
        self.name = self.connection.name

    def handle_one_request(self):
        """Serve one request; BaseHTTPRequestHandler flushes wfile after it,
        so headers and body go out in a single TLS record."""
        self.authorized = None                # not asked yet for this request (see authorize)
        super().handle_one_request()
        self.wfile.flush()                    # an answer to a request http.server refused too

    def refuse_connection(self):
        """Answer a client that may not be served with its 403 at once,
        before it asks: waiting for its request would make it hold a worker."""
        self.command, self.request_version, self.close_connection = None, "HTTP/1.1", True
        self.reply(403, f"403 Forbidden: {self.connection.refusal}\n", close=True)
        self.wfile.flush()

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
        return self.authorize()

    def authorize(self):
        """May this request be served? (A forbidden connection got its 403
        at the handshake.) Behind a trusted proxy, each request names its
        own client: refuse it with a 403 if it may not be served. Asked once
        per request, and before any "100 Continue" (see handle_expect_100)."""
        if self.authorized is None:
            refusal = self.identify_forwarded_client() if self.connection.proxy else None
            if refusal:
                self.reply(403, f"403 Forbidden: {refusal}\n")
            self.authorized = refusal is None
        return self.authorized

    def handle_expect_100(self):
        """A client that sends "Expect: 100-continue" waits for our word
        before sending its body (RFC 9110 10.1.1). http.server says "100
        Continue" as soon as it has read the headers; we say it only to a
        client that may be served, and a 403 to one that may not."""
        return self.authorize() and super().handle_expect_100()

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


class RequestHead:
    """A connection's rfile: the bytes the client has sent that http.server
    has not read yet. The server reads them without waiting (fill), and
    hands a request to http.server only once its whole head is here, so
    http.server's readline() never waits on the network. Pipelined
    requests stay here for the next turn; one per connection, across requests.

    Each deadline is total, not per read, so a client sending one byte
    every few seconds (slowloris) cannot stretch it: a waiting keep-alive
    connection gets the idle timeout; once a request starts, its whole head
    must arrive within the request timeout."""

    def __init__(self, idle_timeout, request_timeout):
        self.idle_timeout, self.request_timeout = idle_timeout, request_timeout
        self.buffer = bytearray()
        self.expect_request()

    def expect_request(self):
        """Start waiting for the next request on this connection."""
        self.waiting = not self.buffer
        timeout = self.idle_timeout if self.waiting else self.request_timeout
        self.deadline = time.monotonic() + timeout

    def fill(self, tls, wait=0.0):
        """Read what the client has sent, waiting at most `wait` seconds for
        it: until a whole head is here, or nothing more has arrived. Return
        "whole", "more" (not whole yet), "end" (the client closed) or "too big"."""
        while not self.whole():
            if len(self.buffer) > MAX_REQUEST_HEAD:
                return "too big"
            tls.settimeout(wait)
            try:
                data = tls.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, socket.timeout):
                return "more"        # (a record with no data, e.g. a KeyUpdate, lands here too)
            if not data:
                return "end"
            if self.waiting:         # the first bytes of a request: its deadline starts
                self.waiting = False
                self.deadline = time.monotonic() + self.request_timeout
            self.buffer += data
            wait = 0.0
        return "whole"

    def whole(self):
        """Has a whole request head arrived: a request line, headers, an empty line?"""
        end = self.buffer.find(b"\n")
        if end < 0:
            return False
        if end <= 1:                 # an empty first line: http.server ends the connection
            return True
        return self.buffer.find(b"\n\r\n", end) >= 0 or self.buffer.find(b"\n\n", end) >= 0

    def readline(self, limit=-1):
        """http.server's read: one line (at most `limit` bytes) of what is here."""
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        if 0 <= limit < end:
            end = limit
        line = bytes(self.buffer[:end])
        del self.buffer[:end]
        return line

    def read(self, size=-1):
        """Up to `size` bytes of what is here (we read no bodies: see parse_request)."""
        size = len(self.buffer) if size is None or size < 0 else size
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def close(self):
        """Nothing to close: the connection outlives one request."""

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
# (mistakes/ shows both).
#
# Threads work, the selector waits. A thread is given only to a client
# that has proven who it is and has a request to be served, or to a step
# of a handshake whose bytes have arrived. Whatever waits on the network
# (the ClientHello, the rest of the handshake, an idle keep-alive
# connection, a slow request head, a refused client's last bytes) waits in
# one selector, costing no thread: so no stranger, and no crowd of idle
# clients, can tie the server up. A connection goes through three stations:
#
#   1. the accept loop (serve_forever, the main thread) only accepts;
#   2. the waiting room (one thread, a selector) holds every connection
#      while it waits for bytes, each under a total deadline (handshake,
#      request head, idle), and looks at a new connection's first bytes
#      (a TLS handshake, or plain HTTP to answer, or junk to close);
#   3. a worker from a fixed pool (WORKERS threads) runs one step when its
#      bytes are there: a step of the handshake (do_handshake() on a
#      non-blocking socket, until OpenSSL needs bytes the client has not
#      sent yet), or the requests whose heads have arrived. Then the
#      connection goes back to the waiting room. Both cores do handshakes:
#      OpenSSL lets go of Python's lock while it computes. (A ClientHello
#      already there on accept goes straight to a worker; and a worker
#      waits a few milliseconds, no more, only for a client that has
#      proven who it is: see serve_requests and continue_handshake.)
#
# A connection is owned by one thread at a time: the waiting room while
# it waits, the worker running its step. Only the waiting room's thread
# touches the selector (selectors are not thread-safe): a worker hands a
# connection back through a queue, and rings a bell (a socket pair) that
# wakes the selector.

class Connection:
    """One client's connection on its way between the waiting room and the
    workers: its socket (plain TCP, then TLS), what it waits for, and until when."""

    def __init__(self, sock, address, deadline):
        self.sock, self.address, self.deadline = sock, address, deadline
        self.peer = format_address(address)
        self.head = self.handler = None          # once authenticated: RequestHead, GreetingHandler
        self.authenticated = self.closed = False
        self.plain = b""                         # a plain-HTTP request head (answered with a 400)
        self.events, self.step, self.late, self.in_worker = selectors.EVENT_READ, None, None, False
        self.turn = 0                            # counts its visits to the waiting room
        self.waited = False                      # a worker waited for its resumed handshake


class MTLSServer(http.server.HTTPServer):
    """An http.server that does the TLS handshake itself, per connection, a
    step at a time in a worker whenever the client's bytes have arrived."""

    request_queue_size = 128

    def __init__(self, address, context, *, allow=(), trust_proxy=None, log=log,
                 handshake_timeout=HANDSHAKE_TIMEOUT, request_timeout=REQUEST_TIMEOUT,
                 idle_timeout=IDLE_TIMEOUT, max_connections=MAX_CONNECTIONS,
                 max_pending=MAX_PENDING, session_lifetime=SESSION_LIFETIME, reload=None,
                 workers=WORKERS, log_burst=LOG_BURST):
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
        self.slots = threading.BoundedSemaphore(max_connections)   # authenticated connections
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, "mtls-worker")
        self.open_connections, self.open_lock = set(), threading.Lock()   # see server_close()
        self.refusals = RefusalLog(self, log_burst)
        super().__init__(address, GreetingHandler)
        self.waiting_room = WaitingRoom(self, max_pending)

    def server_bind(self):
        """Bind without HTTPServer's reverse DNS lookup of our own address."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        """Accept a TCP connection, and turn off Nagle's algorithm on it: a
        small response must leave at once, not wait for the client's ACK.
        Non-blocking: no read or write on it may ever wait."""
        sock, address = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock, address

    def process_request(self, sock, address):
        """Station 1 -> 2: start the handshake clock, and let it wait."""
        conn = Connection(sock, address, time.monotonic() + self.handshake_timeout)
        with self.open_lock:
            self.open_connections.add(conn)
        self.waiting_room.arrive(conn)

    def refuse(self, kind, peer, reason):
        """Log a refused connection ("rejected", "forbidden", "closed"): one
        line each, but a flood of them as a count (see RefusalLog)."""
        self.refusals.note(kind, peer, reason)

    def run_step(self, conn):
        """Station 3, in a worker thread: run the connection's next step."""
        try:
            conn.step(self, conn)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError):
            self.finish_connection(conn)         # the client went away mid-request
        except ssl.SSLError as exc:              # e.g. a broken record after the handshake
            self.refuse("closed", conn.peer, f"TLS error after the handshake "
                                             f"({describe_ssl_error(exc)})")
            self.finish_connection(conn)
        except OSError:
            self.finish_connection(conn)         # the client went away mid-request
        except Exception as exc:                 # a bug of ours: log it, keep serving
            self.log(f"error {conn.peer}: {exc!r}")
            self.finish_connection(conn)

    def finish_connection(self, conn):
        """Close a connection for good, and free its slot."""
        if conn.closed:
            return
        conn.closed = True
        with self.open_lock:
            self.open_connections.discard(conn)
        self.waiting_room.forget(conn)
        try:
            if conn.handler is not None:     # its writer holds the socket open until closed
                conn.handler.wfile.close()
        except (OSError, ValueError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass
        if conn.authenticated:
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
            open_now = list(self.open_connections)
        for conn in open_now:
            try:      # shutdown() wakes a worker in the middle of a step; close() would not
                socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
            except (OSError, ValueError):
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
    """Station 2: every connection waiting for the client's bytes waits
    here, all of them watched by one thread with a selector, each under
    its deadline. A crowd of silent, dribbling or idle connections costs no
    worker and cannot lock real clients out."""

    def __init__(self, server, capacity):
        self.server, self.capacity = server, capacity
        self.selector = selectors.DefaultSelector()
        self.arrivals = []                       # handed over by the accept loop and the workers
        self.lock = threading.Lock()             # guards arrivals and strangers
        self.bell, self.bell_rope = socket.socketpair()   # wakes the selector
        self.bell.setblocking(False)
        self.bell_rope.setblocking(False)
        self.selector.register(self.bell, selectors.EVENT_READ)
        self.waiting = {}                        # conn -> its turn, for the connections here
        self.deadlines = []                      # a heap of (deadline, number, turn, conn)
        self.numbers = itertools.count()
        self.strangers = {}                      # not yet authenticated, oldest first
        self.closing = self.stopped = False     # closing: asked to stop; stopped: it has
        self.thread = threading.Thread(target=self.run, name="waiting-room", daemon=True)
        self.thread.start()

    def arrive(self, conn):
        """Called by the accept loop: a new connection waits for its first
        bytes; or, if its ClientHello has begun to arrive already (as it often
        has, under load), it goes straight to a worker."""
        with self.lock:
            self.strangers[conn] = None
        try:
            spoke = conn.sock.recv(1, socket.MSG_PEEK) == b"\x16"
        except OSError:
            spoke = False
        if spoke:
            self.to_worker(conn, continue_handshake)
        else:
            self.park(conn, look_at_first_bytes, expire_unspoken, in_worker=False)

    def to_worker(self, conn, step):
        """Have a worker run the connection's next step, now (its bytes are here)."""
        conn.step, conn.in_worker = step, True
        try:
            self.server.pool.submit(self.server.run_step, conn)
        except RuntimeError:                     # shut down, or no thread could start
            self.server.finish_connection(conn)

    def park(self, conn, step, late, events=selectors.EVENT_READ, in_worker=True):
        """Let a connection wait here (from any thread): when its socket is
        ready, `step` runs (in a worker if `in_worker`); at its deadline, `late`."""
        conn.step, conn.late, conn.events, conn.in_worker = step, late, events, in_worker
        if threading.current_thread() is self.thread:
            self.watch(conn)
            return
        with self.lock:
            stopped = self.stopped
            if not stopped:
                self.arrivals.append(conn)
            ring = len(self.arrivals) == 1       # the bell is ringing already otherwise
        if stopped:                              # the server is closing: no one would watch it
            self.server.finish_connection(conn)
        elif ring:
            try:
                self.bell_rope.send(b"!")
            except OSError:                      # full (it is ringing already) or closed
                pass

    def forget(self, conn):
        """A connection was closed: it is no stranger any more."""
        with self.lock:
            self.strangers.pop(conn, None)

    def close(self):
        """Stop the thread; it closes every connection still waiting."""
        self.closing = True
        try:
            self.bell_rope.send(b"!")
        except OSError:
            pass
        self.thread.join(5)

    def run(self):
        """Wait for bytes, arrivals or deadlines; hand over, admit, expire."""
        while not self.closing:
            timeout = self.server.refusals.due()
            if self.deadlines:
                timeout = min(timeout, max(self.deadlines[0][0] - time.monotonic(), 0))
            for key, _ in self.selector.select(timeout):
                try:
                    if key.fileobj is self.bell:
                        self.admit()
                    else:
                        self.wake(key.data)
                except Exception as exc:         # a bug of ours: this thread must not die of it
                    self.server.log(f"error in the waiting room: {exc!r}")
            self.expire()
            self.server.refusals.summarize()
        with self.lock:
            arrivals, self.arrivals, self.stopped = self.arrivals, [], True
        for conn in list(self.waiting) + arrivals:
            self.server.finish_connection(conn)
        self.selector.close()
        self.bell.close()
        self.bell_rope.close()

    def admit(self):
        """Take in the connections handed over since the bell rang."""
        try:
            self.bell.recv(4096)                 # rung once per batch of arrivals
        except OSError:
            pass
        with self.lock:
            arrivals, self.arrivals = self.arrivals, []
        for conn in arrivals:
            self.watch(conn)

    def watch(self, conn):
        """Register a connection with the selector, under its deadline. If
        too many strangers wait, the one that has waited longest makes room."""
        if self.closing or conn.closed:
            self.server.finish_connection(conn)
            return
        if conn in self.strangers and len(self.strangers) > self.capacity:
            self.make_room()
        try:
            self.selector.register(conn.sock, conn.events, conn)
        except (OSError, ValueError):            # closed meanwhile
            self.server.finish_connection(conn)
            return
        conn.turn += 1
        self.waiting[conn] = conn.turn
        heapq.heappush(self.deadlines, (conn.deadline, next(self.numbers), conn.turn, conn))

    def make_room(self):
        """Close the stranger that has waited longest here (one in a worker
        is left alone: it is busy, not waiting)."""
        with self.lock:
            oldest = next((c for c in self.strangers if c in self.waiting), None)
        if oldest is not None:
            self.leave(oldest)
            self.server.refuse("rejected", oldest.peer, f"{silence(oldest)}, closed to make room "
                                                        f"for a new connection (--max-pending "
                                                        f"{self.capacity})")
            self.server.finish_connection(oldest)

    def wake(self, conn):
        """The client sent something (or can take more): run the connection's step."""
        self.leave(conn)
        if conn.in_worker:
            self.to_worker(conn, conn.step)
        else:
            conn.step(self.server, conn)

    def expire(self):
        """Deal with the connections whose deadline passed while they waited."""
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, _, turn, conn = heapq.heappop(self.deadlines)
            if self.waiting.get(conn) == turn:   # still waiting, since that deadline was set
                self.leave(conn)
                conn.late(self.server, conn)
        if len(self.deadlines) > 2 * len(self.waiting) + 1000:   # old entries: drop them
            self.deadlines = [entry for entry in self.deadlines
                              if self.waiting.get(entry[3]) == entry[2]]
            heapq.heapify(self.deadlines)

    def leave(self, conn):
        """Take a connection out of the selector."""
        del self.waiting[conn]
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass


class RefusalLog:
    """One log line per refused connection, but a flood as counts: after
    `burst` lines at once, LOG_RATE lines a second; the refusals beyond
    that are counted, and one line a second gives the count per reason.
    (An attack once wrote 52,747 lines in 25 s, one per connection.)"""

    def __init__(self, server, burst):
        self.server, self.burst = server, burst
        self.tokens, self.last = float(burst), time.monotonic()
        self.counts, self.since = {}, None
        self.lock = threading.Lock()

    def note(self, kind, peer, reason):
        """Log a refusal, or count it if too many came lately."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * LOG_RATE)
            self.last = now
            if self.tokens < 1:
                self.counts[(kind, reason)] = self.counts.get((kind, reason), 0) + 1
                self.since = self.since or now
                return
            self.tokens -= 1
        self.server.log(f"{kind} {peer}: {reason}")

    def due(self):
        """Seconds until the next count line is due (the selector's longest sleep)."""
        since = self.since
        return 1.0 if since is None else max(since + 1.0 - time.monotonic(), 0)

    def summarize(self):
        """Once a second, if some refusals were only counted: one line with the counts."""
        if self.since is None:                   # the common case, looked at without the lock
            return
        with self.lock:
            if self.since is None or time.monotonic() < self.since + 1.0:
                return
            counts, self.counts, since, self.since = self.counts, {}, self.since, None
        top = sorted(counts.items(), key=lambda item: -item[1])
        shown = "; ".join(f"{n} {kind}: {reason}" for (kind, reason), n in top[:3])
        others = sum(n for _, n in top[3:])
        self.server.log(f"refused {sum(counts.values())} more connections in "
                        f"{time.monotonic() - since:.0f} s, counted, not logged one by one: "
                        f"{shown}" + (f"; {others} for other reasons" if others else ""))


def silence(conn):
    """What a waiting stranger has said: "sent nothing", "sent only part of
    its ClientHello", or nothing since our answer to its hello."""
    if not isinstance(conn.sock, ssl.SSLSocket):
        try:
            said = conn.sock.recv(1, socket.MSG_PEEK)
        except OSError:
            said = b""
        return "sent only part of its ClientHello" if said else "sent nothing"
    if conn.sock.cipher() is None:               # OpenSSL has not chosen one: no whole hello yet
        return "sent only part of its ClientHello"
    return "did not finish its handshake"


# The steps. Each runs when the connection's socket is ready, either in the
# waiting room's thread (a look at bytes, with no TLS work: it costs no
# worker) or in a worker; it never waits, and ends by parking the
# connection again, or closing it. `late` functions run in the waiting room
# when a deadline passes.

def look_at_first_bytes(server, conn):
    """(Waiting room) A new connection spoke: a TLS handshake goes to a
    worker; plain HTTP is answered in HTTP (as nginx does); anything else is
    named and closed."""
    try:
        first = conn.sock.recv(8, socket.MSG_PEEK)
    except BlockingIOError:
        server.waiting_room.park(conn, look_at_first_bytes, expire_unspoken, in_worker=False)
        return
    except OSError as exc:
        server.refuse("rejected", conn.peer, describe_rejection(exc, server.context))
        server.finish_connection(conn)
        return
    if not first:
        # A port scanner does this, and so does a client that failed before
        # it could speak TLS (curl given --cert without --key: its key is missing).
        server.refuse("rejected", conn.peer, "connected and closed without a word "
                      "(a port scan, or a client that failed before TLS)")
        server.finish_connection(conn)
    elif first[0] == 22:     # a handshake record, content type 22 (RFC 8446 5.1)
        server.waiting_room.to_worker(conn, continue_handshake)
    elif first[0] == 21:     # an alert record (RFC 8446 5.1): TLS, but a goodbye
        alert = ALERTS.get(first[6], f"alert {first[6]}") if len(first) >= 7 else "an alert"
        server.refuse("rejected", conn.peer, f"the client sent a TLS alert ({alert}) instead of "
                                             f"a ClientHello: it gave up before the handshake")
        close_gently(server, conn)
    elif first.split(b" ")[0].isalpha():
        server.refuse("rejected", conn.peer, "not TLS at all: plain HTTP on the TLS port")
        # Read its request head first (bounded), so that closing sends no reset.
        conn.deadline = time.monotonic() + LINGER_TIMEOUT
        read_plain_http(server, conn)
    else:
        server.refuse("rejected", conn.peer, f"not TLS at all (first bytes {first[:4].hex()})")
        close_gently(server, conn)


def expire_unspoken(server, conn):
    """(Waiting room) A connection that said nothing, or too little, in time."""
    server.refuse("rejected", conn.peer, f"{silence(conn)} within {server.handshake_timeout:g} s "
                                         f"(--handshake-timeout): an idle, slow or silent client")
    server.finish_connection(conn)


def continue_handshake(server, conn):
    """(Worker) Run the TLS handshake as far as the client's bytes allow.
    The socket is non-blocking: when OpenSSL needs bytes that have not
    arrived (SSLWantReadError), or cannot send (SSLWantWriteError), the
    connection waits in the waiting room, and a worker carries on when
    they are there. So no worker ever waits for a handshake."""
    if not isinstance(conn.sock, ssl.SSLSocket):
        context = server.context    # read once: a reload may swap it meanwhile
        try:
            conn.sock = context.wrap_socket(conn.sock, server_side=True,
                                            do_handshake_on_connect=False)
        except OSError:             # reset already: "closed before TLS handshake"
            server.refuse("rejected", conn.peer, "client reset the connection during the handshake")
            server.finish_connection(conn)
            return
        conn.sock.settimeout(0.0)
    tls = conn.sock
    try:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            if not tls.session_reused or conn.waited:
                raise
            conn.waited = True                   # once per connection
            # A resumed session's ClientHello carries proof (its PSK binder,
            # RFC 8446 4.2.11) that the client holds a ticket we gave to an
            # authenticated client. Its last flight comes within a
            # millisecond: wait for it a moment rather than hand over twice.
            tls.settimeout(NEXT_REQUEST_WAIT)
            tls.do_handshake()
    except (ssl.SSLWantReadError, socket.timeout):
        tls.settimeout(0.0)
        server.waiting_room.park(conn, continue_handshake, expire_handshake)
        return
    except ssl.SSLWantWriteError:
        server.waiting_room.park(conn, continue_handshake, expire_handshake, selectors.EVENT_WRITE)
        return
    except (ssl.SSLError, OSError) as exc:
        server.refuse("rejected", conn.peer, describe_rejection(exc, tls.context))
        close_gently(server, conn)
        return
    if not server.slots.acquire(blocking=False):
        server.refuse("rejected", conn.peer, f"too many connections (limit "
                                             f"{server.max_connections}, --max-connections)")
        close_tls(server, conn)
        return
    conn.authenticated = True
    server.waiting_room.forget(conn)
    if not identify_client(server, tls, conn.peer):
        close_gently(server, conn)
        return
    conn.head = RequestHead(server.idle_timeout, server.request_timeout)
    tls.settimeout(server.request_timeout)
    conn.handler = GreetingHandler(tls, conn.address, server, conn.head)
    if tls.refusal:                 # decided at the handshake: 403 at once, and hang up
        conn.handler.refuse_connection()
        close_tls(server, conn)
        return
    serve_requests(server, conn)


def expire_handshake(server, conn):
    """(Waiting room) A handshake not finished by its deadline."""
    if conn.sock.cipher() is None:
        expire_unspoken(server, conn)
        return
    server.refuse("rejected", conn.peer, describe_rejection(socket.timeout(), server.context))
    server.finish_connection(conn)


def serve_requests(server, conn):
    """(Worker) Serve each request whose head has arrived whole, then give
    the connection back to the waiting room until the next one arrives.

    A busy client's next request often comes within a millisecond of our
    answer: the worker waits for it up to NEXT_REQUEST_WAIT (the client has
    proven who it is) rather than pay for two hand-overs between threads."""
    head, handler = conn.head, conn.handler
    wait = NEXT_REQUEST_WAIT
    while True:
        found = head.fill(conn.sock, wait)
        if time.monotonic() > head.deadline:
            server.refuse("closed", conn.peer, head.why_late())
            close_tls(server, conn)
            return
        if found == "more":
            if conn.sock.pending():              # decrypted bytes the selector cannot see
                wait = 0.0
                continue
            conn.deadline = head.deadline        # idle, or the rest of the request head
            server.waiting_room.park(conn, serve_requests, expire_request)
            return
        if found == "end":
            server.finish_connection(conn)
            return
        if found == "too big":
            server.refuse("closed", conn.peer, f"request head over {MAX_REQUEST_HEAD} bytes: a "
                                               f"client that will not stop sending")
            close_tls(server, conn)
            return
        conn.sock.settimeout(server.request_timeout)     # for our writes
        handler.handle_one_request()
        if handler.close_connection:
            close_tls(server, conn)
            return
        head.expect_request()
        wait = NEXT_REQUEST_WAIT


def expire_request(server, conn):
    """(Waiting room) No request, or no whole request head, by the deadline."""
    server.refuse("closed", conn.peer, conn.head.why_late())
    close_tls(server, conn)


def read_plain_http(server, conn):
    """(Waiting room) Read a plain-HTTP client's request head (at most 16 KB,
    until LINGER_TIMEOUT), then answer it."""
    try:
        while b"\r\n\r\n" not in conn.plain and len(conn.plain) < 16384:
            chunk = conn.sock.recv(4096)
            if not chunk:
                break
            conn.plain += chunk
        else:
            answer_plain_http(server, conn)
            return
    except BlockingIOError:
        server.waiting_room.park(conn, read_plain_http, answer_plain_http, in_worker=False)
        return
    except OSError:
        pass
    answer_plain_http(server, conn)


def answer_plain_http(server, conn):
    """(Waiting room) Tell a plain-HTTP client, in HTTP, to use https://."""
    body = (b"400 Bad Request: this server speaks HTTPS with a client certificate.\n"
            b"Use https://, and present a certificate, e.g.\n"
            b"  curl --cacert certs/ca.crt --cert certs/client.crt --key certs/client.key https://...\n")
    try:        # small enough for the socket's send buffer: it does not wait
        conn.sock.send(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                       b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except OSError:
        pass
    close_gently(server, conn)


def close_tls(server, conn):
    """End a TLS connection with a close_notify alert (RFC 8446 6.1): it
    tells the client the data is complete, not cut off by an attacker.
    On a non-blocking socket, unwrap() sends it and then raises
    SSLWantReadError: the client's reply is read in the waiting room."""
    try:
        conn.sock.settimeout(0.0)
        conn.sock.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass
    close_gently(server, conn)


def close_gently(server, conn):
    """Close so that the client surely reads our last words (a TLS alert,
    a 403, a 400).

    Under TLS 1.3 the client finishes its side of the handshake before the
    server has checked the client certificate, and sends its request at
    once. If we close while that request sits unread in our receive buffer,
    the kernel answers with a TCP reset, which can destroy the alert
    before the client reads it. So: send FIN, then read and drop what the
    client sends, in the waiting room, until it closes or LINGER_TIMEOUT."""
    try:
        socket.socket.shutdown(conn.sock, socket.SHUT_WR)
    except (OSError, ValueError):
        server.finish_connection(conn)
        return
    conn.deadline = time.monotonic() + LINGER_TIMEOUT
    server.waiting_room.park(conn, drain, stop_draining, in_worker=False)


def drain(server, conn):
    """(Waiting room) Read and drop a closing client's last bytes (the
    raw TCP bytes: whatever they say, we will not read them as TLS)."""
    try:
        for _ in range(16):               # at most 1 MB a turn; more waits for the next
            if not socket.socket.recv(conn.sock, 65536):
                break
        else:
            server.waiting_room.park(conn, drain, stop_draining, in_worker=False)
            return
    except BlockingIOError:
        server.waiting_room.park(conn, drain, stop_draining, in_worker=False)
        return
    except OSError:
        pass
    server.finish_connection(conn)


def stop_draining(server, conn):
    """(Waiting room) The closing client had LINGER_TIMEOUT: close."""
    server.finish_connection(conn)


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
                   help=f"authenticated connections open at once, busy or idle; more are "
                        f"refused (default {MAX_CONNECTIONS})")
    p.add_argument("--session-lifetime", type=seconds, default=SESSION_LIFETIME, metavar="S",
                   help=f"seconds a TLS session may be resumed without a full handshake "
                        f"(default {SESSION_LIFETIME:g})")
    p.add_argument("--max-pending", type=count, default=MAX_PENDING, metavar="N",
                   help=f"connections not authenticated yet (each waits with no thread); the "
                        f"oldest makes room (default {MAX_PENDING})")
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
