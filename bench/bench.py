#!/usr/bin/env python3
"""bench.py: server.py next to `openssl s_server` and the article's Node
server, measured in one run.

What it measures, for RSA-2048 and for ECDSA P-256 certificates:

  full handshakes/s   new TCP connection + full mTLS handshake (the client
                      presents its certificate) + one GET, then close;
                      at concurrency 1 and 4
  resumed hs/s        the same, but resuming a TLS 1.3 session (a ticket from
                      the previous connection): no certificates, no signatures;
                      at concurrency 1. server.py checks the client
                      certificate's dates again on each resumed connection.
  keep-alive req/s    GETs over connections that are already open;
                      at concurrency 1 and 4
  latency p50/p99     of each of those, in milliseconds, as the client sees it
  server CPU ms/req   the server process's own user+system CPU time, read from
                      /proc/PID/stat before and after the window, divided by the
                      requests served in it (the load generator is not in it)
  context switches    of the server's threads per request (/proc/PID/task/*/status):
                      each is a thread that stopped to wait or was made to yield
  key exchange        the group each server agrees on with s_client (whose key
                      shares are our load generator's), "+HRR" when it asks for
                      another share first (a HelloRetryRequest: one more round trip)
  session tickets     TLS 1.3 tickets each server sends after a full
                      handshake (counted with openssl s_client -msg)
  start to first hs   from starting the server process to the first successful
                      mTLS request it answers (median of 3 starts)
  make certs          seconds to build the whole PKI from nothing, per key type

The servers, all on the same certificates:
  server.py   this project's server (or several versions of it: --server)
  s_server    `openssl s_server -Verify 1 -verify_return_error -WWW`, serving
              a file that holds the same greeting. OpenSSL's test server: one
              process, one connection at a time, HTTP/1.0, and it closes the
              connection after each response. So it has no keep-alive
              figures: the table says n/a, after checking (not assuming)
              that a second request on the same connection gets no answer.
  node        the article's server: Node's https.createServer with
              requestCert and rejectUnauthorized, answering the same
              greeting with the client's CN. Written into a temporary
              folder and run with `node`, when it is installed.
Like for like: s_server and node offer only the key-exchange group that
server.py chose (the last --server, if several), so all do the same work.
Each ratio is server.py / s_server and server.py / node.

The load generator is the same for all: N worker processes
(multiprocessing, so that clients do not share one GIL), each using Python's
ssl module and a small raw-socket HTTP/1.1 client that sends one fixed request
and reads the status line, headers and body. It is cheaper per request than
http.client, which leaves more of a small machine to the server. Everything
talks to 127.0.0.1 only; the load generator and the servers share the CPUs.

Each server first gets a few tenths of a second of load that is not
measured (Node, which compiles its hot code as it runs, a little more).
To limit noise all servers are measured in the same run, taking turns (the
order rotates from one repeat to the next); each figure is the median of
--repeats windows of --seconds each, and each ratio the median of the ratios
of the windows measured back to back. Other work on the machine still shows,
so each window also records how much CPU other processes used, and the
output warns when that was significant.

--profile serves full mTLS connections, then keep-alive requests, with
server.py's own code inside this process, one at a time, and prints where
the server CPU of one goes: OpenSSL's handshake, reading the certificate,
HTTP, the log line, handing the connection between threads, close_notify.
It counts each thread's own CPU time, twice: with timers around only those
parts, and with cProfile in every thread the server starts (Python 3.9 to
3.11: from 3.12 on, cProfile allows one profiler per process).

Reads:   ../server.py (or --server PATH) and ../Makefile; certificates made
         by `make certs` into a temporary folder (or the ones in --certs DIR)
Writes:  the tables to stdout; JSON to bench/results.json (or --json FILE)
Run:     python3 bench/bench.py                     (both key types, about 45 s)
         make bench                                 (the same)
         python3 bench/bench.py --key ec --seconds 1 --repeats 5
         python3 bench/bench.py --certs certs       (the certificates you have)
         python3 bench/bench.py --server before=/tmp/before/server.py --server server.py
         python3 bench/bench.py --profile           (where one connection's CPU goes)

Reading order: settings, certificates, the servers, the load generator,
one measurement, the whole run, the tables, the profile, main.
"""

import argparse
import cProfile
import functools
import importlib.util
import json
import multiprocessing
import os
import platform
import pstats
import queue
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

# --- settings ------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVER_PY = os.path.join(ROOT, "server.py")
DEFAULT_JSON = os.path.join(HERE, "results.json")

HOST = "127.0.0.1"
SERVER_NAME = "localhost"          # the name in server.crt's subjectAltName
GREETING = b"Hello, my-client\n"   # what server.py answers; s_server serves a copy
PAGE = "hello.txt"                 # the file s_server -WWW serves
START_TIMEOUT = 15.0               # seconds a server may take to answer at all
IO_TIMEOUT = 10.0                  # seconds for any one request
STARTS = 3                         # times each server is started, for its start-up time
DISTURBED = 0.15                   # cores used by other processes that skew a window
WIDTH = 100                        # columns of output at most (read on a projector)
# Seconds of each kind of load before measuring. Node compiles its hot code
# as it runs: its CPU per keep-alive request fell from 0.21 to 0.12 ms over
# its first second of traffic here, and then held.
WARM_UP = {"node": 0.6, None: 0.2}

# (name, connection kind, concurrency), in the order they are measured.
SCENARIOS = [
    ("full handshake, c=1", "handshake", 1),
    ("full handshake, c=4", "handshake", 4),
    ("resumed handshake, c=1", "resumed", 1),
    ("keep-alive, c=1", "keepalive", 1),
    ("keep-alive, c=4", "keepalive", 4),
]

BASELINES = ("s_server", "node")   # what each server.py is compared with

LOAD_GENERATOR = ("multiprocessing worker processes (one per concurrent client), each with "
                  "Python ssl + a raw-socket HTTP/1.1 client; the same generator for every server")

# The article's server (Node's https module, as in the article), on our
# certificates: requestCert asks for a client certificate, and
# rejectUnauthorized ends the handshake unless `ca` signed it. It answers
# like server.py, greeting the client by the CN of its certificate.
NODE_SERVER = r"""
const https = require('https');
const fs = require('fs');
const [certs, host, group] = process.argv.slice(2);
const options = {
  key: fs.readFileSync(certs + '/server.key'),
  cert: fs.readFileSync(certs + '/server.crt'),
  ca: fs.readFileSync(certs + '/ca.crt'),
  requestCert: true,
  rejectUnauthorized: true,
};
if (group) options.ecdhCurve = group;   // the key-exchange group server.py offers
const server = https.createServer(options, (req, res) => {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'text/plain');
  res.end(`Hello, ${req.socket.getPeerCertificate().subject.CN}\n`);
});
server.listen(0, host, () => console.log(`listening on ${host}:${server.address().port}`));
"""


