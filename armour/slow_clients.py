"""slow_clients.py: no silent, slow or idle client can tie the server up.

Prevents: one client that connects and says nothing (or one byte a
second) holding a thread, and a crowd of them locking real clients out.
server.py says why the handshake is not run in accept(); this module is
how it runs instead.

Threads work, the selector waits. A thread is given only to a client
that has proven who it is and has a request to be served, or to a step
of a handshake whose bytes have arrived. Whatever waits on the network
(the ClientHello, the rest of the handshake, an idle keep-alive
connection, a slow request head, a client that does not read our
answers, a refused client's last bytes) waits in one selector, costing
no thread: so no stranger, and no crowd of idle clients, can tie the
server up. A connection goes through three stations:

  1. the accept loop (serve_forever, the main thread) only accepts (and,
     when the room is full, waits for it to make room: see arrive);
  2. the waiting room (one thread, a selector) holds every connection
     while it waits for bytes, each under a total deadline (handshake,
     request head, idle), and looks at a new connection's first bytes
     (a TLS handshake, or plain HTTP to answer, or junk to close);
  3. a worker from a fixed pool (Workers) runs one step when its
     bytes are there: a step of the handshake (do_handshake() on a
     non-blocking socket, until OpenSSL needs bytes the client has not
     sent yet), or the requests whose heads have arrived. Then the
     connection goes back to the waiting room. Both cores do handshakes:
     OpenSSL lets go of Python's lock while it computes. (A ClientHello
     already there on accept goes straight to a worker, unless the room
     is full; and a worker waits a few milliseconds, no more, only for a
     client that has proven who it is: see serve_requests.)

A connection is owned by one thread at a time: the waiting room while
it waits, the worker running its step. A worker parks a connection
itself: it registers the socket with the selector, under the room's lock
(Python's selectors are not thread-safe; the kernel's epoll and kqueue
take a new socket while another thread waits on them). Only the room's
thread takes a connection out again, when its bytes arrive or its
deadline passes.

Also here: plain HTTP on the TLS port (answered in HTTP), a TLS alert or
junk instead of a ClientHello (named and closed), and closing so that a
rejected client reads our alert rather than a TCP reset (close_gently).
"""

import heapq
import http.server
import itertools
import queue
import select
import selectors
import socket
import socketserver
import ssl
import sys
import threading
import time

from armour.refusals import ALERTS, RefusalLog, describe_first_bytes, describe_rejection, \
    describe_ssl_error, format_address

# The selectors that take a new socket while another thread waits in select():
# the kernel keeps their list (epoll_ctl, kevent). Not /dev/poll (Solaris's
# DefaultSelector): Python keeps a new socket in the array that a waiting
# poll() fills, and gives it to the kernel only at the next poll().
KERNEL_SELECTORS = tuple(getattr(selectors, name) for name in ("EpollSelector", "KqueueSelector")
                         if hasattr(selectors, name))


def make_selector():
    """The waiting room's selector: epoll or kqueue; else poll() or select(),
    which read Python's list of sockets anew at each wait (see WaitingRoom)."""
    if KERNEL_SELECTORS:
        return KERNEL_SELECTORS[0]()
    return getattr(selectors, "PollSelector", selectors.SelectSelector)()

NEXT_REQUEST_WAIT = 0.005  # seconds a worker waits for a busy client's next request
REQUESTS_PER_TURN = 100    # pipelined requests a worker serves before others get a turn
LINGER_TIMEOUT = 1.0       # seconds we read a rejected client's leftovers (see close_gently)
FULL_ROOM_WAIT = 1.0       # seconds the accept loop waits, at most, for a full room to make room
MAX_REQUEST_HEAD = 65536   # bytes of request line and headers (http.server alone: 6.5 MB)


