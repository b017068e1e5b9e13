"""The README cannot rot: its code runs, and its quotes are what the code prints.

- The minimal server and client of section 3 are the files in stages/, shown
  in README.md as they stand; they run against each other, against server.py
  and against client.py, on the test PKI. So does stage 2, the allow-list.
- Every server log line and client.py error line the README, or a docs/
  page that took the README's quotes with it (QUOTED_DOCS), quotes (in
  backticks, starting with accepted/rejected/forbidden/closed or "error: ")
  must match a line that server.py or client.py really printed in a run of
  every failure-gallery scenario, or of the hostile clients of the
  robustness table. `PORT` stands for any port, `N` for any number, and
  `...` for any text.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from tests.support import PYTHON, ROOT, RunningServer, path, pki, run_script

README = os.path.join(ROOT, "README.md")
# Pages that hold quotes moved out of the README: checked the same way.
QUOTED_DOCS = [os.path.join(ROOT, "docs", name) for name in ("robustness.md",)]


def readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def code_block(name):
    """The fenced code block that follows `<!-- readme-test: NAME -->`."""
    match = re.search(r"<!-- readme-test: %s -->\s*```python\n(.*?)```" % re.escape(name),
                      readme(), re.DOTALL)
    if match is None:
        raise AssertionError(f"README.md has no code block marked readme-test: {name}")
    return match.group(1)


def stage(name):
    """The source of stages/NAME.py."""
    with open(os.path.join(ROOT, "stages", name + ".py"), encoding="utf-8") as f:
        return f.read()


def copy_stage(folder, name, port):
    """stages/NAME.py, on `port`, into FOLDER/stages/ (it finds FOLDER/certs); its path."""
    os.makedirs(os.path.join(folder, "stages"), exist_ok=True)
    copy = os.path.join(folder, "stages", name + ".py")
    with open(copy, "w") as f:
        f.write(stage(name).replace("3000", str(port)))
    return copy


def start_in(folder, name, port):
    """Run stages/NAME.py beside FOLDER/certs, on `port`; wait until it listens."""
    proc = subprocess.Popen([PYTHON, copy_stage(folder, name, port)], cwd=folder,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 10          # until it listens (bounded)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StageServer(unittest.TestCase):
    """A stage's server (SERVER) running for the class, beside the test PKI."""

    SERVER = None

    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="mtls-stage-")
        os.symlink(pki(), os.path.join(cls.folder, "certs"))
        cls.port = free_port()
        cls.url = f"https://localhost:{cls.port}/"
        cls.server = start_in(cls.folder, cls.SERVER, cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(10)
        cls.server.stdout.close()
        shutil.rmtree(cls.folder, ignore_errors=True)


class MinimalCodeTest(StageServer):
    """Section 3's minimal server and client work, and refuse what they should."""

    SERVER = "minimal_server"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.client = copy_stage(cls.folder, "minimal_client", cls.port)

    def test_the_readme_shows_the_stage_files_as_they_are(self):
        self.assertEqual(code_block("minimal-server"), stage("minimal_server"))
        self.assertEqual(code_block("minimal-client"), stage("minimal_client"))

    def test_minimal_client_and_minimal_server(self):
        done = subprocess.run([PYTHON, self.client], cwd=self.folder, capture_output=True,
                              text=True, timeout=20, env=dict(os.environ, https_proxy=""))
        self.assertEqual((done.returncode, done.stdout), (0, "Hello, my-client\n"), done.stderr)

    def test_client_py_at_the_minimal_server(self):
        url = f"https://localhost:{self.port}/"
        done = run_script("client.py", "--cacert", path("ca.crt"), "--cert", path("client.crt"),
                          "--key", path("client.key"), url)
        self.assertEqual((done.returncode, done.stdout), (0, "Hello, my-client\n"), done.stderr)
        # Refused, always. But the minimal server closes right after its alert,
        # with our request unread, so the kernel may reset the connection and
        # destroy the alert: then client.py can only say "connection closed".
        # (server.py reads the leftovers first: see close_gently.)
        refused = run_script("client.py", "--cacert", path("ca.crt"), url)
        self.assertIn(refused.returncode, (5, 7), refused.stderr)
        self.assertRegex(refused.stderr, r"^error: (certificate required|connection closed): ")

    def test_minimal_client_at_server_py(self):
        with RunningServer(host="127.0.0.1") as srv:
            folder = tempfile.mkdtemp(prefix="mtls-readme-")
            self.addCleanup(shutil.rmtree, folder, True)
            os.symlink(pki(), os.path.join(folder, "certs"))
            done = subprocess.run([PYTHON, copy_stage(folder, "minimal_client", srv.port)],
                                  cwd="/", capture_output=True, text=True, timeout=20)
            self.assertEqual((done.returncode, done.stdout), (0, "Hello, my-client\n"), done.stderr)


class StageMistakesTest(unittest.TestCase):
    """The stages answer a missing certs/, a taken port and no server with one
    line and a non-zero exit, never a traceback."""

    def run_stage(self, folder, name, port):
        return subprocess.run([PYTHON, copy_stage(folder, name, port)], cwd="/",
                              capture_output=True, text=True, timeout=20)

    def assertOneLine(self, done, text):
        self.assertNotEqual(done.returncode, 0)
        self.assertNotIn("Traceback", done.stderr)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertIn(text, done.stderr)

    def stage_folder(self):
        """A folder to copy stages into, its certs/ the tests' certificates."""
        folder = tempfile.mkdtemp(prefix="mtls-stage-")
        self.addCleanup(shutil.rmtree, folder, True)
        os.symlink(pki(), os.path.join(folder, "certs"))
        return folder

    def test_without_certificates(self):
        folder = tempfile.mkdtemp(prefix="mtls-stage-")
        self.addCleanup(shutil.rmtree, folder, True)
        for name in ("minimal_server", "minimal_client", "allowlist_server"):
            self.assertOneLine(self.run_stage(folder, name, free_port()), "run 'make certs' first")

    def test_a_taken_port_and_no_server(self):
        folder = self.stage_folder()
        with socket.socket() as taken:
            taken.bind(("localhost", 0))
            taken.listen()
            port = taken.getsockname()[1]
            for name in ("minimal_server", "allowlist_server"):
                self.assertOneLine(self.run_stage(folder, name, port), "cannot listen on")
        self.assertOneLine(self.run_stage(folder, "minimal_client", free_port()),
                           "failed: [Errno 111] Connection refused")

    def test_ctrl_c_while_a_silent_server_keeps_the_minimal_client_waiting(self):
        """The minimal client, waiting for a server that accepted and says nothing,
        stops on Ctrl-C with one line, not a traceback."""
        folder = self.stage_folder()
        with socket.socket() as silent:
            silent.bind(("localhost", 0))
            silent.listen()
            silent.settimeout(10)
            copy = copy_stage(folder, "minimal_client", silent.getsockname()[1])
            # Ctrl-C's handler, even where the tests were started in the background.
            proc = subprocess.Popen([PYTHON, "-c", "import runpy, signal, sys; signal.signal("
                                     "signal.SIGINT, signal.default_int_handler); "
                                     "runpy.run_path(sys.argv[1], run_name='__main__')", copy],
                                    cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            conn, _ = silent.accept()
            with conn:
                conn.settimeout(10)
                self.assertTrue(conn.recv(5))      # its ClientHello: it waits for our answer
                # Ctrl-C, pressed again if need be: a signal that lands between
                # the write and the blocking read is seen only when the read ends.
                for _ in range(10):
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=1)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    proc.kill()
                out, err = proc.communicate()
        self.assertOneLine(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                           "interrupted")


class AllowListStageTest(StageServer):
    """Stage 2 lets in cn:my-client, forbids another good client, and logs each."""

    SERVER = "allowlist_server"

    def fetch(self, name):
        return run_script("client.py", "--cacert", path("ca.crt"), "--cert", path(name + ".crt"),
                          "--key", path(name + ".key"), self.url)

    def test_the_allowed_client_is_greeted_and_another_is_forbidden(self):
        allowed = self.fetch("client")
        self.assertEqual((allowed.returncode, allowed.stdout), (0, "Hello, my-client\n"),
                         allowed.stderr)
        other = self.fetch("other-client")
        self.assertNotEqual(other.returncode, 0)
        self.assertIn("403", other.stderr)
        self.server.terminate()
        log = self.server.communicate(timeout=10)[0]
        self.assertRegex(log, r"accepted 127\.0\.0\.1 as cn:my-client")
        self.assertRegex(log, r"forbidden 127\.0\.0\.1 uri:spiffe://example\.org/other-client")


QUOTE = re.compile(r"`((?:accepted|rejected|forbidden|closed|proxied|error:) [^`<]+)`")


def readme_quotes():
    """The log and error lines the README and QUOTED_DOCS quote."""
    texts = [readme()]
    for page in QUOTED_DOCS:
        with open(page, encoding="utf-8") as f:
            texts.append(f.read())
    # A quote wrapped over two lines of Markdown is one line of output.
    return sorted(set(re.sub(r"\s*\n\s*", " ", q) for text in texts for q in QUOTE.findall(text)))


def quote_pattern(quote):
    """A regex for a quoted line: PORT is any port, N any number, `...` any text."""
    parts = re.split(r"(PORT|\bN\b|\.\.\.)", quote)
    regex = "".join({"PORT": r"\d+", "N": r"\d+(?:\.\d+)?", "...": ".*"}.get(p, re.escape(p))
                    for p in parts)
    return re.compile(regex)


def hostile_clients():
    """The log lines of the robustness table, from real hostile clients
    against a server with short limits; returns the lines."""
    import ssl
    import client
    context = client.make_client_context(path("ca.crt"), path("client.crt"), path("client.key"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        context.wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    except ssl.SSLWantReadError:                     # it has written its ClientHello
        pass
    hello = outgoing.read()
    lines = []
    limits = dict(handshake_timeout=0.5, request_timeout=0.5, idle_timeout=0.5)
    with RunningServer(max_pending=1, **limits) as srv:
        def wait(phrase):
            return srv.log.wait_for(lambda l: phrase in l, timeout=5)
        with socket.create_connection(("127.0.0.1", srv.port)) as silent:
            wait("sent nothing within")
        with socket.create_connection(("127.0.0.1", srv.port)) as partial:
            partial.sendall(hello[:20])
            wait("sent only part of its ClientHello within")
        with socket.create_connection(("127.0.0.1", srv.port)) as first, \
                socket.create_connection(("127.0.0.1", srv.port)) as second:
            wait("to make room")
        with socket.create_connection(("127.0.0.1", srv.port)) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            wait("plain HTTP")
        with context.wrap_socket(socket.create_connection(("127.0.0.1", srv.port)),
                                 server_hostname="localhost") as slow:
            slow.sendall(b"GET / HTTP/1.1\r\n")
            wait("request head not complete")
        with context.wrap_socket(socket.create_connection(("127.0.0.1", srv.port)),
                                 server_hostname="localhost") as idle:
            wait("idle for")
        deaf = socket.socket()
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        deaf.connect(("127.0.0.1", srv.port))
        with context.wrap_socket(deaf, server_hostname="localhost") as deaf:
            deaf.settimeout(0.5)         # sends requests until the server stops reading them
            try:
                for _ in range(2000):
                    deaf.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
            except socket.timeout:
                wait("does not read its answers")
        lines += srv.log.lines
    with RunningServer(max_connections=1, **limits) as srv:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", srv.port)),
                                 server_hostname="localhost") as busy, \
                context.wrap_socket(socket.create_connection(("127.0.0.1", srv.port)),
                                    server_hostname="localhost") as extra:
            busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")       # holds the one slot...
            srv.log.wait_for(lambda l: "too many connections" in l, timeout=5)  # ...extra: none
        with socket.create_connection(("127.0.0.1", srv.port)) as stalled:
            stalled.sendall(hello)                         # and never answers the server's
            srv.log.wait_for(lambda l: "handshake not finished in time" in l, timeout=5)
        lines += srv.log.lines
    return lines


class DeploymentQuotesTest(unittest.TestCase):

    def test_the_forwarded_refusals_quoted_are_what_server_py_logs(self):
        """docs/deployment.md quoted the expired client's line as "...chain (leaf or
        intermediate) has expired", a line server.py never printed."""
        from armour.refusals import VERIFY_REASONS
        with open(os.path.join(ROOT, "docs", "deployment.md"), encoding="utf-8") as f:
            text = re.sub(r"\n {8,}", " ", f.read())     # a wrapped line, joined
        reasons = re.findall(r"^ +rejected 127\.0\.0\.1:\d+: (.+?)"
                             r"(?: \(forwarded by cn:my-proxy\))?$", text, re.MULTILINE)
        self.assertEqual(len(reasons), 8, reasons)
        for reason in reasons:
            self.assertIn(reason, VERIFY_REASONS.values())


class QuotesTest(unittest.TestCase):
    """Each quoted line is one the code really printed, in a run of every scenario."""

    @classmethod
    def setUpClass(cls):
        from tests import test_scenarios
        from demo import scenarios
        cls.printed = []
        for scenario in scenarios.SCENARIOS:
            outcome, lines, message = test_scenarios.run_scenario(scenario, with_message=True)
            cls.printed += lines
            if message:
                cls.printed.append(message)
        cls.printed += hostile_clients()

    def test_the_readme_quotes_something(self):
        self.assertGreater(len(readme_quotes()), 5)

    def test_every_quote_was_printed(self):
        def printed(quote):
            # `error: LABEL` alone (as in the gallery table) stands for any line with that label.
            if quote.startswith("error: ") and ":" not in quote[len("error: "):]:
                return any(line.startswith(quote + ":") for line in self.printed)
            return any(quote_pattern(quote).fullmatch(line) for line in self.printed)
        missing = [q for q in readme_quotes() if not printed(q)]
        self.assertEqual(missing, [], "README (or docs) quotes that no run printed:\n"
                         + "\n".join(missing))

    def test_each_quoted_doc_quotes_something(self):
        for page in QUOTED_DOCS:
            with open(page, encoding="utf-8") as f:
                self.assertTrue(QUOTE.search(f.read()), page + " quotes no log line")


if __name__ == "__main__":
    unittest.main()