class BenchError(Exception):
    """Something the person running the benchmark can fix (a tool, a file)."""


# --- certificates: made by the project's Makefile, and timed ---------------

def make_certs(folder, key):
    """Run `make certs` into an empty `folder` with KEY=key; return seconds taken."""
    command = ["make", "-C", ROOT, "certs", f"CERTS={folder}", f"KEY={key}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def describe_key(certs):
    """Name the key type of certs/server.crt, e.g. 'RSA-2048' or 'ECDSA P-256'."""
    text = subprocess.run(["openssl", "x509", "-in", os.path.join(certs, "server.crt"),
                           "-noout", "-text"], capture_output=True, text=True).stdout
    bits = re.search(r"Public-Key: \((\d+) bit\)", text)
    if "rsaEncryption" in text and bits:
        return f"RSA-{bits.group(1)}"
    curve = re.search(r"NIST CURVE: (\S+)", text)
    if "id-ecPublicKey" in text:
        return f"ECDSA {curve.group(1) if curve else '?'}"
    return "unknown key"


def check_certs(certs):
    """Fail with the fix unless `certs` holds the files both servers need."""
    for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key"):
        path = os.path.join(certs, name)
        if not os.path.isfile(path):
            raise BenchError(f"{path} not found: run 'make certs CERTS={certs}' first, "
                             f"or leave out --certs to let the benchmark make its own")


# --- the servers ---------------------------------------------------------

class Server:
    """A server process under test: its name, process, port, and start timings."""

    def __init__(self, name, process, log_path):
        self.name, self.process, self.log_path = name, process, log_path
        self.port = None
        self.first_request_ms = None

    def cpu_seconds(self):
        """User + system CPU time of the server process (all its threads),
        as the kernel accounts it. Only this PID: never the load generator."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            # Fields after the ")" that ends the command name; utime and stime
            # are fields 14 and 15 of proc(5), in clock ticks.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def context_switches(self):
        """How often the kernel has switched away from the server's threads
        (waiting for something, or made to yield), summed over its threads."""
        total = 0
        for task in os.listdir(f"/proc/{self.process.pid}/task"):
            try:
                with open(f"/proc/{self.process.pid}/task/{task}/status") as status:
                    total += sum(int(line.split()[1]) for line in status
                                 if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")))
            except OSError:          # the thread ended meanwhile
                pass
        return total

    def stop(self):
        """Stop the process, and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_py_starter(name, path):
    """A function that starts the server.py at `path` on a free port of
    127.0.0.1, as a user would, under the name `name`."""
    def start(certs, workdir):
        command = [sys.executable, path, "--host", HOST, "--port", "0",
                   "--ca", os.path.join(certs, "ca.crt"),
                   "--cert", os.path.join(certs, "server.crt"),
                   "--key", os.path.join(certs, "server.key")]
        # Its log goes to a file (a pipe nobody reads would fill up and stall
        # the server mid-benchmark). Its first line says where it serves:
        #   12:00:00 serving https://127.0.0.1:41234/ (pid 99): client certificate ...
        return start_server(name, command, workdir, r"serving https://[^:]+:(\d+)/", certs)
    return start


def start_s_server(certs, workdir, group=None):
    """Start openssl s_server on a free port of 127.0.0.1, demanding a client
    certificate, serving the greeting as a file (-WWW), offering only the
    key-exchange `group` if one is given."""
    with open(os.path.join(workdir, PAGE), "wb") as page:
        page.write(GREETING)
    command = ["openssl", "s_server", "-accept", f"{HOST}:0",
               "-Verify", "1", "-verify_return_error",
               "-CAfile", os.path.join(certs, "ca.crt"),
               "-cert", os.path.join(certs, "server.crt"), "-key", os.path.join(certs, "server.key"),
               "-WWW"] + (["-groups", group] if group else [])
    # s_server prints "ACCEPT 127.0.0.1:41235" on stdout once it listens.
    return start_server("s_server", command, workdir, r"ACCEPT \S+:(\d+)", certs)


def start_node(certs, workdir, group=None):
    """Write the article's Node server into `workdir` and start it on a free
    port of 127.0.0.1, offering only the key-exchange `group` if one is given."""
    script = os.path.join(workdir, "server.js")
    with open(script, "w") as out:
        out.write(NODE_SERVER)
    # It prints "listening on 127.0.0.1:41236" once it listens.
    return start_server("node", ["node", script, certs, HOST] + ([group] if group else []),
                        workdir, r"listening on \S+:(\d+)", certs)


def start_server(name, command, workdir, port_pattern, certs):
    """Start `command` in `workdir`, find its port in its log, and time how
    long until it answers its first mTLS request."""
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log_file:
        started = time.monotonic()
        try:
            process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                       stdout=log_file, stderr=log_file)
        except FileNotFoundError:
            raise BenchError(f"cannot run {command[0]!r}: is it installed and on PATH?") from None
    server = Server(name, process, log_path)
    try:
        server.port = wait_for_port(server, port_pattern, started)
        context = make_client_context(certs)
        while True:                  # the port is open: retry only real failures
            try:
                check_answer(*request_once(context, server.port)[:2])
                break
            except (OSError, BenchError):
                if time.monotonic() - started > START_TIMEOUT:
                    raise
                time.sleep(0.001)
        server.first_request_ms = (time.monotonic() - started) * 1000
    except BaseException:
        server.stop()
        raise
    return server


def wait_for_port(server, pattern, started):
    """Poll the server's log until it names its port; return the port."""
    while time.monotonic() - started < START_TIMEOUT:
        with open(server.log_path, "rb") as log_file:
            found = re.search(pattern.encode(), log_file.read())
        if found:
            return int(found.group(1))
        if server.process.poll() is not None:
            break
        time.sleep(0.002)
    with open(server.log_path, "rb") as log_file:
        text = log_file.read().decode(errors="replace")
    raise BenchError(f"{server.name} did not say which port it listens on within "
                     f"{START_TIMEOUT:.0f} s (exit status {server.process.poll()}; s_server "
                     f"names its port from OpenSSL 3.0 on); its log says:\n{text}")


