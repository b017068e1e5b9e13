#!/usr/bin/env python3
"""server.py: an HTTPS server that lets in only clients with a certificate.

This is mutual TLS (mTLS). TLS opens each HTTPS connection with a
handshake: the client says hello (a ClientHello), the server answers with
its certificate, and both agree on keys. In ordinary HTTPS only the server
proves who it is. Here the server also asks the client for a certificate
(a CertificateRequest in the handshake), checks that our certificate
authority (CA) signed it, and refuses anyone who cannot show one: the
handshake fails, the client gets a TLS alert (a short coded reason), and
our log one plain line. The answer greets the client by its certificate's name.

Read from the top: the TLS context (what we prove, what we demand), the
handshake (where it runs, why not in accept(), what a failure does), who
the client is and whether it may come in (--allow), the response, main.
What defends that story lives in armour/, one module per failure it prevents.

Reads:   certs/ca.crt      the CA whose signature a client certificate needs
         certs/server.crt  our certificate, sent to every client
         certs/server.key  our private key, which proves we own server.crt
         CRL files, if --crl is given (revoked client certificates)
Writes:  one log line per connection to stderr:
           accepted 127.0.0.1:51000 as cn:my-client
           rejected 127.0.0.1:51002: no client certificate (the client sent none)
           forbidden 127.0.0.1:51004: cn:other is not on the allow-list (--allow)
Run:     python3 server.py --allow cn:my-client --crl certs/ca.crl   (https://localhost:3000/)
         kill -HUP PID re-reads the files; Ctrl-C, or kill PID, stops it.
"""

import os
import sys

if sys.version_info < (3, 9):       # before anything newer can fail with a traceback
    sys.stderr.write("error: unsupported Python: server.py needs Python 3.9+ (this is %d.%d) "
                     "-- run it with python3.9 or newer\n" % sys.version_info[:2])
    sys.exit(2)

try:                                # (armour/openssl_config.py imports no ssl)
    from armour.openssl_config import read_groups_conf
except ModuleNotFoundError:         # server.py copied without its folder armour/
    sys.stderr.write("error: missing file: server.py needs its folder armour/ beside it "
                     "-- copy armour/ too\n")
    sys.exit(2)
# First, the key-exchange groups we offer (groups.cnf): OpenSSL reads its config
# once, as ssl is first imported, so before every import below; only as a program.
GROUPS_FROM = read_groups_conf() if __name__ == "__main__" else os.environ.get("OPENSSL_CONF")

import signal
import socket
import ssl
import time

from armour import ConfigError        # each armour module is named for the failure it prevents
from armour.bad_requests import GuardedHandler
from armour.certificate_fields import out_of_date, read_certificate
from armour.command_line import (ArgumentParser, count, explain_listen_error, parse_identity,
                                 port, resolve, seconds)
from armour.forwarded import keep_forwarding_checks, read_forwarded_certificate
from armour.key_exchange import TLS12_CIPHERS, describe_groups, set_key_exchange_groups
from armour.keylog import open_keylog
from armour.own_files import (WARN_DAYS, ReloadingServer, check_own_files, check_server_certificate,
                              checking_client_ca, checking_own_certificate, crl_issuer_warnings,
                              date_warnings, load_crl, raise_open_file_limit, refuse_passphrase,
                              terminal_open, warn_if_key_exposed, warn_if_no_san)
from armour.refusals import (LOG_BURST, describe_rejection, expired_cas, for_terminal,
                             format_address, log, printable, spell, spell_all)
from armour.slow_clients import (Connection, WaitingRoom, WaitingRoomServer, close_gently,
                                 start_requests, start_tls, take_a_slot, wait_for_handshake)

CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs")

# --- the TLS context: what we prove, and what we demand ------------------

