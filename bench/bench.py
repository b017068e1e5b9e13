#!/usr/bin/env python3
"""bench.py: server.py next to `openssl s_server`, measured in one run.

What it measures, for RSA-2048 and for ECDSA P-256 certificates:

  full handshakes/s   new TCP connection + full mTLS handshake (the client
                      presents its certificate) + one GET, then close;
                      at concurrency 1 and 4
  resumed hs/s        the same, but resuming a TLS 1.3 session (a ticket from
                      the previous connection): no certificates, no signatures;
                      at concurrency 1
  keep-alive req/s    GETs over connections that are already open;
                      at concurrency 1 and 4
  latency p50/p99     of each of those, in milliseconds, as the client sees it
  server CPU ms/hs    the server process's own user+system CPU time, read from
                      /proc/PID/stat before and after the window, divided by the
                      handshakes served in it (the load generator is not in it)
  start to first hs   from starting the server process to the first successful
                      mTLS request it answers (median of 3 starts)
  make certs          seconds to build the whole PKI from nothing, per key type

Each figure is given for server.py, for s_server on the same certificates, and
as the ratio server.py / s_server, next to the project's performance targets (README, Performance).

The baseline is `openssl s_server -Verify 1 -verify_return_error -WWW`,
serving a file that holds the same greeting server.py sends. s_server is
OpenSSL's test server: one process, one connection at a time, HTTP/1.0, and
it closes the connection after each response. So it has no keep-alive
figures: the table says n/a, after checking (not assuming) that a second
request on the same connection gets no answer.

The load generator is the same for both servers: N worker processes
(multiprocessing, so that clients do not share one GIL), each using Python's
ssl module and a small raw-socket HTTP/1.1 client that sends one fixed request
and reads the status line, headers and body. It is cheaper per request than
http.client, which leaves more of a small machine to the server. Everything
talks to 127.0.0.1 only; the load generator and the server share the CPUs.

To limit noise the two servers are measured in the same run, in alternating
order, and each figure is the median of --repeats windows of --seconds each.
Other work on the machine still shows, so each window also records how much
CPU other processes used, and the table warns when that was significant.

Reads:   ../server.py and ../Makefile; certificates made by `make certs` into
         a temporary folder (or the ones in --certs DIR)
Writes:  the table to stdout; JSON to bench/results.json (or --json FILE)
Run:     python3 bench/bench.py                     (both key types, about 45 s)
         make bench                                 (the same)
         python3 bench/bench.py --key ec --seconds 2 --repeats 5
         python3 bench/bench.py --certs certs       (the certificates you have)

Reading order: settings, certificates, the two servers, the load generator,
one measurement, the whole run, the table, main.
"""

import argparse
import json
import multiprocessing
import os
import platform
import queue
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
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

# (name, connection kind, concurrency), in the order they are measured.
SCENARIOS = [
    ("full handshake, c=1", "handshake", 1),
    ("full handshake, c=4", "handshake", 4),
    ("resumed handshake, c=1", "resumed", 1),
    ("keep-alive, c=1", "keepalive", 1),
    ("keep-alive, c=4", "keepalive", 4),
]

LOAD_GENERATOR = ("multiprocessing worker processes (one per concurrent client), each with "
                  "Python ssl + a raw-socket HTTP/1.1 client; same generator for both servers")


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