class Connection:
    """One client's connection on its way between the waiting room and the
    workers: its socket (plain TCP, then TLS), what it waits for, and until when."""

    def __init__(self, sock, address, deadline):
        self.sock, self.address, self.deadline = sock, address, deadline
        self.peer = format_address(address)
        self.head = self.handler = None          # once authenticated: RequestHead, GreetingHandler
        self.authenticated = self.closed = False
        self.closing = False                     # we only read its last bytes (close_gently)
        self.plain = b""                         # a plain-HTTP request head (answered with a 400)
        self.events, self.step, self.late, self.in_worker = selectors.EVENT_READ, None, None, False
        self.turn = 0                            # counts its visits to the waiting room
        self.writable = None                     # a poll object: see can_send


class WaitingRoomServer(http.server.HTTPServer):
    """The base of server.py's MTLSServer: a pool of workers, a slot for
    each authenticated connection (--max-connections), the refusal log,
    and closing connections for good. Its subclass accepts connections and
    hands them to its waiting_room."""

    request_queue_size = 128

    def __init__(self, address, handler, *, workers, max_connections, log_burst):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.slots = threading.BoundedSemaphore(max_connections)   # authenticated connections
        self.pool = Workers(self, workers)
        self.open_connections, self.open_lock = set(), threading.Lock()   # see server_close()
        self.refusals = RefusalLog(self, log_burst)
        super().__init__(address, handler)

    def server_bind(self):
        """Bind without HTTPServer's reverse DNS lookup of our own address."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

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
            self.refuse("closed", conn.peer, describe_late_error(exc))
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
        self.pool.shutdown()

    def handle_error(self, request, client_address):
        """Never print a traceback for something a client did."""
        self.log(f"error {format_address(client_address)}: {sys.exc_info()[1]!r}")


def describe_late_error(exc):
    """The log's reason for a TLS error after the handshake. A TLS 1.2
    client may ask for a second handshake (renegotiation); OpenSSL answers
    with a no_renegotiation alert (OP_NO_RENEGOTIATION, server.py), and
    OpenSSL's client gives up with a handshake_failure alert: say so."""
    if exc.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        return ("the client asked for a second handshake (TLS 1.2 renegotiation), was "
                "refused (OP_NO_RENEGOTIATION), and gave up (alert: handshake failure)")
    return f"TLS error after the handshake ({describe_ssl_error(exc)})"


class Workers:
    """Station 3: a fixed pool of threads, and one queue of the connections
    whose bytes are here; each thread runs the next one's step. (A
    concurrent.futures pool would do the same, and make a Future per step
    that nobody reads.)"""

    def __init__(self, server, count):
        self.server, self.queue, self.stopped = server, queue.SimpleQueue(), False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, name=f"mtls-worker-{n}", daemon=True)
                        for n in range(count)]
        for thread in self.threads:
            thread.start()

    def submit(self, conn):
        """Queue the connection's next step (conn.step). False once stopped."""
        with self.lock:                          # not after shutdown's end-of-queue marks
            if not self.stopped:
                self.queue.put(conn)
            return not self.stopped

    def run(self):
        """(Each worker) Run steps, until shutdown() says stop."""
        while True:
            conn = self.queue.get()
            if conn is None:
                return
            self.server.run_step(conn)

    def shutdown(self, wait=False):
        """Close the connections still queued, and end each thread after its
        current step (and, with `wait`, wait for that)."""
        with self.lock:
            self.stopped = True
        while True:
            try:
                conn = self.queue.get_nowait()
            except queue.Empty:
                break
            if conn is not None:
                self.server.finish_connection(conn)
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads if wait else ():
            thread.join()


