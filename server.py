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
         a CRL file, if --crl is given (revoked client certificates)
Writes:  one log line per connection to stderr:
           accepted 127.0.0.1:51000 as CN=my-client
           rejected 127.0.0.1:51002: no client certificate (...)
           closed 127.0.0.1:51000: idle for 30 s with no request (--idle-timeout)
Run:     python3 server.py                  (https://localhost:3000/)
         python3 server.py --port 8443 --allow my-client --crl certs/ca.crl
         kill -HUP <pid>   re-reads certificate, key, CA and CRL files
         Ctrl-C or SIGTERM stops it at once, open connections or not.

Limits, so that no client can hang it: a deadline for the handshake, one
for each request head (slowloris), one for an idle keep-alive connection,
and a cap on connections served at once (see "settings"). Errors in its
files or options are one line and exit code 2; a client, however broken,
gets one log line and never a traceback.

Reading order: settings, the TLS context, who the client is, why a client
was rejected, one connection, the server, main.

Simplified on purpose: one thread per open connection (threads are reused)
and a fixed greeting. A production service would use an event loop for
many idle connections, and would add real routes and structured logs; the
TLS part stays as it is here.
"""

import argparse
import errno
import http.server
import io
import math
import os
import queue
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time

# --- settings ------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = os.path.join(HERE, "certs")

# Limits that keep one client (or a crowd of them) from tying the server up.
# Each is a total deadline, not a per-read timeout: a client sending one
# byte at a time must not be able to stretch it.
HANDSHAKE_TIMEOUT = 10.0   # seconds for a client to finish the TLS handshake
REQUEST_TIMEOUT = 10.0     # seconds to send a whole request head (slowloris)
IDLE_TIMEOUT = 30.0        # seconds a keep-alive connection may sit idle
MAX_CONNECTIONS = 256      # connections served at once; more are refused
WORKER_IDLE_TIMEOUT = 1.0  # seconds an idle worker thread waits for another connection
LINGER_TIMEOUT = 1.0       # seconds we read a rejected client's leftovers (see close_gently)

# TLS 1.2 ciphers: ECDHE key exchange (forward secrecy) with AEAD encryption
# only, as in Mozilla's "intermediate" profile. TLS 1.3 suites are fixed by
# OpenSSL and are all of that kind already.
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
])


class ConfigError(Exception):
    """A problem the person starting the server can fix (file, port, ...)."""


def log(message):
    """Write one timestamped line to stderr, the server's log."""
    try:
        sys.stderr.write(time.strftime("%H:%M:%S ") + message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):    # stderr is a closed pipe: keep serving regardless
        pass


# --- the TLS context: what we prove, and what we demand ------------------

def make_server_context(ca, cert, key, crl=None, keylog=None):
    """Build the TLS settings of an mTLS server: our identity, and the CA a
    client certificate must come from."""
    for path, what, flag in [(ca, "CA certificate", "--ca"), (cert, "server certificate", "--cert"),
                             (key, "server key", "--key"), (crl, "CRL", "--crl")]:
        if path is not None:
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
    try:
        context.load_cert_chain(cert, key, password=lambda: refuse_passphrase(key))
    except ssl.SSLError as exc:
        raise ConfigError(explain_load_error(exc, cert, key)) from None
    except OSError as exc:                    # e.g. permission denied despite os.access
        raise ConfigError(f"cannot read {exc.filename or cert!r}: {exc.strerror}") from None

    # The heart of mTLS. CERT_REQUIRED makes the server send a
    # CertificateRequest in the handshake and fail the handshake when the
    # client sends no certificate, or one that does not chain to `ca`.
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError:
        raise ConfigError(f"CA certificate {ca!r} holds no PEM certificate: pass the CA's "
                          f"certificate (certs/ca.crt) with --ca") from None
    # Strict X.509 rules (Python 3.13's default, here on every version): the
    # client's CA must carry keyUsage, the leaf an authority key id, etc.
    context.verify_flags |= ssl.VERIFY_X509_STRICT

    if crl is not None:
        # A CRL lists revoked serial numbers. Loading it is not enough:
        # VERIFY_CRL_CHECK_LEAF tells OpenSSL to look the client up in it.
        # (A certificate passed here by mistake would load without complaint,
        # and then no client could pass the check: so look at the label too.)
        not_a_crl = ConfigError(f"CRL {crl!r} is not a PEM CRL: make one with "
                                f"'openssl ca -gencrl' (make crl)")
        if not pem_holds(crl, "X509 CRL"):
            raise not_a_crl
        try:
            context.load_verify_locations(cafile=crl)
        except ssl.SSLError:
            raise not_a_crl from None
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF

    if keylog:
        # Session secrets let Wireshark decrypt a capture -- and anyone else.
        try:
            os.close(os.open(keylog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # private
            context.keylog_filename = keylog
        except OSError as exc:
            raise ConfigError(f"cannot write the key log {keylog!r} ({exc.strerror}): "
                              f"pass --keylog a file in a folder you can write") from None
        log(f"warning: writing TLS session secrets to {keylog}; use only for debugging")
    return context


def check_readable(path, what, flag):
    """Fail with a clear message unless `path` is a readable file."""
    if os.path.isdir(path):
        raise ConfigError(f"{what} {path!r} is a folder, not a file: pass {flag} FILE")
    if not os.path.isfile(path):
        raise ConfigError(f"{what} {path!r} not found: run 'make certs' first, or pass {flag} FILE")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{what} {path!r} is not readable by this user: check its permissions")


def pem_holds(path, label):
    """True if the file holds a PEM block such as -----BEGIN CERTIFICATE-----.

    OpenSSL's own complaint about a wrong file is "PEM lib" or nothing at
    all; looking for the label lets us say which file is wrong, and how.
    """
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20)
    except OSError as exc:
        raise ConfigError(f"cannot read {path!r}: {exc.strerror}") from None
    return f"{label}-----".encode() in text    # also matches "RSA PRIVATE KEY-----" etc.


def refuse_passphrase(key):
    """Called by OpenSSL when a key is encrypted: refuse, rather than prompt."""
    raise ConfigError(f"server key {key!r} is encrypted with a passphrase: decrypt it with "
                      f"'openssl pkey -in {key} -out server-plain.key' and pass that with --key")


def explain_load_error(exc, cert, key):
    """Turn OpenSSL's complaint about a certificate/key pair into a sentence."""
    reason = getattr(exc, "reason", None) or str(exc)
    if reason == "KEY_VALUES_MISMATCH":
        return f"{key!r} is not the private key of {cert!r}: pass the key made with that certificate"
    if not pem_holds(cert, "CERTIFICATE"):
        return (f"server certificate {cert!r} is not a PEM certificate (no '-----BEGIN "
                f"CERTIFICATE-----' line): pass --cert certs/server.crt")
    if not pem_holds(key, "PRIVATE KEY"):
        return (f"server key {key!r} is not a PEM private key (no '-----BEGIN ... PRIVATE "
                f"KEY-----' line): pass --key certs/server.key")
    return (f"cannot load certificate {cert!r} with key {key!r} ({reason}): both must be "
            f"PEM files from 'make certs'")


def warn_if_key_exposed(key):
    """Warn when the private key file is readable by group or others."""
    mode = os.stat(key).st_mode & 0o777
    if mode & 0o077:
        log(f"warning: {key} has mode {mode:04o}, readable by other users: chmod 600 {key}")


# --- who the client is ---------------------------------------------------

def client_identity(peercert):
    """Name the client from its verified certificate: a URI or DNS name in
    its subjectAltName if it has one (as service meshes use), else its CN."""
    for kind in ("URI", "DNS"):
        for san_kind, value in peercert.get("subjectAltName", ()):
            if san_kind == kind:
                return kind, printable(value)
    for rdn in peercert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                return "CN", printable(value)
    return "CN", "(no name)"


def printable(name):
    """Escape control characters: a certificate's name is the client's text,
    and a newline in it must not forge a second line in our log."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


# --- why a client was rejected -------------------------------------------

# OpenSSL's verify codes (X509_V_ERR_*), for a client certificate we refused.
VERIFY_REASONS = {
    3: "no CRL for the client's CA: pass --crl the CRL of the CA that issued it",
    9: "client certificate is not valid yet",
    10: "client certificate has expired",
    11: "our CRL is not valid yet: check this machine's clock",
    12: "our CRL has expired (its nextUpdate passed): run 'make crl', then kill -HUP the server",
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
    "NO_SHARED_CIPHER": "no cipher in common with the client",
    "TLSV1_ALERT_UNKNOWN_CA": "client does not trust our certificate (it lacks our CA, or "
                              "we did not send our intermediate CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client refused our certificate (wrong hostname or not trusted)",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client refused our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "client says our certificate has expired",
    "UNEXPECTED_EOF_WHILE_READING": "client hung up during the handshake",
    "HTTP_REQUEST": "not TLS at all: plain HTTP on the TLS port",
}


def describe_rejection(exc):
    """Say in plain words why a TLS handshake with a client failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return VERIFY_REASONS.get(
            exc.verify_code, f"client certificate fails verification: {exc.verify_message}")
    if isinstance(exc, socket.timeout):
        return "handshake not finished in time (--handshake-timeout): an idle or slow client"
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):   # the latter on 3.9
        return "client hung up during the handshake"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in SSL_REASONS:
            return SSL_REASONS[reason]
        if reason.startswith("TLSV1_ALERT_") or reason.startswith("SSLV3_ALERT_"):
            return f"client aborted the handshake (alert {reason.split('ALERT_')[1].lower()})"
        return f"not a TLS handshake we accept ({reason or exc})"
    if isinstance(exc, ConnectionResetError):
        return "client reset the connection during the handshake"
    return f"connection failed: {exc}"


# --- one connection ------------------------------------------------------

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
        return count

    def why_late(self):
        """Say which deadline passed, for the log."""
        if self.waiting:
            return f"idle for {self.idle_timeout:g} s with no request (--idle-timeout)"
        return (f"request head not complete after {self.request_timeout:g} s "
                f"(--request-timeout): a slow or stalled client")


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
        self.reader = DeadlineReader(self.connection, self.server.idle_timeout,
                                     self.server.request_timeout)
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = self.connection.makefile("wb", 65536)
        self.identity = self.connection.identity      # found by MTLSServer.handshake

    def handle_one_request(self):
        """Serve one request; BaseHTTPRequestHandler flushes wfile after it,
        so headers and body go out in a single TLS record."""
        self.reader.expect_request()
        super().handle_one_request()

    def do_GET(self):
        """Greet an authorized client by name; refuse one not on the allow-list."""
        kind, name = self.identity
        allow = self.server.allow
        if allow and name not in allow:
            # Authentication (TLS) said who it is; authorization says no.
            self.server.log(f"forbidden {format_address(self.client_address)}: "
                            f"{kind}={name} is not on the allow-list")
            self.reply(403, f"{name} is authenticated, but not on this server's allow-list\n")
        else:
            self.reply(200, f"Hello, {name}\n")

    def do_HEAD(self):
        """Like GET, without the body."""
        self.do_GET()

    def reply(self, status, text):
        """Send a text/plain response with a Content-Length (keep-alive needs it)."""
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
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


def format_address(address):
    """127.0.0.1:5000, or [::1]:5000 for IPv6."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


# --- the server ----------------------------------------------------------

class MTLSServer(http.server.HTTPServer):
    """An http.server that does the TLS handshake itself, per connection.

    The common tutorial pattern wraps the *listening* socket in TLS, so the
    handshake runs inside accept() on the one thread that accepts. Then a
    single client that connects and sends nothing stalls every other client,
    and a failed handshake raises out of accept() where it is silently
    dropped. Here accept() returns plain TCP sockets and each connection's
    worker thread does its own handshake, under a timeout, and logs the result.

    Worker threads are reused: starting a new thread for every connection
    cost some 0.2 ms of CPU per connection in bench/bench.py, close to a
    tenth of a whole mTLS handshake. A worker that has finished a connection
    waits a moment for the next, and ends after WORKER_IDLE_TIMEOUT seconds
    without one. The bookkeeping: `slots` counts connections being served
    (at most max_connections); `idle_workers` counts workers waiting on the
    `connections` queue. A new connection either takes an idle worker's
    token (so some idle worker will pick it up) or starts a thread. A worker
    whose wait times out leaves only if it can take its token back;
    otherwise a connection is already on its way to it.
    """

    request_queue_size = 128

    def __init__(self, address, context, *, allow=(), log=log,
                 handshake_timeout=HANDSHAKE_TIMEOUT, request_timeout=REQUEST_TIMEOUT,
                 idle_timeout=IDLE_TIMEOUT, max_connections=MAX_CONNECTIONS, reload=None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.context, self.allow, self.log = context, set(allow), log
        self.handshake_timeout, self.request_timeout = handshake_timeout, request_timeout
        self.idle_timeout, self.max_connections = idle_timeout, max_connections
        self.reload_context = reload         # a function returning a fresh context
        self.reload_requested = False
        self.slots = threading.BoundedSemaphore(max_connections)
        self.connections = queue.SimpleQueue()       # accepted, waiting for a worker
        self.idle_workers = threading.Semaphore(0)   # workers free to take one
        super().__init__(address, GreetingHandler)

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
        """Hand the connection to an idle worker thread, or start a new one,
        unless all slots are taken."""
        if not self.slots.acquire(blocking=False):
            self.log(f"rejected {format_address(address)}: too many connections "
                     f"(limit {self.max_connections}, --max-connections)")
            sock.close()
            return
        if not self.idle_workers.acquire(blocking=False):
            try:
                # daemon: Ctrl-C must not wait for idle keep-alive connections.
                threading.Thread(target=self.work, daemon=True).start()
            except RuntimeError as exc:          # could not start a thread
                self.log(f"rejected {format_address(address)}: cannot start a thread ({exc})")
                self.slots.release()
                sock.close()
                return
        self.connections.put((sock, address))

    def work(self):
        """A worker thread: serve one connection after another; end when none
        has come for WORKER_IDLE_TIMEOUT seconds."""
        sock, address = self.connections.get()
        while True:
            self.process_request_thread(sock, address)
            self.idle_workers.release()          # idle first, then free the slot,
            self.slots.release()                 # so workers never outnumber slots
            try:
                sock, address = self.connections.get(timeout=WORKER_IDLE_TIMEOUT)
            except queue.Empty:
                if self.idle_workers.acquire(blocking=False):
                    return                       # no connection counts on us: end
                sock, address = self.connections.get()   # one is being handed to us

    def process_request_thread(self, sock, address):
        """In a worker thread: handshake, then serve HTTP, then clean up."""
        tls = None
        try:
            tls = self.handshake(sock, address)
            if tls is not None:
                self.finish_request(tls, address)
        except OSError:
            pass                                 # the client went away mid-request
        except Exception as exc:                 # a bug of ours: log it, keep serving
            self.log(f"error {format_address(address)}: {exc!r}")
        finally:
            if tls is not None:
                self.close_tls(tls)
            else:
                sock.close()

    def handshake(self, sock, address):
        """Return the connection as a verified TLS socket, or log why not and
        return None."""
        peer = format_address(address)
        deadline = time.monotonic() + self.handshake_timeout
        sock.settimeout(self.handshake_timeout)
        try:
            # Peek at the first bytes without consuming them. A TLS connection
            # starts with a handshake record, content type 22 (RFC 8446 5.1).
            first = sock.recv(8, socket.MSG_PEEK)
        except OSError as exc:
            self.log(f"rejected {peer}: {describe_rejection(exc)}")
            return None
        if not first:
            self.log(f"rejected {peer}: connected and closed without a word (a port scan?)")
            return None
        if first[0] != 22:
            if first.split(b" ")[0].isalpha():
                self.answer_plain_http(sock, peer)
            else:
                self.log(f"rejected {peer}: not TLS at all (first bytes {first[:4].hex()})")
                self.close_gently(sock)
            return None

        context = self.context    # read once: a reload may swap it meanwhile
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        # What is left of the deadline covers the whole handshake: CPython's
        # do_handshake() counts its timeout from the start of the call, not
        # per read, so a client dribbling its ClientHello is cut off too.
        tls.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self.log(f"rejected {peer}: {describe_rejection(exc)}")
            self.close_gently(tls)
            return None
        # Decoding the certificate into a dict takes ~50 us: do it once, and
        # keep the result on the socket for the request handler.
        kind, name = client_identity(tls.getpeercert())
        tls.identity = (kind, name)
        # A resumed session (a ticket from an earlier connection) skips the
        # certificate checks: they were made when the session began. A reload
        # (kill -HUP) makes a new context, whose tickets old ones do not match.
        resumed = " (resumed session)" if tls.session_reused else ""
        self.log(f"accepted {peer} as {kind}={name}{resumed}")
        return tls

    def close_tls(self, tls):
        """End a served connection with a close_notify alert (RFC 8446 6.1):
        it tells the client the data is complete, not cut off by an attacker.
        unwrap() sends it and waits briefly for the client's reply."""
        try:
            tls.settimeout(LINGER_TIMEOUT)
            tls.unwrap()
        except (OSError, ValueError):      # the client has gone already
            pass
        tls.close()

    def close_gently(self, sock):
        """Close so the client surely reads our last words (a TLS alert, a 400).

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
        sock.close()

    def answer_plain_http(self, sock, peer):
        """Tell a plain-HTTP client, in HTTP, to come back with TLS (as nginx does)."""
        self.log(f"rejected {peer}: not TLS at all: plain HTTP on the TLS port")
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
        self.close_gently(sock)

    # Live reload. `kill -HUP <pid>` asks for it; a rotated certificate or a
    # fresh CRL then takes effect for new connections, without a restart and
    # without touching connections already open (they keep their session).

    def request_reload(self):
        """Note that a reload is wanted. The SIGHUP handler calls this: a
        signal can interrupt the main thread anywhere, even halfway through a
        log write, so the handler only sets a flag (as nginx does)."""
        self.reload_requested = True

    def service_actions(self):
        """Called by serve_forever() after every poll (at least each 0.5 s):
        a safe moment for a reload that a signal asked for."""
        if self.reload_requested:
            self.reload_requested = False
            self.reload()

    def reload(self):
        """Re-read certificate, key, CA and CRL; keep the old ones if that fails."""
        if self.reload_context is None:
            self.log("reload ignored: this server was started without a way to reload")
            return
        try:
            self.context = self.reload_context()   # one assignment: atomic for other threads
            self.log("reloaded certificates: new connections use them")
        except Exception as exc:     # whatever it was, a reload must not stop a running server
            self.log(f"reload failed, still serving with the previous certificates: {exc}")

    def handle_error(self, request, client_address):
        """Never print a traceback for something a client did."""
        self.log(f"error {format_address(client_address)}: {sys.exc_info()[1]!r}")


# --- main ----------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line, like every other error here."""

    def error(self, message):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


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
    """Read the command line."""
    p = ArgumentParser(
        description="HTTPS server that requires a client certificate (mutual TLS).",
        epilog="example: python3 server.py --port 3000 --allow my-client")
    p.add_argument("--host", default="localhost", help="address to listen on (default localhost)")
    p.add_argument("--port", type=int, default=3000, help="TCP port (default 3000; 0 = any free port)")
    p.add_argument("--ca", default=os.path.join(CERTS, "ca.crt"), help="CA that signs client certificates (default certs/ca.crt)")
    p.add_argument("--cert", default=os.path.join(CERTS, "server.crt"), help="server certificate, PEM (default certs/server.crt)")
    p.add_argument("--key", default=os.path.join(CERTS, "server.key"), help="server private key, PEM (default certs/server.key)")
    p.add_argument("--crl", help="certificate revocation list to check clients against (PEM)")
    p.add_argument("--allow", action="append", default=[], metavar="NAME",
                   help="only this client identity may get a greeting (repeatable)")
    p.add_argument("--keylog", metavar="FILE", help="write TLS secrets for Wireshark (debug only)")
    p.add_argument("--handshake-timeout", type=seconds, default=HANDSHAKE_TIMEOUT, metavar="S",
                   help=f"seconds to finish the TLS handshake (default {HANDSHAKE_TIMEOUT:g})")
    p.add_argument("--request-timeout", type=seconds, default=REQUEST_TIMEOUT, metavar="S",
                   help=f"seconds to send a request head, once begun (default {REQUEST_TIMEOUT:g})")
    p.add_argument("--idle-timeout", type=seconds, default=IDLE_TIMEOUT, metavar="S",
                   help=f"seconds a keep-alive connection may wait idle (default {IDLE_TIMEOUT:g})")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                   help=f"connections served at once; more are refused (default {MAX_CONNECTIONS})")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error(f"--port {args.port} is not a TCP port: use 1-65535 (or 0 for any free port)")
    if args.max_connections < 1:
        p.error(f"--max-connections {args.max_connections} must be at least 1")
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
        raise ConfigError(f"cannot resolve --host {host!r} ({why}): try 127.0.0.1") from None
    info.sort(key=lambda entry: entry[0] != socket.AF_INET)
    return info[0][4][:2]