# --- the two servers -----------------------------------------------------

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

    def stop(self):
        """Stop the process, and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server_py(certs, workdir):
    """Start server.py on a free port of 127.0.0.1, as a user would."""
    command = [sys.executable, SERVER_PY, "--host", HOST, "--port", "0",
               "--ca", os.path.join(certs, "ca.crt"), "--cert", os.path.join(certs, "server.crt"),
               "--key", os.path.join(certs, "server.key")]
    # Its log goes to a file (a pipe nobody reads would fill up and stall the
    # server mid-benchmark). Its first line says where it serves:
    #   12:00:00 serving https://127.0.0.1:41234/ (pid 99): client certificate ...
    return start_server("server.py", command, workdir, r"serving https://[^:]+:(\d+)/", certs)


def start_s_server(certs, workdir):
    """Start openssl s_server on a free port of 127.0.0.1, demanding a client
    certificate, serving the greeting as a file (-WWW)."""
    with open(os.path.join(workdir, PAGE), "wb") as page:
        page.write(GREETING)
    command = ["openssl", "s_server", "-accept", f"{HOST}:0",
               "-Verify", "1", "-verify_return_error",
               "-CAfile", os.path.join(certs, "ca.crt"),
               "-cert", os.path.join(certs, "server.crt"), "-key", os.path.join(certs, "server.key"),
               "-WWW"]
    # s_server prints "ACCEPT 127.0.0.1:41235" on stdout once it listens.
    return start_server("s_server", command, workdir, r"ACCEPT \S+:(\d+)", certs)


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


# --- the load generator: one client, the same for both servers -------------

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

    Enough HTTP for these two servers: a Content-Length body (server.py), or
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
    time.sleep(seconds)
    cpu_used, elapsed = server.cpu_seconds() - cpu_before, time.monotonic() - started
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


# --- the whole run: per key type, both servers, interleaved ----------------

def bench_key_type(label, certs, seconds, repeats):
    """Measure server.py and s_server on the certificates in `certs`."""
    workdir = tempfile.mkdtemp(prefix="mtls-bench-")
    servers = []
    try:
        servers.append(start_timed(start_server_py, certs, workdir))
        servers.append(start_timed(start_s_server, certs, workdir))
        keep_alive = {server.name: supports_keep_alive(certs, server.port) for server in servers}
        windows = {}
        for repeat in range(repeats):
            # Alternate which server goes first, so a drift in the machine's
            # load (other jobs, CPU boost) does not always favour the same one.
            order = servers if repeat % 2 == 0 else servers[::-1]
            for name, kind, concurrency in SCENARIOS:
                for server in order:
                    if kind == "keepalive" and not keep_alive[server.name]:
                        continue
                    progress(f"{label}: {name}, {server.name} ({repeat + 1}/{repeats})")
                    window = measure(server, certs, kind, concurrency, seconds)
                    windows.setdefault(name, {}).setdefault(server.name, []).append(window)
        return {
            "key": label,
            "start": {server.name: {"command": server.process.args,
                                    "first_request_ms": statistics.median(server.start_samples),
                                    "first_request_samples_ms": server.start_samples}
                      for server in servers},
            "keep_alive_supported": keep_alive,
            "scenarios": {name: {server: summarize(runs) for server, runs in by_server.items()}
                          for name, by_server in windows.items()},
            "ratios": {name: paired_ratios(by_server) for name, by_server in windows.items()},
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
          "server_cpu_share", "load_generator_cpu_share")


def summarize(runs):
    """Median of each figure over the repeated windows, plus the raw windows."""
    summary = {"windows": runs}
    for field in FIELDS + ("other_cpu_share",):
        values = [run[field] for run in runs if run[field] is not None]
        summary[field] = statistics.median(values) if values else None
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["other_cpu_share_max"] = max(run["other_cpu_share"] for run in runs)
    return summary


def paired_ratios(by_server):
    """server.py / s_server for each figure: the median of the ratios of the
    two windows of each repeat, measured back to back. Pairing cancels the
    slow drifts in a shared machine's speed better than a ratio of medians."""
    ours, theirs = by_server.get("server.py"), by_server.get("s_server")
    ratios = {}
    for field in FIELDS:
        pairs = [a[field] / b[field] for a, b in zip(ours or [], theirs or [])
                 if a[field] is not None and b[field]]
        ratios[field] = statistics.median(pairs) if pairs else None
    return ratios


def progress(message):
    """Say on stderr what is being measured now (stdout is for the table)."""
    sys.stderr.write(f"  measuring {message}\x1b[K\r" if sys.stderr.isatty() else "")
    sys.stderr.flush()