def make_server_context(ca, cert, key, crl=None, keylog=None, crl_chain=False):
    """Build the TLS settings of an mTLS server: our identity, and the CA a
    client certificate must come from. `crl` is one CRL file or a list."""
    crls = [crl] if isinstance(crl, str) else list(crl or ())
    check_own_files(ca, cert, key, crls)       # each one there and readable, or one clear line
    # PROTOCOL_TLS_SERVER: the best version both sides have, but never below
    # TLS 1.2 (1.0 and 1.1 are broken and deprecated, RFC 8996).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)         # TLS 1.2: forward-secret ciphers only
    # No renegotiation (TLS 1.2: a client restarting the handshake mid-connection).
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)

    # What we prove: our certificate, and the private key that proves it is ours
    # (refuse_passphrase: an encrypted key would make OpenSSL prompt, and hang).
    key_type = check_server_certificate(cert)  # first: a wrong certificate is not a wrong key
    set_key_exchange_groups(context, key_type, GROUPS_FROM)
    with checking_own_certificate(cert, key):
        context.load_cert_chain(cert, key, password=lambda: refuse_passphrase(key))

    # What we demand: the heart of mTLS. CERT_REQUIRED makes the server send
    # a CertificateRequest in the handshake, and fail the handshake when the
    # client sends no certificate, or one that does not chain to our CA...
    context.verify_mode = ssl.CERT_REQUIRED
    # ...the CA in `ca`, and only it: the system's CAs vouch for no client here.
    with checking_client_ca(context, ca):
        context.load_verify_locations(cafile=ca)
    # Strict rules for X.509, the certificate format (RFC 5280), as 3.13's default context.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    # A certificate revocation list (CRL), signed by the CA, names the
    # certificates it revoked before their expiry date.
    for path in crls:
        load_crl(context, path)
    if crls:
        # Loading a CRL is not enough: this flag tells OpenSSL to look the client's
        # certificate up in the CRL of the CA that issued it. --crl-chain: every
        # certificate of the chain (a revoked intermediate too); then every CA in
        # the chain, the root included, must have a current CRL here.
        check = ssl.VERIFY_CRL_CHECK_CHAIN if crl_chain else ssl.VERIFY_CRL_CHECK_LEAF
        context.verify_flags |= check

    if keylog:
        log(open_keylog(context, keylog))      # TLS secrets for Wireshark: debugging only
    keep_forwarding_checks(context, crls)      # for a proxy's clients (--trust-proxy)
    return context


# --- the handshake: where it runs, and why there ---------------------------
#
# Most tutorials wrap the listening socket in TLS: then the handshake runs
# inside accept(), on the one thread that accepts, and a single client that
# connects and sends nothing stops every other client (mistakes/accept_loop.py).
# So accept() here takes plain TCP (MTLSServer, below), and the handshake
# runs later, a step at a time. Threads work, the selector waits: whatever
# waits on the network (a ClientHello, the rest of a handshake, an idle
# keep-alive connection) waits in one selector, the waiting room, costing
# no thread; a worker thread runs a step when the client's bytes are there.
# No stranger, nor a crowd of them, can tie the server up (armour/slow_clients.py).

def continue_handshake(server, conn):
    """(Worker) Run the TLS handshake as far as the client's bytes allow."""
    tls = start_tls(server, conn)   # the accepted socket in TLS, non-blocking
    if tls is None:
        return
    try:
        # OpenSSL checks the client's certificate here (CERT_REQUIRED, our CA, the
        # CRL), as far as the bytes that have arrived go: then SSLWantReadError.
        tls.do_handshake()
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
        # The rest waits in the waiting room; a worker carries on when it comes.
        wait_for_handshake(server, conn, want, continue_handshake)
        return
    except (ssl.SSLError, OSError) as exc:
        # Failed: OpenSSL has sent the client a TLS alert (a coded reason, e.g.
        # certificate_required); we log one plain line, and close so the alert arrives.
        server.refuse("rejected", conn.peer, describe_rejection(exc, tls.context))
        close_gently(server, conn)
        return
    # The handshake is done: the client's certificate chains to our CA.
    if not take_a_slot(server, conn):          # --max-connections
        return
    if not identify_client(server, tls, conn.peer):
        close_gently(server, conn)
        return
    start_requests(server, conn, GreetingHandler)


# Limits: no client, and no crowd of them, may tie the server up. Each is a
# total deadline, not a per-read timeout: one byte at a time cannot stretch it.
HANDSHAKE_TIMEOUT = 10.0   # seconds from connect to a finished TLS handshake
REQUEST_TIMEOUT = 10.0     # seconds to send a whole request head (slowloris)
IDLE_TIMEOUT = 30.0        # seconds a keep-alive connection may sit idle
MAX_CONNECTIONS = 4096     # authenticated connections open at once, busy or idle
MAX_PENDING = 1000         # connections not authenticated yet (they wait with no thread)
WORKERS = 16               # threads that run handshake steps and serve requests
SESSION_LIFETIME = 600.0   # seconds a TLS session can be resumed, at most (see identify_client)