class WaitingRoom:
    """Station 2: every connection waiting for the client's bytes waits
    here, all of them watched by one thread with a selector, each under
    its deadline. A crowd of silent, dribbling or idle connections costs no
    worker and cannot lock real clients out.

    Any thread may park a connection here: it registers the socket with the
    selector itself, under the room's lock. The kernel's selector (epoll on
    Linux, kqueue on BSD and macOS) takes a new socket even while the room's
    thread waits in select(), so parking costs no wake-up of that thread:
    it wakes only when the client's bytes arrive. The bell (a socket pair)
    rings only when the room must look again sooner: a deadline earlier
    than its next wake-up, a room over --max-pending (make_room), or a
    selector that cannot take a socket mid-wait (select() and poll(), e.g.
    on Windows)."""

    def __init__(self, server, capacity, handshake):
        self.server, self.capacity = server, capacity
        self.handshake = handshake               # the step that runs a handshake (server.py)
        self.selector = make_selector()
        self.sees_new = isinstance(self.selector, KERNEL_SELECTORS)
        self.lock = threading.Lock()             # guards the selector and everything below
        self.has_room = threading.Condition(self.lock)   # strangers fell to capacity
        self.bell, self.bell_rope = socket.socketpair()   # wakes the selector
        self.bell.setblocking(False)
        self.bell_rope.setblocking(False)
        self.selector.register(self.bell, selectors.EVENT_READ)
        self.waiting = {}                        # conn -> its turn, for the connections here
        self.deadlines = []                      # a heap of (deadline, number, turn, conn)
        self.numbers = itertools.count()
        self.strangers = {}                      # not yet authenticated, oldest first
        self.wake_at = 0.0                       # when the room's thread wakes, if it sleeps
        self.closing = self.stopped = False     # closing: asked to stop; stopped: it has
        self.thread = threading.Thread(target=self.run, name="waiting-room", daemon=True)
        self.thread.start()

    def arrive(self, conn):
        """Called by the accept loop: a new connection waits for its first
        bytes; or, if its ClientHello has begun to arrive already (as it often
        has, under load) and the room is not full, it goes straight to a worker.
        (A full room: it waits here, where --max-pending is kept; a worker's
        queue has no bound of its own.)

        Then, if the room is full, the accept loop waits until the room's
        thread has made room (make_room). Connections can come faster than
        it closes the oldest (3,000 in half a second: 244 strangers were
        open with --max-pending 1); so they wait in the kernel's listen
        queue instead, costing us no file."""
        with self.lock:
            self.strangers[conn] = None
            full = len(self.strangers) > self.capacity
        try:
            spoke = conn.sock.recv(1, socket.MSG_PEEK) == b"\x16"
        except OSError:
            spoke = False
        if spoke and not full:
            self.to_worker(conn, self.handshake)
            return
        self.park(conn, look_at_first_bytes, expire_unspoken, in_worker=False)
        if full:
            with self.lock:
                self.has_room.wait_for(lambda: len(self.strangers) <= self.capacity or
                                       self.stopped, FULL_ROOM_WAIT)

    def to_worker(self, conn, step):
        """Have a worker run the connection's next step, now (its bytes are here)."""
        conn.step, conn.in_worker = step, True
        if not self.server.pool.submit(conn):    # the server is closing
            self.server.finish_connection(conn)

    def park(self, conn, step, late, events=selectors.EVENT_READ, in_worker=True):
        """Let a connection wait here (from any thread): when its socket is
        ready, `step` runs (in a worker if `in_worker`); at its deadline, `late`."""
        conn.step, conn.late, conn.events, conn.in_worker = step, late, events, in_worker
        with self.lock:
            watched = not self.stopped and not conn.closed and self.watch(conn)
            # The room's thread, if it sleeps, wakes at wake_at (0 while it is
            # awake: it looks again before it sleeps). Ring if that is too late:
            # for this deadline, for a full room (see make_room), or for a
            # selector that does not see a socket added while it waits.
            late = conn.deadline < self.wake_at or len(self.strangers) > self.capacity
            ring = watched and (late if self.sees_new else self.wake_at > 0)
        if not watched:                          # closed meanwhile, or the server is closing
            self.server.finish_connection(conn)
        elif ring:
            self.ring()

    def watch(self, conn):
        """(With the lock) Register a connection with the selector, under its
        deadline. False if its socket is closed."""
        try:
            self.selector.register(conn.sock, conn.events, conn)
        except (OSError, ValueError):
            return False
        conn.turn += 1
        self.waiting[conn] = conn.turn
        heapq.heappush(self.deadlines, (conn.deadline, next(self.numbers), conn.turn, conn))
        return True

    def claim(self, conn, turn=None):
        """(Room) Take a connection out of the selector if it still waits here
        (and, given `turn`, has waited since that turn began): True if this
        call took it. In one turn of the selector, a connection's bytes and
        its deadline can both come, after make_room has closed it: it is
        claimed once, or not at all."""
        with self.lock:
            if conn not in self.waiting or turn not in (None, self.waiting[conn]):
                return False
            del self.waiting[conn]
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        return True

    def ring(self):
        """Wake the room's thread."""
        try:
            self.bell_rope.send(b"!")
        except OSError:                          # full (it is ringing already) or closed
            pass

    def forget(self, conn):
        """A connection was closed, or authenticated: it is no stranger any more."""
        with self.lock:
            self.strangers.pop(conn, None)
            if len(self.strangers) == self.capacity:
                self.has_room.notify()           # the accept loop may wait for this

    def close(self):
        """Stop the thread; it closes every connection still waiting."""
        self.closing = True
        self.ring()
        self.thread.join(5)

    def run(self):
        """Wait for bytes or deadlines; hand over, expire."""
        while not self.closing:
            with self.lock:
                now = time.monotonic()
                timeout = self.server.refusals.due()         # at most 1 s
                if self.deadlines:
                    timeout = min(timeout, max(self.deadlines[0][0] - now, 0))
                self.wake_at = now + timeout
            ready = self.selector.select(timeout)
            self.wake_at = 0.0                   # awake: it looks at the deadlines before it sleeps
            self.guarded(self.make_room)         # first: one closed now is not woken below
            for key, _ in ready:
                self.guarded(self.take, key)
            self.guarded(self.expire)
            self.server.refusals.summarize()
        with self.lock:
            self.stopped = True
            left, self.waiting = list(self.waiting), {}
            self.has_room.notify_all()
        for conn in left:
            self.server.finish_connection(conn)
        self.selector.close()
        self.bell.close()
        self.bell_rope.close()

    def guarded(self, part, *args):
        """(Room) Run one part of a turn. A bug of ours in it is logged, and
        the turn goes on: this thread must not die of it (the server would
        accept connections, and serve none)."""
        try:
            part(*args)
        except Exception as exc:
            self.server.log(f"error in the waiting room: {exc!r}")

    def take(self, key):
        """(Room) A socket the selector found ready: the bell, or a connection
        to wake (unless make_room has closed it in this turn)."""
        if key.fileobj is self.bell:
            self.bell.recv(4096)                 # rung once or more: it woke us
        elif self.claim(key.data):
            self.wake(key.data)

    def make_room(self):
        """(Room) While too many strangers are open, close the oldest that
        waits here. One with a worker, or queued for one, counts but is left
        alone: so if all the others are with the workers, the newest is
        closed, at once. One refused already, whose last bytes we read
        (conn.closing), counts too; closing it logs no second line."""
        for _ in range(len(self.strangers)):
            with self.lock:
                if len(self.strangers) <= self.capacity:
                    return
                oldest = next((c for c in self.strangers if c in self.waiting), None)
                newest = next(reversed(self.strangers))
            if oldest is None or not self.claim(oldest):
                return
            if oldest.closing:                   # refused already, and logged so
                self.server.finish_connection(oldest)
                continue
            if oldest is newest:
                reason = (f"closed at once: {self.capacity} connections not authenticated "
                          f"yet are open (--max-pending {self.capacity})")
            else:
                reason = (f"{silence(oldest)}, closed to make room for a new connection "
                          f"(--max-pending {self.capacity})")
            self.server.refuse("rejected", oldest.peer, reason)
            self.server.finish_connection(oldest)

    def wake(self, conn):
        """(Room) The client sent something (or can take more): run the
        connection's step, in a worker or here."""
        if conn.in_worker:
            self.to_worker(conn, conn.step)
        else:
            conn.step(self.server, conn)

    def expire(self):
        """(Room) Deal with the connections whose deadline passed while they waited."""
        now, late = time.monotonic(), []
        with self.lock:
            while self.deadlines and self.deadlines[0][0] <= now:
                _, _, turn, conn = heapq.heappop(self.deadlines)
                if self.waiting.get(conn) == turn:   # still waiting, since that deadline was set
                    late.append((conn, turn))
            if len(self.deadlines) > 2 * len(self.waiting) + 1000:   # old entries: drop them
                self.deadlines = [entry for entry in self.deadlines
                                  if self.waiting.get(entry[3]) == entry[2]]
                heapq.heapify(self.deadlines)
        for conn, turn in late:
            if self.claim(conn, turn):
                self.guarded(conn.late, self.server, conn)


