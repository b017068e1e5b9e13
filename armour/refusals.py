"""refusals.py: why a client was refused, in one plain line, and a flood as counts.

Prevents: a refusal nobody can understand (OpenSSL's "SSLV3_ALERT_..." or
a verify code number), a log line forged by a newline in a client's name,
and a flood of refusals drowning the log.

describe_rejection(exc, context)  the reason for a failed handshake, in words
describe_first_bytes(first)       the same for first bytes that begin no handshake
describe_verify_code(code, ...)   the same for a certificate OpenSSL refused
log(message)                      one timestamped line to stderr, the server's log
RefusalLog                        one line per refusal; in a flood, counts
printable, spell, spell_all       a client's text made safe for one log line
"""

import re
import shutil
import socket
import ssl
import sys
import textwrap
import threading
import time

from armour.key_exchange import KEY_EXCHANGE_GROUPS

LOG_BURST = 500            # refusals logged one by one at once; then LOG_RATE a second,
LOG_RATE = 50              # and the rest counted (see RefusalLog)


def log(message):
    """Write one timestamped line to stderr, the server's log."""
    try:
        sys.stderr.write(for_terminal(time.strftime("%H:%M:%S ") + message, indent=" " * 9)
                         + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):    # stderr is a closed pipe: keep serving regardless
        pass


def for_terminal(line, stream=None, indent="  "):
    """A line as it is for a pipe or a file (one event, one line: grep finds
    it whole); on a terminal, wrapped between words at the terminal's width,
    so that a projector of 80 columns shows every word."""
    stream = stream or sys.stderr
    try:
        if not stream.isatty():
            return line
    except (AttributeError, ValueError):
        return line
    width = shutil.get_terminal_size((100, 24)).columns
    if len(line) <= width or width < 20:   # 0: a terminal of unknown size (Python 3.9 says so)
        return line
    return "\n".join(textwrap.wrap(line, width, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))


def printable(name, keep_non_ascii=False):
    """Escape control characters, and non-ASCII ones unless `keep_non_ascii`:
    a certificate's name (or a server's answer) is someone else's text, and a
    newline in it must not forge a second line of our log or error."""
    return "".join(c if c.isprintable() and (keep_non_ascii or c.isascii()) else ascii(c)[1:-1]
                   for c in name)


def spell(identity):
    """An identity as the log and --allow write it: cn:my-client. A backslash
    or a comma in the value is escaped too, so that no name can pass for two
    in a log line."""
    kind, value = identity
    value = printable(value.replace("\\", "\\\\")).replace(",", "\\x2c")
    return f"{kind}:{value}"


def spell_all(ids):
    """Several identities, as the log writes them: cn:a, dns:b."""
    return ", ".join(spell(i) for i in ids) or "(no identity)"


def format_address(address):
    """127.0.0.1:5000, or [::1]:5000 for IPv6."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    26: "client certificate has the wrong purpose: not for client authentication (by its "
        "extendedKeyUsage, keyUsage or nsCertType)",
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


# The other TLS record types (RFC 8446 5.1; heartbeat, RFC 6520): TLS, but
# no handshake can begin with them.
RECORD_TYPES = {20: "change_cipher_spec", 23: "application_data", 24: "heartbeat"}


def describe_first_bytes(first):
    """Say what a connection's first bytes were, when they are neither a
    handshake, nor an alert, nor plain HTTP."""
    if first[0] in RECORD_TYPES and first[1:2] == b"\x03":     # a record: type, version 3.x
        return (f"the client sent a TLS record of type {first[0]} ({RECORD_TYPES[first[0]]}) "
                f"instead of a ClientHello: TLS, but no handshake")
    return f"not TLS at all (first bytes {first[:4].hex()})"


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
