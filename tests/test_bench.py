"""bench/bench.py: the servers it compares are like for like, and what it
prints fits a projector.

The benchmark's figures depend on the machine, so they are not tested here.
What is tested: the article's Node server that the bench writes answers as
server.py does and refuses as server.py does, every server makes the same
handshake (key-exchange group, session tickets), tables wider than 100
columns are split rather than cut, and bad options get one line.
"""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

from tests import support

BENCH = os.path.join(support.ROOT, "bench", "bench.py")
sys.path.insert(0, os.path.dirname(BENCH))

import bench  # noqa: E402  (after the path fix above)


class BaselineTests(unittest.TestCase):
    """The servers the bench measures, on the test PKI."""

    def setUp(self):
        self.certs = support.pki()
        self.workdir = tempfile.mkdtemp(prefix="mtls-test-bench-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def start(self, starter):
        server = starter(self.certs, self.workdir)
        self.addCleanup(server.stop)
        return server

    def test_node_server_greets_a_client_certificate_and_refuses_none(self):
        """The article's Node server greets my-client, and a client without
        a certificate gets no greeting."""
        if shutil.which("node") is None:
            self.skipTest("node not installed: apt-get install nodejs")
        server = self.start(bench.start_node)
        status, body, _ = bench.request_once(bench.make_client_context(self.certs), server.port)
        self.assertEqual((status, body), (200, b"Hello, my-client\n"))

        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.load_verify_locations(cafile=os.path.join(self.certs, "ca.crt"))
        with self.assertRaises((OSError, bench.BenchError)):    # ssl.SSLError is an OSError
            bench.request_once(anonymous, server.port)

    def test_every_server_makes_the_same_handshake_as_server_py(self):
        """Like for like: s_server and Node, given server.py's key-exchange
        group, agree on it with the same hello (no retry where server.py needs
        none) and send as many TLS 1.3 tickets (two, OpenSSL's default)."""
        server_py = self.start(bench.server_py_starter("server.py", bench.SERVER_PY))
        ours = bench.describe_handshake(self.certs, server_py.port)
        self.assertEqual(ours["tickets"], 2)
        baselines = [bench.start_s_server] + ([bench.start_node] if shutil.which("node") else [])
        for start in baselines:
            server = self.start(lambda certs, workdir: start(certs, workdir, ours["group"]))
            self.assertEqual(bench.describe_handshake(self.certs, server.port), ours, server.name)


class OutputTests(unittest.TestCase):
    """What the bench prints."""

    def test_a_wide_table_is_split_never_cut(self):
        """A table wider than 100 columns becomes several, each within 100
        columns, and every cell is still there."""
        headers = [f"server-{n}/s_server" for n in range(8)]
        rows = [("full handshake, c=4: per second", [f"{n}.{n}{n}" for n in range(8)])]
        lines = bench.format_columns("ratios", headers, rows, [len(h) + 2 for h in headers])
        for line in lines:
            self.assertLessEqual(len(line), 100, line)
        text = "\n".join(lines)
        for header, cell in zip(headers, rows[0][1]):
            self.assertIn(header, text)
            self.assertIn(cell, text)
        self.assertGreater(sum(line.startswith("ratios") for line in lines), 1)

    def run_bench(self, *args):
        return subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True,
                              timeout=60)

    def test_a_server_option_naming_no_file_gets_one_line(self):
        """--server with a path that is not a file: one line with the fix, exit 2."""
        done = self.run_bench("--server", "before=/nonexistent/server.py")
        self.assertEqual(done.returncode, 2)
        self.assertEqual(done.stdout, "")
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertRegex(done.stderr, r"^error: bad option: .*/nonexistent/server.py.* -- ")

    def test_two_servers_of_the_same_name_get_one_line(self):
        """Two --server options with one name: one line asking to name them."""
        done = self.run_bench("--server", "a=" + bench.SERVER_PY, "--server", "a=" + bench.SERVER_PY)
        self.assertEqual(done.returncode, 2)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertIn("--server before=PATH", done.stderr)

    @unittest.skipIf(sys.version_info < (3, 12), "Python 3.9-3.11 can profile every thread")
    def test_profile_on_python_3_12_or_newer_gets_one_line(self):
        """--profile needs one cProfile per thread, which 3.12+ refuses: one line, exit 2."""
        done = self.run_bench("--profile")
        self.assertEqual(done.returncode, 2)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertIn("python3.11", done.stderr)


if __name__ == "__main__":
    unittest.main()