def silence(conn):
    """What a waiting stranger has said: "sent nothing", "sent only part of
    its ClientHello", or nothing since our answer to its hello."""
    if not isinstance(conn.sock, ssl.SSLSocket):
        try:
            said = conn.sock.recv(1, socket.MSG_PEEK)
        except OSError:
            said = b""
        return "sent only part of its ClientHello" if said else "sent nothing"
    if not getattr(conn.sock, "hello_read", False):     # see note_client_hello
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
        server.waiting_room.to_worker(conn, server.waiting_room.handshake)
    elif first[0] == 21:     # an alert record (RFC 8446 5.1): TLS, but a goodbye
        alert = ALERTS.get(first[6], f"alert {first[6]}") if len(first) >= 7 else "an alert"
        server.refuse("rejected", conn.peer, f"the client sent a TLS alert ({alert}) instead of "
                                             f"a ClientHello: it gave up before the handshake")
        close_gently(server, conn)
    elif first.split(b" ")[0].isalpha():
        server.refuse("rejected", conn.peer, "not TLS at all: plain HTTP on the TLS port")
        # Read its request head first (bounded), so that closing sends no reset.
        conn.deadline, conn.closing = time.monotonic() + LINGER_TIMEOUT, True
        read_plain_http(server, conn)
    else:
        server.refuse("rejected", conn.peer, describe_first_bytes(first))
        close_gently(server, conn)


