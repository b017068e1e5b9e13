"""bad_requests.py: the requests http.server must not be left to read alone.

Prevents: request smuggling (a request body we do not read, taken for the
next request), a header name that is not a token, a connection served on
after a reload or past --session-lifetime (its handshake's checks are
stale), a "100 Continue" said to a client that may not be served, and
http.server's own messages (which quote the client) forging log lines.
GuardedHandler is the base of server.py's GreetingHandler.
"""

import http.server
import re
import socket
import time

from armour.refusals import format_address, printable
from armour.slow_clients import unread_answers


class GuardedHandler(http.server.BaseHTTPRequestHandler):
    """http.server's request handler, for a connection the server drives:
    each request's head has arrived whole before the handler sees it, a
    request with a body closes the connection, a connection whose checks
    went stale gets one last answer, and http.server's own messages reach
    our log escaped. Subclasses define authorize() and do_GET()."""

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
        self.timed_out, self.headers = False, None    # headers: this request's, once read
        super().handle_one_request()
        if not self.timed_out:                # a write that timed out is not tried twice
            self.wfile.flush()                # an answer to a request http.server refused too

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

    def handle_expect_100(self):
        """A client that sends "Expect: 100-continue" waits for our word
        before sending its body (RFC 9110 10.1.1). http.server says "100
        Continue" as soon as it has read the headers; we say it only to a
        client that may be served, and a 403 to one that may not."""
        return self.authorize() and super().handle_expect_100()

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
        """http.server catches a write past our deadline (the client does not
        read its answers: every request head is here before we serve it, so
        no read waits), logs "Request timed out", and ends the connection:
        log why instead, and note it, so that nothing writes to it again."""
        if args and isinstance(args[-1], socket.timeout):
            self.timed_out = self.close_connection = True
            self.server.refuse("closed", format_address(self.client_address),
                               unread_answers(self.server))
        else:
            self.log_message(format, *args)


TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")     # a header name (RFC 9110 5.6.2)
