#!/usr/bin/env python3
"""attack.py: the scripted attacks of issue 19 against a real server.py, with numbers.

Each scenario starts its own server.py process on 127.0.0.1 (port 0, the
certificates of `make scenarios` in a temporary folder, or --certs DIR),
attacks it from this machine, and prints what a good client saw:

  stalled N     N connections each send a real ClientHello (made with
                ssl.MemoryBIO: no certificate needed) and go silent. Then
                a good client asks 5 times: is it greeted, and how fast?
  reopen N S    the same, kept up for S seconds: the attacker (its own
                process) reopens each connection as soon as the server
                closes it, at most N open at once; meanwhile the good
                client asks every 0.2 s. Prints the share it got answered,
                and how many connections a second the attacker reopened.
  forbidden N   N clients with a valid certificate that is not on --allow
                each finish the handshake and send one byte; then the
                allowed client asks: greeted, and how fast?
  idle N        N authenticated clients keep their keep-alive connection
                open after a greeting (as a connection pool does). Then: a
                new client's greeting time, whether all N are answered
                again, the server's threads, and its memory per connection.

Reads:   ../server.py (or --server PATH, e.g. an older copy) and ../Makefile
Writes:  the results to stdout, one line each
Run:     python3 bench/attack.py                  (every scenario of issue 19, a few minutes)
         python3 bench/attack.py stalled 1000
         python3 bench/attack.py idle 2000 --server /tmp/server-old.py
"""

import argparse
import multiprocessing
import os
import re
import resource
import selectors
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import client  # noqa: E402  (after the path fix above)

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