def expire_unspoken(server, conn):
    """(Waiting room) A connection that said nothing, or too little, in time."""
    server.refuse("rejected", conn.peer, f"{silence(conn)} within {server.handshake_timeout:g} s "
                                         f"(--handshake-timeout): an idle, slow or silent client")
    server.finish_connection(conn)


def start_tls(server, conn):
    """(Worker) The TLS socket of a connection: on its first step, the
    accepted TCP socket wrapped in TLS with the current context, its
    handshake not begun (do_handshake_on_connect=False) and non-blocking,
    so that do_handshake() never waits. None if the client has gone, or if
    its handshake deadline passed while it queued for a worker (then it is
    closed before any handshake work: under a flood of ClientHellos, the
    CPU goes to connections that can still finish in time)."""
    if time.monotonic() > conn.deadline:
        if isinstance(conn.sock, ssl.SSLSocket):
            expire_handshake(server, conn)
        else:
            server.refuse("rejected", conn.peer, f"handshake not begun within "
                                                 f"{server.handshake_timeout:g} s "
                                                 f"(--handshake-timeout): the server was busy "
                                                 f"with other handshakes")
            server.finish_connection(conn)
        return None
    if not isinstance(conn.sock, ssl.SSLSocket):
        context = server.context    # read once: a reload may swap it meanwhile
        if context.sni_callback is not note_client_hello:    # once per context (reloads too)
            context.sni_callback = note_client_hello
        try:
            conn.sock = context.wrap_socket(conn.sock, server_side=True,
                                            do_handshake_on_connect=False)
        except OSError:             # reset already: "closed before TLS handshake"
            server.refuse("rejected", conn.peer, "client reset the connection during the handshake")
            server.finish_connection(conn)
            return None
        conn.sock.settimeout(0.0)
    return conn.sock