def describe_machine():
    """Name the machine: OS, kernel, CPU model and count, Python, OpenSSL."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = re.search(r"model name\s*:\s*(.*)", cpuinfo.read()).group(1)
    except (OSError, AttributeError):
        pass
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {"platform": platform.platform(), "node": platform.node(), "cpu": cpu,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "python_ssl": ssl.OPENSSL_VERSION, "openssl_cli": openssl}


# --- the table -----------------------------------------------------------

# The performance targets (README, Performance): (scenario, figure, text, test of (ratio, server.py's figure)).
TARGETS = [
    ("full handshake, c=4", "per_second", "full handshakes/s, c=4: ratio >= 1.0",
     lambda ratio, ours: ratio >= 1.0),
    ("full handshake, c=1", "server_cpu_ms_per_request", "server CPU/handshake, c=1: ratio <= 1.2",
     lambda ratio, ours: ratio <= 1.2),
    ("full handshake, c=4", "server_cpu_ms_per_request", "server CPU/handshake, c=4: ratio <= 1.2",
     lambda ratio, ours: ratio <= 1.2),
    ("keep-alive, c=1", "per_second", "keep-alive req/s, c=1: >= 2,000",
     lambda ratio, ours: ours >= 2000),
]

FIGURES = [   # (row label under each scenario, figure, format)
    ("per second", "per_second", "{:,.0f}"),
    ("  latency p50, ms", "p50_ms", "{:.2f}"),
    ("  latency p99, ms", "p99_ms", "{:.2f}"),
    ("  server CPU ms per request", "server_cpu_ms_per_request", "{:.3f}"),
    ("  server CPU, cores busy", "server_cpu_share", "{:.2f}"),
    ("  load generator CPU, cores", "load_generator_cpu_share", "{:.2f}"),
]

LABEL, CELL, RATIO = 34, 10, 7      # column widths


def check_targets(result):
    """Evaluate the performance targets on one key type's result; return a list."""
    checks = []
    for name, field, text, test in TARGETS:
        ours = result["scenarios"].get(name, {}).get("server.py", {}).get(field)
        theirs = result["scenarios"].get(name, {}).get("s_server", {}).get(field)
        ratio = result["ratios"].get(name, {}).get(field)
        met = ours is not None and test(ratio if ratio is not None else float("nan"), ours)
        checks.append({"key": result["key"], "scenario": name, "figure": field, "target": text,
                       "server_py": ours, "s_server": theirs, "ratio": ratio, "met": bool(met)})
    return checks


def format_row(label, cells, fmt):
    """One table row: for each key type, server.py, s_server and their ratio
    (a number, None for n/a, or "" for no ratio at all)."""
    row = f"{label:<{LABEL}}"
    for ours, theirs, ratio in cells:
        for value in (ours, theirs):
            row += f"{fmt.format(value) if value is not None else 'n/a':>{CELL}}"
        row += f"{'n/a' if ratio is None else ratio if ratio == '' else f'{ratio:.2f}':>{RATIO}}"
    return row.rstrip()