class MTLSServer(ReloadingServer, WaitingRoomServer):
    """An HTTPS server that demands a client certificate, and runs each TLS
    handshake itself, a step at a time (continue_handshake), not in accept()."""

    request_queue_size = 128

    def __init__(self, address, context, *, allow=(), trust_proxy=None, log=log,
                 handshake_timeout=HANDSHAKE_TIMEOUT, request_timeout=REQUEST_TIMEOUT,
                 idle_timeout=IDLE_TIMEOUT, max_connections=MAX_CONNECTIONS,
                 max_pending=MAX_PENDING, session_lifetime=SESSION_LIFETIME, reload=None,
                 workers=WORKERS, log_burst=LOG_BURST):
        self.context, self.log = context, log
        self.allow = {parse_identity(a) if isinstance(a, str) else tuple(a) for a in allow}
        if isinstance(trust_proxy, str):
            trust_proxy = parse_identity(trust_proxy)
        self.trust_proxy = trust_proxy
        self.handshake_timeout, self.request_timeout = handshake_timeout, request_timeout
        self.idle_timeout, self.max_connections = idle_timeout, max_connections
        # kill -HUP, and fresh sessions every session_lifetime (armour/own_files.py)
        self.reload_context, self.reload_requested = reload, False
        self.context_born, self.session_lifetime = time.monotonic(), session_lifetime
        super().__init__(address, GreetingHandler, workers=workers,
                         max_connections=max_connections, log_burst=log_burst)
        self.waiting_room = WaitingRoom(self, max_pending, continue_handshake)

    def get_request(self):
        """Accept a TCP connection: plain TCP, no TLS yet. Non-blocking: no
        read or write on it may ever wait. (TCP_NODELAY: a small response
        leaves at once, without waiting for the client's ACK.)"""
        sock, address = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock, address

    def process_request(self, sock, address):
        """Start the handshake clock, and let the connection wait for its
        ClientHello in the waiting room."""
        conn = Connection(sock, address, time.monotonic() + self.handshake_timeout)
        with self.open_lock:
            self.open_connections.add(conn)
        self.waiting_room.arrive(conn)


# --- who the client is, and whether it may come in -----------------------
#
# A certificate's identities are its subjectAltName (SAN) entries, each with
# its type, or its subject's CN (common name) when it has no SAN at all
# (RFC 6125; service meshes name peers by SAN). We spell each one with its
# type, the same way in the log and in --allow: cn:my-client,
# dns:svc.example, uri:spiffe://example.org/x, ip:10.0.0.1,
# email:a@example.org. Values are compared raw, exactly, but for a DNS
# name's case (matching_key); they are escaped only when printed
# (armour/refusals.py: printable), as the certificate spells them.

def identities_of(info):
    """The typed identities of a certificate read by read_certificate()."""
    if info["has_san"]:
        return info["san"]
    return [("cn", cn) for cn in info["cns"]]


# DNS names are case-insensitive, in ASCII letters only (RFC 4343; RFC 6125
# 6.4.1): SVC.Example is svc.example.
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def matching_key(identity):
    """An identity as --allow compares it: a DNS name in lower case, any other exactly."""
    kind, value = identity
    return (kind, value.translate(ASCII_LOWER)) if kind == "dns" else (kind, value)


def greeting_name(ids):
    """The bare name to greet: the URI, else the DNS name, else whatever there is."""
    for wanted in ("uri", "dns"):
        for kind, value in ids:
            if kind == wanted:
                return value
    return ids[0][1] if ids else "(no name)"


def refusal_for(ids, allow, info=None):
    """Why these identities may not be served, or None if they may."""
    if info is not None and info["ca"]:
        # A CA certificate could sign a certificate for any name, the proxy's too.
        return f"{spell_all(ids)}: a CA certificate (basicConstraints CA:TRUE) is no client"
    for kind in ("uri", "cn"):
        # SPIFFE (service identities as URIs): an SVID, its certificate, has
        # exactly one URI SAN; a subject, one CN. With two, which one is it?
        # (A registration step may have checked the other.)
        count = sum(1 for k, _ in ids if k == kind)
        if count > 1:
            return f"{spell_all(ids)}: {count} {kind.upper()} names, so no single identity"
    wanted = {matching_key(a) for a in allow}
    if wanted and wanted.isdisjoint(map(matching_key, ids)):
        return f"{spell_all(ids)} is not on the allow-list (--allow)"
    return None


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
        # seconds (renew_sessions, armour/own_files.py), then every check is made again.
        # (A ticket's lifetime hint still says 7200 s, OpenSSL's default:
        # Python's ssl cannot change it. A client that tries a ticket after
        # SESSION_LIFETIME just gets a full handshake.)
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
    tls.proxy = (server.trust_proxy is not None and len(tls.ids) == 1 and
                 matching_key(tls.ids[0]) == matching_key(server.trust_proxy)
                 and refusal_for(tls.ids, (), info) is None)
    # Authorization belongs to the connection: decide once, here, not per
    # request as stages/allowlist_server.py does: a forbidden client gets its
    # 403 at once, and never holds a worker waiting for a request. (Behind a
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