def note_client_hello(tls, server_name, context):
    """(Worker; OpenSSL's sni_callback) OpenSSL has read a whole ClientHello
    on this connection: it calls this once per hello read, with the name
    None if the client sent none. After it, a stalled handshake is not a
    half-sent hello (after a HelloRetryRequest, the client owes a second one)."""
    tls.hello_read = True


def wait_for_handshake(server, conn, want, step):
    """(Worker) The handshake needs bytes the client has not sent yet
    (SSLWantReadError), or cannot send ours yet (SSLWantWriteError): the
    connection waits in the waiting room, and `step` runs in a worker
    when they are there. So no worker ever waits for a handshake: not
    even for a resumed one, whose ClientHello proves nothing (its PSK
    binder, RFC 8446 4.2.11, can be replayed by anyone who saw it, for
    as long as the ticket lives)."""
    events = selectors.EVENT_WRITE if isinstance(want, ssl.SSLWantWriteError) else selectors.EVENT_READ
    server.waiting_room.park(conn, step, expire_handshake, events)


def expire_handshake(server, conn):
    """(Waiting room) A handshake not finished by its deadline."""
    if not getattr(conn.sock, "hello_read", False):     # see note_client_hello
        expire_unspoken(server, conn)
        return
    server.refuse("rejected", conn.peer, describe_rejection(socket.timeout(), server.context))
    server.finish_connection(conn)


def take_a_slot(server, conn):
    """(Worker) A finished handshake takes one of --max-connections slots,
    or is closed with a close_notify; it is no stranger any more. True if
    it got one."""
    if not server.slots.acquire(blocking=False):
        server.refuse("rejected", conn.peer, f"too many connections (limit "
                                             f"{server.max_connections}, --max-connections)")
        close_tls(server, conn)
        return False
    conn.authenticated = True
    server.waiting_room.forget(conn)
    return True


def start_requests(server, conn, handler_class):
    """(Worker) An identified client: make its request handler and serve
    what has arrived. One that may not be served (decided at the handshake)
    gets its 403 at once, and the connection is closed."""
    tls = conn.sock
    conn.head = RequestHead(server.idle_timeout, server.request_timeout)
    tls.settimeout(server.request_timeout)
    conn.handler = handler_class(tls, conn.address, server, conn.head)
    if tls.refusal:
        conn.handler.refuse_connection()
        close_tls(server, conn)
        return
    serve_requests(server, conn, NEXT_REQUEST_WAIT)


def serve_requests(server, conn, wait=0.0):
    """(Worker) Serve each request whose head has arrived whole, while the
    client takes our answers, then give the connection back to the waiting
    room until the next one arrives (or until the client reads).

    A busy client's next request often comes within a millisecond of our
    answer (or of the end of its handshake): right then, the worker waits
    for it up to NEXT_REQUEST_WAIT (the client has proven who it is) rather
    than pay for two hand-overs between threads. Woken by the selector, it
    waits for nothing (wait=0): what woke it may be no whole request (part
    of a TLS record, a KeyUpdate), and the rest waits in the waiting room."""
    head, handler = conn.head, conn.handler
    served = 0
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
            close_tls(server, conn)              # its close_notify gets ours (RFC 8446 6.1)
            return
        if found == "too big":
            server.refuse("closed", conn.peer, f"request head over {MAX_REQUEST_HEAD} bytes: a "
                                               f"client that will not stop sending")
            close_tls(server, conn)
            return
        if not can_send(conn):
            # A client that sends requests but does not read our answers has
            # filled its socket's send buffer: a write now would wait in this
            # worker. The connection waits in the waiting room until the
            # client reads (EVENT_WRITE), for at most the request timeout.
            conn.deadline = time.monotonic() + server.request_timeout
            server.waiting_room.park(conn, serve_requests, expire_unread, selectors.EVENT_WRITE)
            return
        # An answer is a few hundred bytes, and a writable socket takes it
        # whole: this timeout is only a backstop (a write that hits it ends
        # the connection at once: see GuardedHandler.log_error).
        conn.sock.settimeout(server.request_timeout)
        handler.handle_one_request()
        if handler.close_connection:
            close_tls(server, conn, linger=not said_goodbye(handler))
            return
        head.expect_request()
        wait = NEXT_REQUEST_WAIT
        served += 1
        if served == REQUESTS_PER_TURN:
            # Thousands of pipelined requests must not keep this worker from
            # everyone else: the connection queues for a worker again, behind
            # the steps that waited meanwhile (a new client's handshake).
            server.waiting_room.to_worker(conn, serve_requests)
            return