def explain_listen_error(exc, host, port):
    """Say why we cannot listen on host:port, and what to do about it."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is in use: is another server running? "
                f"Stop it, or pass --port N (0 = any free port)")
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} ({exc.strerror}): use a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host!r} is not an address of this machine: pass --host localhost"
    return f"cannot listen on {host}:{port} ({exc.strerror or exc})"


def fail(message):
    """Print one line saying what is wrong and how to fix it; return exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    """Start the server and serve until Ctrl-C (or SIGTERM)."""
    args = parse_args(argv)

    def build_context():
        return make_server_context(args.ca, args.cert, args.key, args.crl, args.keylog)
    try:
        context = build_context()
        warn_if_key_exposed(args.key)
        address = resolve(args.host, args.port)
    except ConfigError as exc:
        return fail(exc)
    try:
        server = MTLSServer(address, context, allow=args.allow,
                            handshake_timeout=args.handshake_timeout,
                            request_timeout=args.request_timeout, idle_timeout=args.idle_timeout,
                            max_connections=args.max_connections, reload=build_context)
    except OSError as exc:
        return fail(explain_listen_error(exc, args.host, args.port))

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: server.request_reload())
    # SIGTERM (kill, systemd, docker stop) stops us the way Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    host = args.host if ":" not in args.host else f"[{args.host}]"
    allowed = f"; allowed: {', '.join(args.allow)}" if args.allow else ""
    log(f"serving https://{host}:{server.server_port}/ (pid {os.getpid()}): client certificate "
        f"signed by {args.ca} required, TLS 1.2+{allowed}. Ctrl-C stops.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        # Worker threads are daemons: open connections do not delay the exit.
        server.server_close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