def describe_handshake(certs, port):
    """What one full handshake with a server looks like to `openssl s_client
    -msg` (whose default key shares are those of our load generator): the
    key-exchange group, whether the server asked for another key share
    (a HelloRetryRequest: a second ClientHello), and how many TLS 1.3
    session tickets it sent. None if the request fails."""
    command = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", SERVER_NAME,
               "-CAfile", os.path.join(certs, "ca.crt"), "-cert", os.path.join(certs, "client.crt"),
               "-key", os.path.join(certs, "client.key"), "-msg", "-ign_eof"]
    request_text = f"GET /{PAGE} HTTP/1.0\r\nHost: {SERVER_NAME}\r\n\r\n"
    try:
        done = subprocess.run(command, input=request_text, capture_output=True, text=True,
                              timeout=IO_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    if GREETING.decode() not in done.stdout:
        return None
    lines = done.stdout.splitlines()
    group = re.search(r"Server Temp Key: (?:ECDH, )?([^,]+),", done.stdout)
    return {"group": group.group(1) if group else None,
            "hello_retry": sum(1 for line in lines
                               if line.startswith(">>>") and line.endswith("ClientHello")) > 1,
            "tickets": sum(1 for line in lines
                           if line.startswith("<<<") and line.endswith("NewSessionTicket"))}


# --- the load generator: one client, the same for every server -------------

def make_client_context(certs):
    """TLS settings of our client: trust our CA, present the client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # verifies server cert and name
    context.load_verify_locations(cafile=os.path.join(certs, "ca.crt"))
    context.load_cert_chain(os.path.join(certs, "client.crt"), os.path.join(certs, "client.key"))
    # No session is ever passed to wrap_socket, so every connection makes a
    # full handshake: no resumption, the private-key operations every time.
    return context
def connect(context, port, session=None):
    """Open a TCP connection to the server and make an mTLS handshake: a
    full one, or an abbreviated one that resumes `session`."""
    sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
    # Our request leaves in one write anyway; NODELAY makes sure no small
    # segment waits for an ACK (Nagle + delayed ACK = a 40 ms stall).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return context.wrap_socket(sock, server_hostname=SERVER_NAME, session=session)
    except BaseException:
        sock.close()
        raise


def request(tls, keep_alive=True):
    """Send one GET on an open TLS connection; return (status, body)."""
    connection = b"keep-alive" if keep_alive else b"close"
    tls.sendall(b"GET /" + PAGE.encode() + b" HTTP/1.1\r\nHost: " + SERVER_NAME.encode()
                + b"\r\nConnection: " + connection + b"\r\n\r\n")
    return read_response(tls)


def read_response(tls):
    """Read one HTTP response; return (status, body).

    Enough HTTP for these servers: a Content-Length body (server.py, node), or
    a body that ends when the server closes the connection (s_server -WWW).
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            raise BenchError(f"connection closed before a whole response head ({data[:40]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split(b" ")[1])
    headers = dict(line.lower().split(b": ", 1) for line in header_lines if b": " in line)
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        while len(body) < length:
            chunk = tls.recv(65536)
            if not chunk:
                raise BenchError("connection closed in the middle of a body")
            body += chunk
        return status, body
    while True:                    # no length: the body ends at the close
        chunk = tls.recv(65536)
        if not chunk:
            return status, body
        body += chunk


def check_answer(status, body):
    """Fail unless the server answered 200 with the greeting."""
    if status != 200 or body != GREETING:
        raise BenchError(f"unexpected answer: HTTP {status}, body {body[:60]!r}")


def request_once(context, port, session=None):
    """One request on a new connection: connect, handshake (resuming
    `session` if given), GET, close. Return (status, body, TLS session)."""
    with connect(context, port, session) as tls:
        status, body = request(tls, keep_alive=False)
        if session is not None and not tls.session_reused:
            raise BenchError("the server did not resume the TLS session")
        # Under TLS 1.3 the session ticket arrives after the handshake, so
        # tls.session is worth keeping only now that a response was read.
        return status, body, tls.session


def run_client(kind, certs, port, seconds, barrier, results):
    """A load-generator process: make requests of `kind` back to back for
    `seconds` after the start barrier; put on `results` the latencies, the
    error count, the first error, and the CPU time this client used."""
    context = make_client_context(certs)
    tls = session = None
    if kind == "keepalive":
        tls = connect(context, port)         # handshake before the clock starts
        check_answer(*request(tls))
    if kind == "resumed":
        session = request_once(context, port)[2]     # a full handshake, for a ticket
    latencies, errors, first_error = [], 0, None
    barrier.wait()
    cpu_before = cpu_seconds_self()
    end = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        if started >= end:
            break
        try:
            if kind == "keepalive":
                status, body = request(tls)
            elif kind == "resumed":          # each ticket leads to the next
                status, body, session = request_once(context, port, session)
            else:
                status, body, _ = request_once(context, port)
            check_answer(status, body)
        except (OSError, BenchError, ValueError) as exc:
            errors += 1
            first_error = first_error or repr(exc)
            if kind == "keepalive":          # a fresh connection, and go on
                tls.close()
                tls = connect(context, port)
            continue
        finished = time.monotonic()
        if finished <= end:                  # count only what finished in the window
            latencies.append(finished - started)
    cpu_used = cpu_seconds_self() - cpu_before
    if tls is not None:
        tls.close()
    results.put((latencies, errors, first_error, cpu_used))


def cpu_seconds_self():
    """User + system CPU time of this process so far."""
    times = os.times()
    return times.user + times.system


def supports_keep_alive(certs, port):
    """Whether a second request on the same connection gets an answer."""
    context = make_client_context(certs)
    with connect(context, port) as tls:
        check_answer(*request(tls))
        try:
            check_answer(*request(tls))
            return True
        except (OSError, BenchError):
            return False


# --- one measurement: N clients against one server for a window ------------

def measure(server, certs, kind, concurrency, seconds):
    """Drive `server` with `concurrency` client processes for `seconds`;
    return its throughput, latency percentiles and CPU per request."""
    barrier = multiprocessing.Barrier(concurrency + 1)
    results = multiprocessing.Queue()
    clients = [multiprocessing.Process(target=run_client, daemon=True,
                                       args=(kind, certs, server.port, seconds, barrier, results))
               for _ in range(concurrency)]
    for client in clients:
        client.start()
    try:
        barrier.wait(timeout=START_TIMEOUT)  # all clients connected and ready
    except threading.BrokenBarrierError:
        raise BenchError(f"a client process could not connect to {server.name}") from None
    busy_before, cpu_before, started = machine_busy_seconds(), server.cpu_seconds(), time.monotonic()
    switches_before = server.context_switches()
    time.sleep(seconds)
    cpu_used, elapsed = server.cpu_seconds() - cpu_before, time.monotonic() - started
    switches = server.context_switches() - switches_before
    busy = machine_busy_seconds() - busy_before
    try:
        outcomes = [results.get(timeout=seconds + 2 * IO_TIMEOUT) for _ in clients]
    except queue.Empty:
        raise BenchError(f"a client process against {server.name} died; see its traceback above") from None
    for client in clients:
        client.join()
    latencies = sorted(latency for outcome in outcomes for latency in outcome[0])
    errors = sum(outcome[1] for outcome in outcomes)
    count = len(latencies)
    # What the rest of the machine did meanwhile: all CPU time used, less the
    # server's and the load generator's own. Other jobs here skew the figures.
    others = busy - cpu_used - sum(outcome[3] for outcome in outcomes)
    return {
        "requests": count,
        "errors": errors,
        "first_error": next((outcome[2] for outcome in outcomes if outcome[2]), None),
        "per_second": count / elapsed,
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "server_cpu_ms_per_request": cpu_used * 1000 / count if count else None,
        "server_switches_per_request": switches / count if count else None,
        "server_cpu_share": cpu_used / elapsed,   # 1.0 = one core fully busy
        "load_generator_cpu_share": sum(outcome[3] for outcome in outcomes) / elapsed,
        "other_cpu_share": max(0.0, others / elapsed),
    }


def machine_busy_seconds():
    """CPU time all processes on the machine have used since boot (from
    /proc/stat: user, nice, system and steal; interrupt time is left out,
    since our own loopback traffic is handled there)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, steal = fields[0], fields[1], fields[2], fields[7]
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


def percentile_ms(sorted_seconds, percent):
    """The nearest-rank percentile of a sorted list of seconds, in
    milliseconds (None if the list is empty)."""
    if not sorted_seconds:
        return None
    rank = max(1, round(percent / 100 * len(sorted_seconds)))
    return sorted_seconds[min(rank, len(sorted_seconds)) - 1] * 1000


# --- the whole run: per key type, every server, taking turns ---------------

def bench_key_type(label, certs, seconds, repeats, starters, baselines):
    """Measure the server.py versions started by `starters`, and the
    `baselines`, on the certificates in `certs`. Like for like: the
    baselines offer the key-exchange group the last server.py chose."""
    workdir = tempfile.mkdtemp(prefix="mtls-bench-")
    servers = []
    try:
        for start in starters:
            servers.append(start_timed(start, certs, workdir))
        group = (describe_handshake(certs, servers[-1].port) or {}).get("group")
        for start in baselines:
            servers.append(start_timed(functools.partial(start, group=group), certs, workdir))
        keep_alive = {server.name: supports_keep_alive(certs, server.port) for server in servers}
        handshakes = {server.name: describe_handshake(certs, server.port) for server in servers}
        for server in servers:       # warm up: see WARM_UP
            progress(f"{label}: warming up {server.name}")
            seconds_each = WARM_UP.get(server.name, WARM_UP[None])
            measure(server, certs, "handshake", 4, seconds_each)
            if keep_alive[server.name]:
                measure(server, certs, "keepalive", 4, seconds_each)
        windows = {}
        for repeat in range(repeats):
            # Rotate which server goes first, so a drift in the machine's load
            # (other jobs, CPU boost) does not always favour the same one.
            turn = repeat % len(servers)
            order = servers[turn:] + servers[:turn]
            for name, kind, concurrency in SCENARIOS:
                for server in order:
                    if kind == "keepalive" and not keep_alive[server.name]:
                        continue
                    progress(f"{label}: {name}, {server.name} ({repeat + 1}/{repeats})")
                    window = measure(server, certs, kind, concurrency, seconds)
                    windows.setdefault(name, {}).setdefault(server.name, []).append(window)
        names = [server.name for server in servers]
        ours = [name for name in names if name not in BASELINES]
        return {
            "key": label,
            "servers": names,
            "start": {server.name: {"command": server.process.args,
                                    "first_request_ms": statistics.median(server.start_samples),
                                    "first_request_samples_ms": server.start_samples}
                      for server in servers},
            "keep_alive_supported": keep_alive,
            "handshake": handshakes,
            "scenarios": {name: {server: summarize(runs) for server, runs in by_server.items()}
                          for name, by_server in windows.items()},
            # ratios[server.py version][other server][scenario][figure]
            "ratios": {mine: {other: {name: paired_ratios(by_server, mine, other)
                                      for name, by_server in windows.items()}
                              for other in names if other != mine}
                       for mine in ours},
        }
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_timed(start, certs, workdir, samples=STARTS):
    """Start a server `samples` times, keeping the last one running, and note
    each time from start to its first answered request (a median is steadier
    than one cold start)."""
    times = []
    for attempt in range(samples):
        server = start(certs, workdir)
        times.append(server.first_request_ms)
        if attempt < samples - 1:
            server.stop()
    server.start_samples = times
    return server


FIELDS = ("per_second", "p50_ms", "p99_ms", "server_cpu_ms_per_request",
          "server_switches_per_request", "server_cpu_share", "load_generator_cpu_share")


def summarize(runs):
    """Median of each figure over the repeated windows, plus the raw windows."""
    summary = {"windows": runs}
    for field in FIELDS + ("other_cpu_share",):
        values = [run[field] for run in runs if run[field] is not None]
        summary[field] = statistics.median(values) if values else None
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["other_cpu_share_max"] = max(run["other_cpu_share"] for run in runs)
    return summary


def paired_ratios(by_server, mine, other):
    """mine / other for each figure: the median of the ratios of the two
    windows of each repeat, measured back to back. Pairing cancels the slow
    drifts in a shared machine's speed better than a ratio of medians."""
    ratios = {}
    for field in FIELDS:
        pairs = [a[field] / b[field] for a, b in zip(by_server.get(mine, []),
                                                     by_server.get(other, []))
                 if a[field] is not None and b[field]]
        ratios[field] = statistics.median(pairs) if pairs else None
    return ratios


def progress(message):
    """Say on stderr what is being measured now (stdout is for the table)."""
    sys.stderr.write(f"  measuring {message}\x1b[K\r" if sys.stderr.isatty() else "")
    sys.stderr.flush()


def describe_machine():
    """Name the machine: OS, kernel, CPU model and count, Python, OpenSSL, Node."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = re.search(r"model name\s*:\s*(.*)", cpuinfo.read()).group(1)
    except (OSError, AttributeError):
        pass
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    node = None
    if shutil.which("node"):
        node = subprocess.run(["node", "-p", "process.version + ' (OpenSSL ' + "
                               "process.versions.openssl + ')'"],
                              capture_output=True, text=True).stdout.strip()
    return {"platform": platform.platform(), "node": platform.node(), "cpu": cpu,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "python_ssl": ssl.OPENSSL_VERSION, "openssl_cli": openssl, "nodejs": node}


# --- the tables ----------------------------------------------------------

# The performance targets: (scenario, figure, compared with, text, test of
# the ratio, or of server.py's own figure when compared with nothing).
TARGETS = [
    ("full handshake, c=4", "per_second", "node", "full handshakes/s, c=4: >= 1.2x node",
     lambda value: value >= 1.2),
    ("full handshake, c=4", "per_second", "s_server", "full handshakes/s, c=4: >= 1.4x s_server",
     lambda value: value >= 1.4),
    ("full handshake, c=1", "server_cpu_ms_per_request", "s_server",
     "CPU per full handshake, c=1: <= 1.2x s_server", lambda value: value <= 1.2),
    ("full handshake, c=4", "server_cpu_ms_per_request", "s_server",
     "CPU per full handshake, c=4: <= 1.2x s_server", lambda value: value <= 1.2),
    ("keep-alive, c=4", "per_second", "node", "keep-alive req/s, c=4: >= 0.75x node",
     lambda value: value >= 0.75),
    ("keep-alive, c=4", "server_cpu_ms_per_request", "node",
     "CPU per keep-alive request, c=4: <= 2x node", lambda value: value <= 2.0),
    ("keep-alive, c=1", "per_second", None, "keep-alive req/s, c=1: >= 2,000",
     lambda value: value >= 2000),
]

FIGURES = [   # (row label under each scenario, figure, format)
    ("per second", "per_second", "{:,.0f}"),
    ("  latency p50, ms", "p50_ms", "{:.2f}"),
    ("  latency p99, ms", "p99_ms", "{:.2f}"),
    ("  server CPU ms per request", "server_cpu_ms_per_request", "{:.3f}"),
    ("  server context switches/request", "server_switches_per_request", "{:.1f}"),
    ("  server CPU, cores busy", "server_cpu_share", "{:.2f}"),
    ("  load generator CPU, cores", "load_generator_cpu_share", "{:.2f}"),
]
RATIO_FIGURES = [("per second", "per_second"), ("  server CPU ms per request",
                                                "server_cpu_ms_per_request")]

LABEL, CELL = 34, 10      # column widths
GROUP_NAMES = {"prime256v1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def check_targets(result):
    """Evaluate the performance targets for each server.py in one key type's
    result; return a list of checks."""
    checks = []
    for mine in result["ratios"]:
        for name, field, other, text, test in TARGETS:
            if other is None:
                value = result["scenarios"].get(name, {}).get(mine, {}).get(field)
            else:
                value = result["ratios"][mine].get(other, {}).get(name, {}).get(field)
            checks.append({"key": result["key"], "server": mine, "scenario": name,
                           "figure": field, "against": other, "target": text, "value": value,
                           "met": None if value is None else bool(test(value))})
    return checks


def format_columns(title, headers, rows, widths, label=LABEL, align=">"):
    """A table with a label column and one column per header, split into
    several tables of fewer columns when it would be wider than WIDTH."""
    per_table = max(1, (WIDTH - label) // max(widths))
    lines = []
    for first in range(0, len(headers), per_table):
        chosen = range(first, min(first + per_table, len(headers)))
        lines.append((f"{title:<{label}}"
                      + "".join(f"{headers[i]:{align}{widths[i]}}" for i in chosen)).rstrip())
        for text, cells in rows:
            lines.append((f"{text:<{label}}"
                          + "".join(f"{cells[i]:{align}{widths[i]}}" for i in chosen)).rstrip())
        lines.append("")
    return lines


def wrap(text):
    """A long line as lines of at most WIDTH columns (wrapped, never cut)."""
    return textwrap.wrap(text, WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def show(value, fmt):
    return "n/a" if value is None else fmt.format(value)


def format_result(result):
    """One key type's figures: a column per server, then the ratios."""
    names = result["servers"]

    def figure(name, server, field):
        return result["scenarios"].get(name, {}).get(server, {}).get(field)

    rows = []
    for name, _, _ in SCENARIOS:
        for label, field, fmt in FIGURES:
            rows.append((f"{name}: {label}" if label == "per second" else label,
                         [show(figure(name, server, field), fmt) for server in names]))
    described = [result["handshake"][server] or {} for server in names]
    rows.append(("key exchange (s_client's hello)",
                 [GROUP_NAMES.get(d.get("group"), d.get("group") or "n/a")
                  + ("+HRR" if d.get("hello_retry") else "") for d in described]))
    rows.append(("session tickets per full handshake",
                 [show(d.get("tickets"), "{:d}") for d in described]))
    rows.append(("start to first mTLS request, ms",
                 [show(result["start"][server]["first_request_ms"], "{:.0f}") for server in names]))
    rows.append(("failed requests, all windows",
                 [str(sum(by[server]["errors"] for by in result["scenarios"].values()
                          if server in by)) for server in names]))
    widths = [max(CELL, len(server) + 2) for server in names]
    lines = format_columns(result["key"], names, rows, widths)

    # Each server.py against each baseline, then against the first server.py.
    pairs = ([(mine, other) for mine in result["ratios"] for other in BASELINES
              if other in names]
             + [(mine, names[0]) for mine in result["ratios"] if mine != names[0]])
    headers = [f"{mine}/{other}" for mine, other in pairs]
    rows = []
    for name, _, _ in SCENARIOS:
        for label, field in RATIO_FIGURES:
            rows.append((f"{name}: {label}" if label == "per second" else label,
                         [show(result["ratios"][mine][other].get(name, {}).get(field), "{:.2f}")
                          for mine, other in pairs]))
    lines += format_columns("ratios (median of pairs)", headers, rows,
                            [max(CELL, len(header) + 2) for header in headers])
    return lines


def format_report(report):
    """Every key type's tables, the targets, and the conditions of the run."""
    lines = []
    for result in report["results"]:
        lines += format_result(result)
    notes = []
    if any(not r["keep_alive_supported"].get("s_server", True) for r in report["results"]):
        notes.append("n/a for s_server on keep-alive: s_server -WWW answers in HTTP/1.0 and "
                     "closes the connection after each response (checked).")
    if not report["machine"]["nodejs"] and not report["settings"]["no_node"]:
        notes.append("node is not installed, so the article's Node server was left out "
                     "(apt-get install nodejs to add it).")
    for note in notes:
        lines += wrap(note)
    lines += [""] if notes else []

    checks = [check for result in report["results"] for check in result["targets"]]
    columns = sorted({(c["key"], c["server"]) for c in checks},
                     key=lambda kc: [(c["key"], c["server"]) for c in checks].index(kc))
    headers = [f"{server} {key}" if len({s for _, s in columns}) > 1 else key
               for key, server in columns]
    rows = []
    for _, _, _, text, _ in TARGETS:
        cells = []
        for key, server in columns:
            check = next(c for c in checks if c["key"] == key and c["server"] == server
                         and c["target"] == text)
            value = check["value"]
            if value is None:
                cells.append("n/a")
            else:
                shown = f"{value:,.0f}" if check["against"] is None else f"{value:.2f}"
                cells.append(shown + (" met" if check["met"] else " MISSED"))
        rows.append((text, cells))
    lines += format_columns("performance targets", headers, rows,
                            [max(14, len(header) + 2) for header in headers], label=48, align="<")

    certs = report["make_certs_seconds"]
    if certs:
        lines.append("make certs from nothing: " + ", ".join(
            f"KEY={key} {seconds:.2f} s" for key, seconds in certs.items()))
    machine = report["machine"]
    lines += wrap(f"machine: {machine['cpu']} x {machine['cpus']}, {machine['platform']}, "
                  f"Python {machine['python']} with {machine['python_ssl']}"
                  + (f", node {machine['nodejs']}" if machine["nodejs"] else ""))
    lines += wrap(f"load generator: {report['load_generator']}")
    settings = report["settings"]
    lines += wrap(f"each figure: median of {settings['repeats']} windows of "
                  f"{settings['seconds']:g} s, the servers taking turns; each ratio: median of "
                  f"the {settings['repeats']} back-to-back pairs")
    others = report["other_cpu_share"]
    lines += wrap(f"other processes on the machine: {others['median']:.2f} cores busy "
                  f"(median of windows), {others['max']:.2f} at most")
    if others["max"] > DISTURBED:
        lines += wrap(f"warning: other work used up to {others['max']:.2f} cores during some "
                      f"windows, so some figures are disturbed: run again on a quiet machine")
    return "\n".join(lines)


def summarize_other_load(report):
    """Median and maximum CPU use by other processes, over all windows."""
    shares = [window["other_cpu_share"] for result in report["results"]
              for by_server in result["scenarios"].values() for summary in by_server.values()
              for window in summary["windows"]]
    return {"median": statistics.median(shares), "max": max(shares)}


# --- the profile: where one connection's server CPU goes -------------------
#
# A connection crosses three threads of server.py: the accept loop, the
# waiting room, and a worker of the pool. So we run server.py's own classes
# in this process, the client in another, and count each thread's own CPU
# time (time.thread_time): a thread waiting for the client costs nothing,
# as in the real server. Two ways, each in its own run:
#   timers    only the functions named in PROFILE_PARTS are timed (a wrapper
#             reads the thread's CPU clock before and after), so nearly
#             nothing is added: these are the sizes of the parts;
#   cProfile  every function call is timed. It names every function, but
#             its own cost lands on each call, so code made of many small
#             calls looks larger than it is. cProfile sees only the thread
#             that started it (before Python 3.12), so every thread the
#             server starts gets its own.

# What --profile serves: (kind, how many, what one of them is).
PROFILES = [("handshake", 200, "full mTLS connection (handshake, one GET, close)"),
            ("keepalive", 2000, "request on an open keep-alive connection")]

# The parts of a connection in a worker thread: (text, where, function).
# "server" is the server.py under test, "~" a method written in C. None of
# them calls another, so the parts add up; the rest of the worker's time is
# the pool's own work and http.server's glue.
PROFILE_PARTS = [
    ("TLS handshake: do_handshake (OpenSSL)", "ssl", "do_handshake"),
    ("TLS set-up: wrap_socket (SSL_new)", "ssl", "wrap_socket"),
    ("peek at the first bytes (MSG_PEEK)", "~", "recv"),
    ("certificate: getpeercert (DER bytes)", "ssl", "getpeercert"),
    ("certificate: read_certificate (DER reader)", "server", "read_certificate"),
    ("identity: identities_of, greeting_name", "server", "identities_of"),
    ("", "server", "greeting_name"),
    ("allow-list: refusal_for", "server", "refusal_for"),
    ("log line (log: strftime, write, flush)", "server", "log"),
    ("HTTP: handler set-up (setup: buffers)", "server", "setup"),
    ("HTTP: deadline for the next request", "server", "expect_request"),
    ("HTTP: read the request head (TLS read: fill)", "server", "fill"),
    ("HTTP: parse the request (parse_request)", "server", "parse_request"),
    ("HTTP: build the response (do_GET)", "server", "do_GET"),
    ("HTTP: send the response (TLS write)", "socket", "write"),
    ("close_notify (close_tls: unwrap)", "server", "close_tls"),
    ("close the socket, free the slot", "server", "finish_connection"),
]


def load_server_module(path):
    """Import the server.py at `path` as a module of its own (its folder on
    sys.path first: since issue 20 it imports its armour/ package from there)."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("server_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def profile_client(kind, certs, port, count, results):
    """The profile's load generator (its own process): `count` full mTLS
    connections one after the other, or `count` requests on one keep-alive
    connection; put the number of failures."""
    context = make_client_context(certs)
    failures = 0
    tls = connect(context, port) if kind == "keepalive" else None
    for _ in range(count):
        try:
            check_answer(*(request(tls) if tls else request_once(context, port)[:2]))
        except (OSError, BenchError):
            failures += 1
    if tls:
        tls.close()
    results.put(failures)


def part_owners(module, where):
    """The modules and classes where the functions of PROFILE_PARTS live:
    server.py, and since issue 20 the armour/ modules it imports from."""
    armour = [m for name, m in sorted(sys.modules.items()) if name.startswith("armour.")]
    head = (getattr(module, "RequestHead", None) or getattr(module, "DeadlineReader", None)
            or sys.modules["armour.slow_clients"].RequestHead)          # by version
    return {"server": [module, module.GreetingHandler, head, module.MTLSServer] + armour,
            "ssl": [ssl.SSLSocket, ssl.SSLContext], "socket": [socket.SocketIO],
            "~": [socket.socket]}[where]


def install_timers(module, spent, undo):
    """Wrap each function of PROFILE_PARTS so that the CPU time a worker
    thread spends in it is added to spent[function]; note in `undo` how to
    put each one back."""
    for _, where, name in PROFILE_PARTS:
        owners = [o for o in part_owners(module, where) if hasattr(o, name)]
        if owners and isinstance(owners[0], type):
            owners = owners[:1]          # a method: its class
        else:                            # a function: in each module that imports it
            owners = [o for o in owners if name in vars(o)]
        for owner in owners:             # (none: a server.py of another version, without it)
            wrap_in_timer(owner, name, spent, undo)


def wrap_in_timer(owner, name, spent, undo):
    """Replace owner.name by a wrapper that adds the CPU time a worker
    thread spends in it to spent[name]; note in `undo` how to put it back."""
    original = getattr(owner, name)

    def timed(*args, __original=original, __name=name, **kwargs):
        if not threading.current_thread().name.startswith("mtls-worker"):
            return __original(*args, **kwargs)
        started = time.thread_time()
        try:
            return __original(*args, **kwargs)
        finally:
            spent[__name] = spent.get(__name, 0.0) + time.thread_time() - started
    undo.append((owner, name, vars(owner).get(name)))
    setattr(owner, name, timed)


def serve_for_profile(module, kind, certs, count, workdir, how=None):
    """Serve `count` connections (or keep-alive requests) with server.py's
    classes in this process, measured `how`: None, "timers" or "cprofile".
    Return (CPU seconds of each thread the server started, by its name;
    the CPU time spent in each function of PROFILE_PARTS; the profilers)."""
    context = module.make_server_context(os.path.join(certs, "ca.crt"),
                                         os.path.join(certs, "server.crt"),
                                         os.path.join(certs, "server.key"))
    threads, spent, profilers = {}, {}, []
    original_run = threading.Thread.run

    def measured_run(thread):
        profiler = cProfile.Profile(time.thread_time) if how == "cprofile" else None
        if profiler:
            profilers.append(profiler)
            profiler.enable()
        try:
            original_run(thread)
        finally:
            if profiler:
                profiler.disable()
            name = "worker" if thread.name.startswith("mtls-worker") else thread.name
            threads[name] = threads.get(name, 0.0) + time.thread_time()

    spawn = multiprocessing.get_context("spawn")   # forking a process with threads is unsafe
    results = spawn.Queue()
    stderr = sys.stderr
    undo = [(threading.Thread, "run", original_run)]
    with open(os.path.join(workdir, "server.log"), "w") as log_file:
        sys.stderr = log_file        # server.py logs to stderr: to a file, as in the bench
        threading.Thread.run = measured_run
        try:
            if how == "timers":
                install_timers(module, spent, undo)
            # log= is read when MTLSServer is made: pass the (maybe timed) one.
            server = module.MTLSServer((HOST, 0), context, log=module.log)
            accept_loop = threading.Thread(target=server.serve_forever, name="accept loop")
            accept_loop.start()
            client = spawn.Process(target=profile_client,
                                   args=(kind, certs, server.server_port, count, results))
            client.start()
            failures = results.get(timeout=60 + count)
            client.join()
            server.shutdown()
            server.server_close()
            server.pool.shutdown(wait=True)    # workers end, and so do their profilers
            accept_loop.join()
        finally:
            for owner, name, original in reversed(undo):
                if original is None:          # it was inherited: uncover it again
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)
            sys.stderr = stderr
    if failures:
        raise BenchError(f"{failures} of {count} profiled requests failed; see {log_file.name}")
    return threads, spent, profilers


def profile_server(server_path, certs, label, kind, count, what):
    """Measure `count` connections (or keep-alive requests) to the server.py
    at `server_path`; return the lines that say where the CPU time of one
    goes, with the timers and with cProfile."""
    module = load_server_module(server_path)
    workdir = tempfile.mkdtemp(prefix="mtls-profile-")
    try:
        serve_for_profile(module, kind, certs, count // 10, workdir)        # warm up
        plain, _, _ = serve_for_profile(module, kind, certs, count, workdir)
        timed, spent, _ = serve_for_profile(module, kind, certs, count, workdir, "timers")
        profiled, _, profilers = serve_for_profile(module, kind, certs, count, workdir,
                                                   "cprofile")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    every = pstats.Stats(*profilers)
    owners = {module.__file__: "server", ssl.__file__: "ssl", socket.__file__: "socket"}
    owners.update((m.__file__, "server") for name, m in list(sys.modules.items())
                  if name.startswith("armour."))         # server.py's armour/ (issue 20)

    def cprofile_seconds(where, name):
        """The cumulative time cProfile gives the function `name` in `where`."""
        found = 0.0
        for (path, _, function), (_, _, _, cumulative, _) in every.stats.items():
            c_method = path == "~" and function == f"<method '{name}' of '_socket.socket' objects>"
            if c_method if where == "~" else (owners.get(path) == where and function == name):
                found += cumulative
        return found

    ms = 1000 / count                    # seconds for all -> ms for one
    rows = [("accept loop (main thread): accept, hand over", "accept loop"),
            ("waiting room (its thread): selector, hand over", "waiting-room")]
    table = [(text, timed.get(thread, 0.0) * ms, profiled.get(thread, 0.0) * ms)
             for text, thread in rows]
    parts_timed = parts_profiled = 0.0
    for text, where, name in PROFILE_PARTS:
        seconds_timed, seconds_profiled = spent.get(name, 0.0), cprofile_seconds(where, name)
        parts_timed += seconds_timed
        parts_profiled += seconds_profiled
        if text:
            table.append((f"worker: {text}", seconds_timed * ms, seconds_profiled * ms))
        else:                                         # counted with the row above
            last = table.pop()
            table.append((last[0], last[1] + seconds_timed * ms, last[2] + seconds_profiled * ms))
    table.append(("worker: the rest (pool, http.server glue)",
                  (timed.get("worker", 0.0) - parts_timed) * ms,
                  (profiled.get("worker", 0.0) - parts_profiled) * ms))
    unit = "ms/conn" if kind == "handshake" else "ms/req"
    total_timed = sum(row[1] for row in table)
    lines = wrap(f"Where the server CPU of one {what} goes ({label}, {server_path}; {count} of "
                 f"them one at a time, the client in another process; each server thread's "
                 f"own CPU time):")
    lines.append(f"{'':<52}{unit:>8}{'share':>7}{'cProfile':>10}{'share':>7}")
    total_profiled = sum(row[2] for row in table)
    for text, mine, theirs in table:
        lines.append(f"{text:<52}{mine:>8.3f}{mine / total_timed:>7.0%}"
                     f"{theirs:>10.3f}{theirs / total_profiled:>7.0%}")
    lines.append(f"{'total':<52}{total_timed:>8.3f}{'':>7}{total_profiled:>10.3f}")
    lines.append(f"{'total with nothing measured (all server threads)':<52}"
                 f"{sum(plain.values()) * ms:>8.3f}")
    lines.append("Functions with the most CPU of their own (cProfile), all server threads:")
    top = sorted(every.stats.items(), key=lambda item: item[1][2], reverse=True)[:10]
    for (path, line, function), (_, calls, own, _, _) in top:
        where = f"{os.path.basename(path)}:{line}" if path != "~" else ""
        name = f"{where} {function}".strip()
        lines.append(f"{own * ms:>9.3f} {unit} {calls / count:>5.1f} calls  {name[:WIDTH - 30]}")
    return lines


PROFILE_NOTE = ("First column: only the functions named are timed, so the parts have their real "
                "size. cProfile times every call, and its own cost lands on each one, so code "
                "made of many small calls (HTTP parsing, the DER reader) looks larger there. "
                "Per keep-alive request, the one handshake of the connection is spread over all "
                "requests.")


# --- main ----------------------------------------------------------------

def parse_server_option(text):
    """--server NAME=PATH or --server PATH -> (NAME or None, absolute PATH)."""
    name, sep, path = text.rpartition("=")
    if not sep:
        name, path = None, text
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{text!r}: no file {path} -- pass the path of a "
                                         f"server.py, e.g. --server before=/tmp/before/server.py")
    return name, path


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line, as server.py prints it."""

    def error(self, message):
        fix = "" if " -- " in message else f" -- see {self.prog} --help"
        self.exit(2, f"error: bad option: {message}{fix}\n")


def parse_args(argv):
    """Read the command line."""
    p = ArgumentParser(
        description="Benchmark server.py against openssl s_server and the article's Node "
                    "server (mTLS, loopback).",
        epilog="example: python3 bench/bench.py --key ec --seconds 1")
    p.add_argument("--certs", metavar="DIR",
                   help="benchmark the certificates in DIR (default: make fresh ones, timed)")
    p.add_argument("--key", choices=["rsa", "ec", "both"],
                   help="key type(s) to make and benchmark (default both; not with --certs)")
    p.add_argument("--seconds", type=float, default=0.3, metavar="N",
                   help="length of each measurement window (default 0.3; 13 windows per "
                        "repeat and key type with node)")
    p.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="windows per figure; the median is reported (default 5)")
    p.add_argument("--server", action="append", type=parse_server_option, metavar="[NAME=]PATH",
                   help="the server.py to measure (repeatable, e.g. an older version; "
                        "default: this project's server.py)")
    p.add_argument("--no-node", action="store_true", help="leave the Node server out")
    p.add_argument("--profile", action="store_true",
                   help="profile the first --server instead: where one connection's CPU goes")
    p.add_argument("--json", default=DEFAULT_JSON, metavar="FILE",
                   help="where to write the results (default bench/results.json)")
    args = p.parse_args(argv)
    if args.certs and args.key:
        p.error("--certs and --key exclude each other: --certs DIR benchmarks the key type in DIR")
    if args.seconds <= 0 or args.repeats < 1:
        p.error("--seconds must be positive and --repeats at least 1")
    if args.profile and sys.version_info >= (3, 12):
        p.error("--profile needs Python 3.9 to 3.11: from 3.12 on, cProfile allows one "
                "profiler per process, not one per thread -- run it with python3.11")
    args.server = name_servers(p, args.server or [(None, SERVER_PY)])
    return args


def name_servers(parser, servers):
    """Give each server.py a unique name: the one given, "server.py" when
    there is only one, else the name of its folder."""
    named = []
    for name, path in servers:
        if name is None:
            name = "server.py" if len(servers) == 1 else os.path.basename(os.path.dirname(path))
        named.append((name, path))
    names = [name for name, _ in named]
    if len(set(names)) < len(names) or set(names) & set(BASELINES):
        parser.error(f"--server names {', '.join(names)} must differ from each other and from "
                     f"{', '.join(BASELINES)} -- name them, e.g. --server before=PATH")
    return named


def main(argv=None):
    """Make certificates, measure every server, print the tables, write JSON."""
    args = parse_args(argv)
    if not os.path.exists("/proc/self/stat"):
        print("error: this benchmark reads CPU time from /proc: run it on Linux", file=sys.stderr)
        return 2
    for tool in ("openssl", "make"):
        if shutil.which(tool) is None:
            print(f"error: '{tool}' not found: the benchmark runs it -- install it "
                  f"(apt-get install {tool})", file=sys.stderr)
            return 2
    report = {"machine": describe_machine(), "load_generator": LOAD_GENERATOR,
              "settings": {"seconds": args.seconds, "repeats": args.repeats,
                           "no_node": args.no_node},
              "make_certs_seconds": {}, "results": []}
    starters = [server_py_starter(name, path) for name, path in args.server]
    baselines = [start_s_server]
    if report["machine"]["nodejs"] and not args.no_node:
        baselines.append(start_node)
    scratch = tempfile.mkdtemp(prefix="mtls-bench-certs-")
    try:
        if args.certs:
            certs = os.path.abspath(args.certs)   # the servers run in a temporary folder
            check_certs(certs)
            plan = [(describe_key(certs), certs)]
        else:
            plan = []
            for key in (["rsa", "ec"] if args.key in (None, "both") else [args.key]):
                folder = os.path.join(scratch, key)
                report["make_certs_seconds"][key] = make_certs(folder, key)
                plan.append((describe_key(folder), folder))
        if args.profile:
            for label, certs in plan:
                for kind, count, what in PROFILES:
                    print("\n".join(profile_server(args.server[0][1], certs, label, kind,
                                                   count, what)))
                    print()
            print("\n".join(wrap(PROFILE_NOTE)))
            return 0
        for label, certs in plan:
            result = bench_key_type(label, certs, args.seconds, args.repeats, starters, baselines)
            result["targets"] = check_targets(result)
            report["results"].append(result)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["other_cpu_share"] = summarize_other_load(report)
    if sys.stderr.isatty():
        sys.stderr.write("\x1b[K")
    print(format_report(report))
    with open(args.json, "w") as out:
        json.dump(report, out, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