def format_table(report):
    """The results as one plain-text table, the targets, and the conditions."""
    results = report["results"]
    lines = [(" " * LABEL + "".join(f"{r['key']:^{2 * CELL + RATIO}}" for r in results)).rstrip(),
             " " * LABEL + f"{'server.py':>{CELL}}{'s_server':>{CELL}}{'ratio':>{RATIO}}" * len(results)]

    def figure(result, name, server, field):
        return result["scenarios"].get(name, {}).get(server, {}).get(field)

    for name, _, _ in SCENARIOS:
        for label, field, fmt in FIGURES:
            cells = [(figure(r, name, "server.py", field), figure(r, name, "s_server", field),
                      r["ratios"].get(name, {}).get(field)) for r in results]
            lines.append(format_row(f"{name}: {label}" if label == "per second" else label,
                                    cells, fmt))
    starts = [(r["start"]["server.py"]["first_request_ms"], r["start"]["s_server"]["first_request_ms"])
              for r in results]
    lines.append(format_row("start to first mTLS request, ms",
                            [(ours, theirs, ours / theirs) for ours, theirs in starts], "{:.0f}"))
    errors = [[sum(by[s]["errors"] for by in r["scenarios"].values() if s in by)
               for s in ("server.py", "s_server")] + [""] for r in results]
    lines.append(format_row("failed requests, all windows", errors, "{:d}"))
    if not all(r["keep_alive_supported"]["s_server"] for r in results):
        lines.append("n/a: s_server -WWW answers in HTTP/1.0 and closes the connection after each "
                     "response (checked), so it has no keep-alive figures.")

    lines += ["", (f"{'performance targets':<{LABEL + 8}}"
                   + "".join(f"{r['key']:<16}" for r in results)).rstrip()]
    for index, (_, _, text, _) in enumerate(TARGETS):
        cells = []
        for r in results:
            check = r["targets"][index]
            value = check["ratio"] if "ratio" in text else check["server_py"]
            shown = "n/a" if value is None else (f"{value:.2f}" if "ratio" in text else f"{value:,.0f}")
            cells.append(f"{shown + (' met' if check['met'] else ' MISSED'):<16}")
        lines.append((f"{text:<{LABEL + 8}}" + "".join(cells)).rstrip())

    lines.append("")
    certs = report["make_certs_seconds"]
    if certs:
        lines.append("make certs from nothing: " + ", ".join(
            f"KEY={key} {seconds:.2f} s" for key, seconds in certs.items()))
    machine = report["machine"]
    lines.append(f"machine: {machine['cpu']} x {machine['cpus']}, {machine['platform']}, "
                 f"Python {machine['python']}, {machine['python_ssl']}")
    lines.append(f"load generator: {report['load_generator']}")
    lines.append(f"each figure: median of {report['settings']['repeats']} windows of "
                 f"{report['settings']['seconds']:g} s, the two servers alternating; each ratio: "
                 f"median of the {report['settings']['repeats']} back-to-back pairs")
    others = report["other_cpu_share"]
    lines.append(f"other processes on the machine: {others['median']:.2f} cores busy "
                 f"(median of windows), {others['max']:.2f} at most")
    if others["max"] > DISTURBED:
        lines.append(f"warning: other work used up to {others['max']:.2f} cores during some "
                     f"windows, so some figures are disturbed: run again on a quiet machine")
    return "\n".join(lines)


def summarize_other_load(report):
    """Median and maximum CPU use by other processes, over all windows."""
    shares = [window["other_cpu_share"] for result in report["results"]
              for by_server in result["scenarios"].values() for summary in by_server.values()
              for window in summary["windows"]]
    return {"median": statistics.median(shares), "max": max(shares)}


# --- main ----------------------------------------------------------------

def parse_args(argv):
    """Read the command line."""
    p = argparse.ArgumentParser(
        description="Benchmark server.py against openssl s_server (mTLS, loopback).",
        epilog="example: python3 bench/bench.py --key ec --seconds 2")
    p.add_argument("--certs", metavar="DIR",
                   help="benchmark the certificates in DIR (default: make fresh ones, timed)")
    p.add_argument("--key", choices=["rsa", "ec", "both"],
                   help="key type(s) to make and benchmark (default both; not with --certs)")
    p.add_argument("--seconds", type=float, default=0.5, metavar="N",
                   help="length of each measurement window (default 0.5; 16 windows per "
                        "repeat with --key both)")
    p.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="windows per figure; the median is reported (default 5)")
    p.add_argument("--json", default=DEFAULT_JSON, metavar="FILE",
                   help="where to write the results (default bench/results.json)")
    args = p.parse_args(argv)
    if args.certs and args.key:
        p.error("--certs and --key exclude each other: --certs DIR benchmarks the key type in DIR")
    if args.seconds <= 0 or args.repeats < 1:
        p.error("--seconds must be positive and --repeats at least 1")
    return args


def main(argv=None):
    """Make certificates, measure both servers, print the table, write JSON."""
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
              "settings": {"seconds": args.seconds, "repeats": args.repeats},
              "make_certs_seconds": {}, "results": []}
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
        for label, certs in plan:
            result = bench_key_type(label, certs, args.seconds, args.repeats)
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
    print(format_table(report))
    with open(args.json, "w") as out:
        json.dump(report, out, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