# --- the response ----------------------------------------------------------

class GreetingHandler(GuardedHandler):
    """Answers GET with a greeting to the client named by its certificate.
    (GuardedHandler, in armour/bad_requests.py: what http.server must not
    be left to do alone, such as reading a request body it then ignores.)
    Simplified: a fixed greeting; a production service adds routes,
    structured logs and a limit on handshakes per client address."""

    def do_GET(self):
        """Greet the client by the name in its certificate."""
        self.reply(200, f"Hello, {self.name}\n")

    def do_HEAD(self):
        """Like GET, without the body."""
        self.do_GET()

    def authorize(self):
        """May this request be served? (A forbidden connection got its 403
        at the handshake.) Behind a trusted proxy, each request names its
        own client: refuse it with a 403 if it may not be served. Asked once
        per request, and before any "100 Continue"."""
        if self.authorized is None:
            refusal = self.identify_forwarded_client() if self.connection.proxy else None
            if refusal:
                self.reply(403, f"403 Forbidden: {refusal}\n")
            self.authorized = refusal is None
        return self.authorized

    def identify_forwarded_client(self):
        """Behind a proxy (--trust-proxy): the client named by the certificate
        the proxy forwarded, checked as OpenSSL checks a direct client
        (armour/forwarded.py). Set self.name, or return why it is refused."""
        info, refusal = read_forwarded_certificate(self)
        if refusal:
            return refusal
        peer, proxy = format_address(self.client_address), spell_all(self.connection.ids)
        ids = identities_of(info)
        refusal = refusal_for(ids, self.server.allow, info)
        if refusal:
            self.server.log(f"forbidden {peer}: {refusal} (forwarded by {proxy})")
            return refusal
        self.server.log(f"proxied {peer}: {spell_all(ids)} (forwarded by {proxy})")
        self.name = greeting_name(ids)
        return None


# --- main ----------------------------------------------------------------

def parse_args(argv):
    """Read the command line."""
    p = ArgumentParser(
        description="HTTPS server that requires a client certificate (mutual TLS).",
        epilog="example: python3 server.py --port 3000 --allow cn:my-client")
    p.add_argument("--host", default="localhost", help="address to listen on (default localhost)")
    p.add_argument("--port", type=port, default=3000, help="TCP port (default 3000; 0 = any free port)")
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
    if args.warn_days < 0:
        p.error(f"--warn-days {args.warn_days} is negative -- use 0 to warn only when expired")
    return args


def fail(message):
    """Print one line saying what is wrong and how to fix it; return exit code 2."""
    print(for_terminal(f"error: {message}"), file=sys.stderr)
    return 2


def main(argv=None):
    """Start the server and serve until Ctrl-C (or SIGTERM)."""
    args = parse_args(argv)

    def build_context():
        context = make_server_context(args.ca, args.cert, args.key, args.crl, args.keylog,
                                      args.crl_chain)
        for warning in date_warnings(args.ca, args.cert, args.crl, args.warn_days) + [
                warn_if_no_san(args.cert)] + crl_issuer_warnings(args.ca, args.crl):
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

    if hasattr(signal, "SIGHUP"):       # kill -HUP: reload; our terminal closed: stop
        server.started_on_terminal = terminal_open()
        signal.signal(signal.SIGHUP, server.hang_up)
    # SIGTERM (kill, systemd, docker stop) stops us the way Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    host = args.host if ":" not in args.host else f"[{args.host}]"
    allowed = f"; allowed: {', '.join(spell(a) for a in args.allow)}" if args.allow else ""
    proxy = f"; trusted proxy: {spell(args.trust_proxy)}" if args.trust_proxy else ""
    log(f"serving https://{host}:{server.server_port}/ (pid {os.getpid()}): client certificate "
        f"signed by {args.ca} required, TLS 1.2+{allowed}{proxy}. "
        f"Ctrl-C, or kill {os.getpid()}, stops it.")
    try:                            # from here on, Ctrl-C stops us with "stopped"
        for line in describe_groups(context, GROUPS_FROM):
            log(line)
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