def can_send(conn):
    """Has the socket's send buffer room, now (poll with no wait)? One poll
    object per connection, made at its first answer: asked before every answer."""
    if conn.writable is None:
        conn.writable = select.poll()
        conn.writable.register(conn.sock, select.POLLOUT)
    return bool(conn.writable.poll(0))


def expire_unread(server, conn):
    """(Waiting room) The client has not read our answers by the deadline."""
    server.refuse("closed", conn.peer, unread_answers(server))
    close_tls(server, conn)


def unread_answers(server):
    """The log's reason for a client that does not read what we send it."""
    return (f"does not read its answers: none taken for {server.request_timeout:g} s "
            f"(--request-timeout)")


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


def close_tls(server, conn, linger=True):
    """End a TLS connection with a close_notify alert (RFC 8446 6.1): it
    tells the client the data is complete, not cut off by an attacker.
    On a non-blocking socket, unwrap() sends it and then raises
    SSLWantReadError: we do not wait for the client's reply (close_gently)."""
    try:
        conn.sock.settimeout(0.0)
        conn.sock.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass
    close_gently(server, conn, linger)


def close_gently(server, conn, linger=True):
    """Close so that the client surely reads our last words (a TLS alert,
    a 403, a 400).

    Under TLS 1.3 the client finishes its side of the handshake before the
    server has checked the client certificate, and sends its request at
    once. If we close while that request sits unread in our receive buffer,
    the kernel answers with a TCP reset, which can destroy the alert
    before the client reads it. So: send FIN, then read and drop what the
    client sends, in the waiting room, until it closes or LINGER_TIMEOUT.

    Without `linger` (the client said its request was its last: see
    said_goodbye), nothing more is coming but, perhaps, its close_notify,
    sent after it has read our answer: we close once what is here is read."""
    try:
        socket.socket.shutdown(conn.sock, socket.SHUT_WR)
    except (OSError, ValueError):
        server.finish_connection(conn)
        return
    conn.deadline, conn.closing = time.monotonic() + LINGER_TIMEOUT, True
    drain(server, conn, linger)


def said_goodbye(handler):
    """Did the client say that its request was its last (Connection: close,
    or HTTP/1.0 without keep-alive), and send it with no body? headers is
    None if http.server refused the request before reading them."""
    headers = handler.headers
    if headers is None or "content-length" in headers or "transfer-encoding" in headers:
        return False
    connection = headers.get("Connection", "").strip().lower()
    return connection == "close" or (handler.request_version == "HTTP/1.0" and
                                     connection != "keep-alive")


def drain(server, conn, linger=True):
    """Read and drop a closing client's last bytes (the raw TCP bytes:
    whatever they say, we will not read them as TLS), until it closes; or,
    without `linger`, until none is here. Run by close_gently (in a worker,
    or in the waiting room), then in the waiting room each time more comes."""
    try:
        for _ in range(16):               # at most 1 MB a turn; more waits for the next
            if not socket.socket.recv(conn.sock, 65536):
                break
            linger = True                 # it is still sending: read to its end
        else:
            server.waiting_room.park(conn, drain, stop_draining, in_worker=False)
            return
    except BlockingIOError:
        if linger:
            server.waiting_room.park(conn, drain, stop_draining, in_worker=False)
            return
    except OSError:
        pass
    server.finish_connection(conn)


def stop_draining(server, conn):
    """(Waiting room) The closing client had LINGER_TIMEOUT: close."""
    server.finish_connection(conn)


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
