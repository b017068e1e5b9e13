"""The article's walkthrough, proven: certificates, success, and its two failures.

Every test does real TLS handshakes on 127.0.0.1 with certificates made by
the project's own Makefile. Each success is followed by the failures that
show the success was not an accident.
"""

import http.client
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
import unittest
import warnings

from tests.support import ROOT, PYTHON, RunningServer, path, pki, run_script, server_files

import client
import server


def openssl(*args):
    """Run the openssl binary; return CompletedProcess."""
    return subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)


def extensions(cert):
    """The certificate's text form from openssl, for checking extensions."""
    return openssl("x509", "-in", path(cert), "-noout", "-text").stdout


class CertificatesTest(unittest.TestCase):
    """make certs builds a strict-X.509-valid PKI, with private keys 0600."""

    def test_every_file_is_made(self):
        for name in ["ca.key", "ca.crt", "server.key", "server.csr", "server.crt",
                     "client.key", "client.csr", "client.crt"]:
            self.assertTrue(os.path.isfile(path(name)), name)

    def test_private_keys_are_0600(self):
        for name in ["ca.key", "server.key", "client.key"]:
            self.assertEqual(stat.S_IMODE(os.stat(path(name)).st_mode), 0o600, name)

    def test_chains_pass_strict_verification_for_their_purpose(self):
        for cert, purpose in [("server.crt", "sslserver"), ("client.crt", "sslclient")]:
            done = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", path("ca.crt"), path(cert))
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def test_each_leaf_fails_the_other_purpose(self):
        for cert, purpose in [("server.crt", "sslclient"), ("client.crt", "sslserver")]:
            done = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", path("ca.crt"), path(cert))
            self.assertNotEqual(done.returncode, 0, f"{cert} must not pass as {purpose}")
            self.assertIn("unsuitable certificate purpose", done.stdout + done.stderr)

    def test_ca_extensions(self):
        text = extensions("ca.crt")
        self.assertRegex(text, r"Basic Constraints: critical\s+CA:TRUE")
        self.assertRegex(text, r"Key Usage: critical\s+Certificate Sign, CRL Sign")
        self.assertIn("Subject Key Identifier", text)
        self.assertIn("Subject: CN = my-ca", text)

    def test_server_extensions(self):
        text = extensions("server.crt")
        self.assertIn("Version: 3", text)
        self.assertRegex(text, r"DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1")
        self.assertRegex(text, r"Extended Key Usage:\s+TLS Web Server Authentication\n")
        # keyEncipherment only for an RSA key (TLS 1.2 RSA key exchange); an EC key only signs.
        rsa = "rsaEncryption" in text
        self.assertRegex(text, r"Key Usage: critical\s+Digital Signature" +
                         (r", Key Encipherment" if rsa else r"\n"))
        self.assertIn("Authority Key Identifier", text)

    def test_client_extensions_are_client_only(self):
        text = extensions("client.crt")
        self.assertIn("Subject: CN = my-client", text)
        self.assertRegex(text, r"Extended Key Usage:\s+TLS Web Client Authentication\n")
        self.assertNotIn("Server Authentication", text)
        self.assertRegex(text, r"Key Usage: critical\s+Digital Signature\n")
        self.assertIn("Authority Key Identifier", text)

    def test_second_make_does_nothing(self):
        before = {n: os.stat(path(n)).st_mtime_ns for n in os.listdir(pki())}
        done = subprocess.run(["make", "-C", ROOT, f"CERTS={pki()}", "certs"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn("openssl", done.stdout)
        after = {n: os.stat(path(n)).st_mtime_ns for n in os.listdir(pki())}
        self.assertEqual(before, after)

    def test_python_verifies_strictly_like_3_13(self):
        """The chain loads and verifies under VERIFY_X509_STRICT (3.13's default)."""
        with RunningServer() as srv:
            ctx = ssl.create_default_context(cafile=path("ca.crt"))
            ctx.verify_flags |= ssl.VERIFY_X509_STRICT
            ctx.load_cert_chain(path("client.crt"), path("client.key"))
            conn = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            self.assertEqual((response.status, response.read()), (200, b"Hello, my-client\n"))
            conn.close()


class HandshakeTest(unittest.TestCase):
    """The three cases of the article, with client.py's functions."""

    def setUp(self):
        self.srv = RunningServer().__enter__()
        self.addCleanup(self.srv.__exit__)

    def context(self, cacert="ca.crt", cert="client.crt", key="client.key"):
        return client.make_client_context(cacert and path(cacert), cert and path(cert), key and path(key))

    def test_success_greets_the_client_by_its_certificate_name(self):
        self.assertEqual(client.fetch(self.srv.url, self.context()), (200, "Hello, my-client\n"))
        line = self.srv.log.wait_for(lambda l: l.startswith("accepted"))
        self.assertRegex(line, r"^accepted 127\.0\.0\.1:\d+ as cn:my-client$")

    def test_without_cacert_the_server_is_not_trusted(self):
        with self.assertRaises(client.Failure) as caught:
            client.fetch(self.srv.url, self.context(cacert=None))
        self.assertEqual((caught.exception.code, caught.exception.label),
                         (client.EXIT_SERVER_UNTRUSTED, "server not trusted"))
        line = self.srv.log.wait_for(lambda l: l.startswith("rejected"))
        self.assertIn("client does not trust our certificate", line)

    def test_without_client_certificate_30_of_30_are_certificate_required(self):
        """TLS 1.3 reports the rejection after the handshake; it must never look like an EOF."""
        ctx = self.context(cert=None, key=None)
        for attempt in range(30):
            with self.assertRaises(client.Failure, msg=f"attempt {attempt}") as caught:
                client.fetch(self.srv.url, ctx)
            self.assertEqual(caught.exception.label, "certificate required", f"attempt {attempt}")
        self.srv.log.wait_for(lambda l: len(self.srv.log.connection_lines()) >= 30, timeout=10)
        lines = self.srv.log.connection_lines()
        self.assertEqual(len(lines), 30)
        for line in lines:
            self.assertRegex(line, r"^rejected 127\.0\.0\.1:\d+: no client certificate")

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        conn = http.client.HTTPSConnection("localhost", self.srv.port, context=self.context(), timeout=10)
        for _ in range(50):
            conn.request("GET", "/")
            response = conn.getresponse()
            self.assertEqual(response.read(), b"Hello, my-client\n")
        conn.close()
        self.assertEqual(len(self.srv.log.connection_lines()), 1)

    def test_an_idle_tcp_connection_does_not_delay_a_real_client(self):
        idle = socket.create_connection(("127.0.0.1", self.srv.port))
        self.addCleanup(idle.close)
        started = time.monotonic()
        self.assertEqual(client.fetch(self.srv.url, self.context())[0], 200)
        self.assertLess(time.monotonic() - started, 2.0)

    def test_tls_1_1_is_refused(self):
        ctx = self.context()
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        with warnings.catch_warnings():       # 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        # The cause, on both sides: the server answers protocol_version (RFC 8446 6.2)...
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=5) as raw:
            with self.assertRaises(ssl.SSLError) as caught:
                ctx.wrap_socket(raw, server_hostname="localhost")
        self.assertEqual(caught.exception.reason, "TLSV1_ALERT_PROTOCOL_VERSION", caught.exception)
        # ...and logs why.
        line = self.srv.log.wait_for(lambda l: l.startswith("rejected"))
        self.assertIn("client offered only TLS 1.0/1.1; TLS 1.2 or newer is required", line or "")


@unittest.skipUnless(shutil.which("curl"), "curl is not installed")
class ArticleCurlTest(unittest.TestCase):
    """The article's three curl commands, verbatim, against server.py."""

    def curl(self, *args):
        return subprocess.run(["curl", "-sS"] + list(args), capture_output=True, text=True, timeout=30)

    def test_the_three_curl_commands(self):
        with RunningServer() as srv:
            ok = self.curl("--cacert", path("ca.crt"), "--key", path("client.key"),
                           "--cert", path("client.crt"), srv.url)
            self.assertEqual((ok.returncode, ok.stdout), (0, "Hello, my-client\n"), ok.stderr)

            untrusted = self.curl("--key", path("client.key"), "--cert", path("client.crt"), srv.url)
            self.assertEqual(untrusted.returncode, 60, untrusted.stderr)
            self.assertIn("self-signed certificate in certificate chain", untrusted.stderr.replace("self signed", "self-signed"))

            for attempt in range(10):       # exit 56 with the alert, never a bare reset
                no_cert = self.curl("--cacert", path("ca.crt"), srv.url)
                self.assertEqual(no_cert.returncode, 56, f"attempt {attempt}: {no_cert.stderr}")
                self.assertIn("alert certificate required", no_cert.stderr)


class CommandLineTest(unittest.TestCase):
    """client.py and server.py as a user runs them: exit codes and one-line errors."""

    def test_client_success_and_each_failure_exit_code(self):
        with RunningServer() as srv:
            ok = run_script("client.py", "--cacert", path("ca.crt"), "--cert", path("client.crt"),
                            "--key", path("client.key"), srv.url)
            self.assertEqual((ok.returncode, ok.stdout), (0, "Hello, my-client\n"))
            cases = [
                ([srv.url, "--cert", path("client.crt"), "--key", path("client.key")], 4, "server not trusted"),
                ([srv.url, "--cacert", path("ca.crt")], 5, "certificate required"),
                ([srv.url.replace("https", "http"), "--cacert", path("ca.crt")], 2, "bad URL"),
                (["--cacert", "/nonexistent/ca.crt", srv.url], 2, "not found"),
                (["--cacert", path("ca.crt"), "--cert", path("client.crt"), "--key", path("server.key"), srv.url],
                 2, "is not the private key of"),
            ]
            for args, code, words in cases:
                done = run_script("client.py", *args)
                self.assertEqual(done.returncode, code, done.stderr)
                self.assertIn(words, done.stderr)
                self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
                self.assertNotIn("Traceback", done.stderr)

    def test_client_says_when_nothing_listens(self):
        with socket.socket() as s:                    # a port that is surely closed
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        done = run_script("client.py", f"https://localhost:{port}/")
        self.assertEqual(done.returncode, 3)
        self.assertIn("connection refused", done.stderr)

    def test_server_missing_certificate_is_one_line_exit_2(self):
        done = run_script("server.py", *server_files(), "--port", "0", "--cert", "/nonexistent/server.crt")
        self.assertEqual(done.returncode, 2)
        self.assertRegex(done.stderr, r"^error: missing file: server certificate '/nonexistent/server.crt' not found -- run 'make certs'")
        self.assertNotIn("Traceback", done.stderr)


class DemoTest(unittest.TestCase):
    """python3 mtls_demo.py runs the three cases end to end and exits 0."""

    def test_demo_runs_the_article_cases(self):
        done = run_script("mtls_demo.py", "--certs", pki(), timeout=120)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("3 of 3 cases behaved as expected", done.stdout)
        for name in ["success", "no-cacert", "no-client-cert"]:
            self.assertRegex(done.stdout, rf"\n{name} +\|.*\| yes")


class ReviewFindingsTest(unittest.TestCase):
    """Rules found by outside review: redirects, hostile names, resumed sessions."""

    def test_client_does_not_follow_a_redirect_to_plain_http(self):
        """A 302 to http:// is reported (exit 6), never followed, like curl without -L."""
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(path("server.crt"), path("server.key"))
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        plain = socket.create_server(("127.0.0.1", 0))     # where the redirect points
        self.addCleanup(plain.close)
        plain.settimeout(0.5)
        answer = (b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/secret\r\n"
                  b"Content-Length: 0\r\n\r\n" % plain.getsockname()[1])

        def serve_one():
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                tls.sendall(answer)
        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        done = run_script("client.py", "--cacert", path("ca.crt"),
                          f"https://localhost:{listener.getsockname()[1]}/")
        thread.join(10)
        self.assertEqual(done.returncode, 6, done.stderr)
        self.assertIn("HTTP 302 Found", done.stderr)
        self.assertIn("does not follow", done.stderr)
        with self.assertRaises(socket.timeout):             # nobody came to the plain port
            plain.accept()

    def test_control_characters_in_a_name_are_escaped(self):
        """A newline in a certificate's CN must not forge a second log line."""
        forged = ("cn", "evil\r\n15:00:00 accepted 10.0.0.1:1 as cn:root\x1b[2J")
        spelled = server.spell(forged)
        self.assertNotIn("\n", spelled)
        self.assertNotIn("\x1b", spelled)
        self.assertTrue(spelled.startswith("cn:evil\\r\\n15:00:00"), spelled)

    def test_a_resumed_session_is_logged_as_such(self):
        """The second connection, resuming the first one's TLS session, says so in the log."""
        ctx = client.make_client_context(path("ca.crt"), path("client.crt"), path("client.key"))
        with RunningServer() as srv:
            first = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=10)
            first.request("GET", "/")
            self.assertEqual(first.getresponse().read(), b"Hello, my-client\n")
            session = first.sock.session          # TLS 1.3: the ticket came with the response
            first.close()
            with socket.create_connection(("127.0.0.1", srv.port)) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    reply = tls.recv(4096)
                    self.assertTrue(tls.session_reused)
            self.assertIn(b"Hello, my-client", reply)
            line = srv.log.wait_for(lambda l: "(resumed session)" in l)
            self.assertRegex(line or "", r"^accepted 127\.0\.0\.1:\d+ as cn:my-client \(resumed session\)$")


if __name__ == "__main__":
    unittest.main()
