"""The code reads as the lesson (issue 20): server.py and client.py first,
their armour in armour/, one of each shared piece, and no import cycle.

What is checked: the lines a reader must meet early (the client
certificate demanded, the handshake and what its failure does) are where
server.py's and client.py's docstrings promise them; no armour module
imports server.py, client.py or the demo; the two tools share one
argument parser and one key-log opener; and a tool copied without its
armour/ folder says so in one line instead of a traceback.
"""

import ast
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from tests.support import PYTHON, ROOT, ServerProcess, server_files

import client  # noqa: E402  (tests.support puts the project folder on sys.path)
import server  # noqa: E402


def first_lines(name, count):
    """The first `count` lines of a project file, as one text."""
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return "".join(f.readlines()[:count])


class LessonFirst(unittest.TestCase):
    """A reader who knows Python but not TLS meets the mTLS path first."""

    def test_server_py_demands_checks_and_fails_within_150_lines(self):
        """CERT_REQUIRED, the handshake off the accept loop, and a failure's
        one log line and gentle close, all in server.py's first 150 lines."""
        top = first_lines("server.py", 150)
        for text in ("context.verify_mode = ssl.CERT_REQUIRED",
                     "context.load_verify_locations(cafile=ca)",
                     "inside accept()", "tls.do_handshake()",
                     'server.refuse("rejected", conn.peer, describe_rejection(exc, tls.context))',
                     "close_gently(server, conn)"):
            self.assertIn(text, top)

    def test_client_py_trusts_presents_and_requests_within_80_lines(self):
        """Whom we trust, what we present, and the request, in client.py's first 80 lines."""
        top = first_lines("client.py", 80)
        for text in ("ssl.PROTOCOL_TLS_CLIENT", "context.load_verify_locations(cadata=",
                     "CertificateRequest", "context.load_cert_chain(", "def fetch("):
            self.assertIn(text, top)


class ArmourApart(unittest.TestCase):
    """The armour serves the lesson; it never reaches back into it."""

    def test_no_armour_module_imports_a_tool(self):
        """armour/ imports no server.py, client.py or demo: no import cycle."""
        modules = glob.glob(os.path.join(ROOT, "armour", "*.py"))
        self.assertGreater(len(modules), 5)
        for path in modules:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    self.assertNotIn(name.split(".")[0], ("server", "client", "mtls_demo", "demo"),
                                     os.path.basename(path))

    def test_one_argument_parser_and_one_key_log_opener(self):
        """server.py and client.py use the same parser class and the same open_keylog."""
        self.assertIs(server.ArgumentParser, client.ArgumentParser)
        import armour.client_errors
        self.assertIs(server.open_keylog, armour.client_errors.open_keylog)

    def test_a_tool_copied_without_armour_says_so_in_one_line(self):
        folder = tempfile.mkdtemp(prefix="mtls-test-layout-")
        self.addCleanup(shutil.rmtree, folder, True)
        for name in ("server.py", "client.py"):
            shutil.copy(os.path.join(ROOT, name), folder)
            done = subprocess.run([PYTHON, os.path.join(folder, name), "--help"], cwd=folder,
                                  capture_output=True, text=True, timeout=30,
                                  env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertEqual(done.stderr, f"error: missing file: {name} needs its folder armour/ "
                                          f"beside it -- copy armour/ too\n")

    def test_server_py_copied_without_groups_cnf_says_what_it_costs(self):
        """With armour/ but no groups.cnf: the one group it offers, and the file to copy."""
        folder = tempfile.mkdtemp(prefix="mtls-test-layout-")
        self.addCleanup(shutil.rmtree, folder, True)
        shutil.copy(os.path.join(ROOT, "server.py"), folder)
        shutil.copytree(os.path.join(ROOT, "armour"), os.path.join(folder, "armour"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        srv = ServerProcess(*server_files(), script=os.path.join(folder, "server.py"), test=self)
        line = srv.log.wait_for(lambda l: "groups.cnf not found" in l, timeout=10)
        self.assertIsNotNone(line, srv.log.lines)
        self.assertIn("-- copy groups.cnf beside server.py", line)


if __name__ == "__main__":
    sys.exit(unittest.main())