class Server:
    """server.py in its own process, on a free port, its log kept in memory."""

    def __init__(self, path, certs, *options):
        command = [sys.executable, path, "--host", HOST, "--port", "0",
                   "--ca", os.path.join(certs, "ca.crt"), "--cert",
                   os.path.join(certs, "server.crt"), "--key", os.path.join(certs, "server.key")]
        self.proc = subprocess.Popen(command + list(options), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines, self.started = [], threading.Event()
        threading.Thread(target=self.read_log, daemon=True).start()
        if not self.started.wait(20):
            self.stop()
            raise SystemExit("error: server.py did not start:\n" + "\n".join(self.lines))
        self.port = int(re.search(r":(\d+)/", self.lines[-1]).group(1))
        self.url = f"https://localhost:{self.port}/"

    def read_log(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if " serving https://" in line:
                self.started.set()

    def threads(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def contexts(certs):
    """The allowed client's TLS settings, and the forbidden one's."""
    ca = os.path.join(certs, "ca.crt")
    good = client.make_client_context(ca, os.path.join(certs, "client.crt"),
                                      os.path.join(certs, "client.key"))
    other = client.make_client_context(ca, os.path.join(certs, "other-client.crt"),
                                       os.path.join(certs, "other-client.key"))
    return good, other


def client_hello(context):
    """The bytes of a real ClientHello, made without a network."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def greet(srv, context, timeout=5.0):
    """One request by a good client: (seconds, None) if greeted, else (seconds, why)."""
    started = time.monotonic()
    try:
        status, body = client.fetch(srv.url, context, timeout=timeout)
        why = None if status == 200 else f"HTTP {status}"
    except client.Failure as failure:
        why = failure.label
    return time.monotonic() - started, why


def report_greetings(label, tries):
    """Print how a good client fared: greeted how often, and how fast."""
    ok = [s for s, why in tries if why is None]
    failed = sorted({why for _, why in tries if why})
    print(f"{label}: good client greeted {len(ok)}/{len(tries)}"
          + (f", slowest {max(ok) * 1000:.0f} ms, median {statistics.median(ok) * 1000:.0f} ms"
             if ok else "") + (f"; failures: {', '.join(failed)}" if failed else ""), flush=True)


def stalled(srv, certs, count):
    good, _ = contexts(certs)
    hello, crowd, answered = client_hello(good), [], 0
    for _ in range(count):
        sock = socket.create_connection((HOST, srv.port), timeout=5)
        sock.sendall(hello)
        crowd.append(sock)
    for sock in crowd:                 # the server's answer to each hello (or its hang-up)
        try:
            answered += bool(sock.recv(5))
        except OSError:
            pass
    print(f"stalled {count}: the server answered {answered} hellos", flush=True)
    tries = [greet(srv, good) for _ in range(5)]
    report_greetings(f"stalled {count}", tries)
    print(f"stalled {count}: server threads {srv.threads()}", flush=True)
    for sock in crowd:
        sock.close()


def attacker(port, count, seconds, hello, results):
    """(Its own process) Keep `count` stalled-hello connections open for
    `seconds`, reopening each one the server closes; put how many were reopened."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    selector = selectors.DefaultSelector()

    def open_one():
        try:
            sock = socket.create_connection((HOST, port), timeout=5)
            sock.sendall(hello)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            return True
        except OSError:
            return False
    opened = sum(open_one() for _ in range(count))
    reopened, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in selector.select(0.2):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:                       # the server closed it: open another at once
                selector.unregister(key.fileobj)
                key.fileobj.close()
                reopened += open_one()
        while len(selector.get_map()) < count and time.monotonic() < end:
            if not open_one():                 # (a connect refused or timed out)
                break
            reopened += 1
    results.put((opened, reopened))
    for key in list(selector.get_map().values()):
        key.fileobj.close()


def reopen(srv, certs, count, seconds):
    good, _ = contexts(certs)
    results = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(
        target=attacker, args=(srv.port, count, seconds, client_hello(good), results))
    proc.start()
    fds, done = [], threading.Event()

    def count_fds():                           # the server's open files, 10 times a second
        while not done.wait(0.1):
            fds.append(srv.fds())
    sampler = threading.Thread(target=count_fds)
    sampler.start()
    time.sleep(min(3.0, seconds / 4))          # the attack builds up first
    tries, end = [], time.monotonic() + seconds - min(3.0, seconds / 4)
    while time.monotonic() < end:
        tries.append(greet(srv, good))
        time.sleep(0.2)
    opened, reopened = results.get(timeout=seconds + 60)
    proc.join()
    done.set()
    sampler.join()
    ok = sum(1 for _, why in tries if why is None)
    report_greetings(f"reopen {count} for {seconds} s", tries)
    print(f"reopen {count} for {seconds} s: {ok / len(tries) * 100:.0f}% answered; the attacker "
          f"opened {opened}, then reopened {reopened} ({reopened / seconds:.0f}/s)", flush=True)
    print(f"reopen {count} for {seconds} s: the server's open files peaked at {max(fds)} "
          f"(median {statistics.median(fds):.0f}; --max-pending 1000, the default)", flush=True)


def forbidden(srv, certs, count):
    good, other = contexts(certs)
    crowd = []

    def one(_):
        tls = other.wrap_socket(socket.create_connection((HOST, srv.port), timeout=10),
                                server_hostname="localhost")
        tls.sendall(b"G")
        return tls
    with ThreadPoolExecutor(4) as pool:
        crowd = list(pool.map(one, range(count)))
    tries = [greet(srv, good) for _ in range(5)]
    report_greetings(f"forbidden {count} (one byte each)", tries)
    for tls in crowd:
        tls.close()


def read_response(tls):
    """Read one response (headers and a Content-Length body); return its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return body


def idle(srv, certs, count):
    good, _ = contexts(certs)
    before = srv.rss_kb()

    def one(_):
        try:
            tls = good.wrap_socket(socket.create_connection((HOST, srv.port), timeout=10),
                                   server_hostname="localhost")
            tls.sendall(REQUEST)
            return tls if read_response(tls).startswith(b"Hello") else None
        except OSError:
            return None
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        kept = list(pool.map(one, range(count)))
    held = [tls for tls in kept if tls is not None]
    print(f"idle {count}: {len(held)} connected and greeted in {time.monotonic() - started:.1f} s",
          flush=True)
    time.sleep(0.5)                    # let the server settle (a measurement, not a sync)
    rss, threads = srv.rss_kb(), srv.threads()
    tries = [greet(srv, good) for _ in range(5)]
    report_greetings(f"idle {count}, a new client", tries)
    again = 0
    for tls in held:
        try:
            tls.sendall(REQUEST)
            again += read_response(tls).startswith(b"Hello")
        except OSError:
            pass
    print(f"idle {count}: {again}/{count} answered again; server threads {threads}; RSS "
          f"{before / 1024:.0f} MB -> {rss / 1024:.0f} MB, "
          f"{(rss - before) / max(len(held), 1):.0f} KB per idle connection", flush=True)
    for tls in held:
        tls.close()


def make_certs(folder):
    """The certificates of `make scenarios` (the allowed and the forbidden client) in folder."""
    done = subprocess.run(["make", "-C", ROOT, f"CERTS={folder}", "scenarios"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("error: make scenarios failed:\n" + done.stdout + done.stderr)


def main(argv=None):
    p = argparse.ArgumentParser(description="Scripted attacks on server.py (issue 19), measured.",
                                epilog="example: python3 bench/attack.py stalled 1000")
    p.add_argument("scenario", nargs="?", choices=["stalled", "reopen", "forbidden", "idle"],
                   help="one scenario (default: all of issue 19's)")
    p.add_argument("count", nargs="?", type=int, help="connections (default: issue 19's)")
    p.add_argument("seconds", nargs="?", type=int, default=20, help="reopen: how long (default 20)")
    p.add_argument("--server", default=os.path.join(ROOT, "server.py"),
                   help="the server.py to attack (default: this project's)")
    p.add_argument("--certs", help="a folder made by `make scenarios` (default: make one)")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    certs = args.certs
    folder = None
    if certs is None:
        folder = tempfile.mkdtemp(prefix="mtls-attack-")
        certs = os.path.join(folder, "certs")
        make_certs(certs)
    plan = {"stalled": [("stalled", 130), ("stalled", 1000)], "reopen": [("reopen", 1000)],
            "forbidden": [("forbidden", 128)], "idle": [("idle", 2000)]}
    runs = ([(args.scenario, args.count)] if args.scenario and args.count else
            plan[args.scenario] if args.scenario else [r for rs in plan.values() for r in rs])
    print(f"attacking {args.server}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    try:
        for scenario, count in runs:
            options = ["--allow", "cn:my-client"] if scenario == "forbidden" else []
            srv = Server(args.server, certs, *options)
            try:
                if scenario == "reopen":
                    reopen(srv, certs, count, args.seconds)
                else:
                    globals()[scenario](srv, certs, count)
                summaries = [l for l in srv.lines if " refused " in l[:20]]
                print(f"{scenario} {count}: {len(srv.lines)} log lines"
                      + (f", {len(summaries)} of them counts of a flood" if summaries else ""),
                      flush=True)
            finally:
                srv.stop()
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
