"""client.py names the right cause, and its fix points the right way.

One test per class of problem from the trust audit (issue 8) and the
new-user trial (issue 12). Each would fail against the client.py before
them, and each "should fail" case sits beside a "should pass" one that
proves the failure is the one meant. Peers are real: `openssl s_server`
(started here on 127.0.0.1, waited for by its ACCEPT line) or server.py's
MTLSServer. Extra certificates (an expired CA, an expired intermediate, an
IP-only SAN, a UTF-8 name, a key of the other type, DER files) are made
with the openssl binary in a temporary folder.

Chapters: helpers and extra certificates, what the server refused, what
we refused, after the handshake, URLs, files, --keylog, Python versions.
"""

import http.server
import os
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from tests.support import PYTHON, ROOT, RunningServer, cert_config, openssl, path, pki, rolled_pki

import client

# --- helpers ---------------------------------------------------------------

ERROR_LINE = re.compile(r"^error: [^:\n]+: [^\n]+ -- [^\n]+\n$")


def run_client(*args, env=None, timeout=30):
    """Run client.py as a user would (stdin closed, bounded in time)."""
    return subprocess.run([PYTHON, os.path.join(ROOT, "client.py")] + list(args), cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env=env)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpenSSLServer:
    """`openssl s_server` on 127.0.0.1, ready once it has printed ACCEPT."""

    def __init__(self, *args):
        self.output = ""
        for _ in range(3):                  # the free port may be taken meanwhile
            self.port = free_port()
            self.proc = subprocess.Popen(
                ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}"] + list(args),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if self.wait_for_accept(10):
                return
            self.stop()
        raise RuntimeError(f"openssl s_server did not start:\n{self.output}")

    def wait_for_accept(self, timeout):
        """Read its output until the ACCEPT line (True) or exit/timeout (False)."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    return False
                self.output += chunk.decode("utf-8", "replace")
                if re.search(r"^ACCEPT", self.output, re.M):
                    return True
        return False

    def url(self, host="localhost"):
        return f"https://{host}:{self.port}/"

    def stop(self):
        self.proc.kill()
        self.proc.communicate(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def context(cacert="ca.crt", cert=None, key=None):
    """client.py's TLS settings with files from the test PKI or the extras."""
    return client.make_client_context(cacert and find(cacert), cert and find(cert), key and find(key))


def failure_of(url, ctx, timeout=10):
    """The Failure that client.fetch raises for this request."""
    try:
        result = client.fetch(url, ctx, timeout)
    except client.Failure as failure:
        return failure
    raise AssertionError(f"no failure: {result!r}")


# --- extra certificates, made once for this module --------------------------

# The shared config (tests.support), and what this module adds: `openssl ca`
# settings (named with -name, since [ca] is the CA's extensions), a server
# leaf that may also be used for RSA key exchange, and one that names only an IP.
EXTENSIONS = cert_config("""\
[tmp_ca]
dir = .
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
[old_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ip_only]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
""")
EXTRA = None
PAST = ["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"]


def find(name):
    """A file made here (if it exists), else one from the test PKI."""
    made = os.path.join(EXTRA, name)
    return made if os.path.exists(made) else path(name)


def setUpModule():
    """Make the extra certificates with the openssl binary."""
    global EXTRA
    EXTRA = tempfile.mkdtemp(prefix="mtls-client-")
    with open(os.path.join(EXTRA, "ext.cnf"), "w") as f:
        f.write(EXTENSIONS)
    open(os.path.join(EXTRA, "index.txt"), "w").close()
    with open(os.path.join(EXTRA, "serial"), "w") as f:
        f.write("1000\n")

    def sh(*args):
        return openssl(*args, cwd=EXTRA)

    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-config", "ext.cnf"]
    ca = ["ca", "-batch", "-config", "ext.cnf", "-name", "tmp_ca", "-notext", "-extfile", "ext.cnf"]
    # old-ca: a CA whose certificate expired in 2021 (openssl ca can back-date);
    # old-server / old-client: in date, signed by it.
    sh("req", "-new", *new_key, "-keyout", "old-ca.key", "-out", "old-ca.csr", "-subj", "/CN=old-ca")
    sh(*ca, "-selfsign", "-keyfile", "old-ca.key", "-in", "old-ca.csr", *PAST,
       "-extensions", "ca", "-out", "old-ca.crt")
    for name, section in [("old-server", "old_server"), ("old-client", "client")]:
        sh("req", "-new", *new_key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
           "-subj", "/CN=localhost" if section == "old_server" else "/CN=my-client")
        sh("x509", "-req", "-in", f"{name}.csr", "-CA", "old-ca.crt", "-CAkey", "old-ca.key",
           "-set_serial", "11", "-days", "2", "-extfile", "ext.cnf", "-extensions", section,
           "-out", f"{name}.crt")
    # old-int: an intermediate CA, signed by the test PKI's CA, expired in 2021;
    # old-int-chain.pem: a client leaf it signed, followed by it.
    sh("req", "-new", *new_key, "-keyout", "old-int.key", "-out", "old-int.csr", "-subj", "/CN=old-int")
    sh(*ca, "-cert", path("ca.crt"), "-keyfile", path("ca.key"), "-in", "old-int.csr",
       *PAST, "-extensions", "ca", "-out", "old-int.crt")
    sh("x509", "-req", "-in", path("client.csr"), "-CA", "old-int.crt", "-CAkey", "old-int.key",
       "-set_serial", "12", "-days", "2", "-extfile", "ext.cnf", "-extensions", "client",
       "-out", "old-int-client.crt")
    concatenate(["old-int-client.crt", "old-int.crt"], "old-int-chain.pem")
    # ip-only.crt: CN=localhost, but its SAN lists only IP:127.0.0.1.
    sh("x509", "-req", "-in", path("server.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
       "-set_serial", "13", "-days", "2", "-extfile", "ext.cnf", "-extensions", "ip_only",
       "-out", "ip-only.crt")
    # rebuilt-ca.crt: what 'make clean && make certs' makes: my-ca again, another key.
    sh("req", "-x509", *new_key, "-keyout", "rebuilt-ca.key", "-out", "rebuilt-ca.crt",
       "-subj", "/CN=my-ca", "-days", "2", "-extensions", "ca")
    # utf8-client.crt: a client whose name is not ASCII (client.key's key).
    sh("req", "-new", "-key", path("client.key"), "-utf8", "-subj", "/CN=cl\u00efent",
       "-config", "ext.cnf", "-out", "utf8-client.csr")
    sh("x509", "-req", "-in", "utf8-client.csr", "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
       "-set_serial", "14", "-days", "2", "-extfile", "ext.cnf", "-extensions", "client",
       "-out", "utf8-client.crt")
    # other-type.key: a key of the other type than client.crt's (EC vs RSA).
    is_rsa = "rsaEncryption" in openssl("x509", "-in", path("client.crt"), "-noout", "-text").stdout
    if is_rsa:
        sh("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other-type.key")
    else:
        sh("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "other-type.key")
    # DER forms of the client's certificate, its key and the CA.
    sh("x509", "-in", path("client.crt"), "-outform", "DER", "-out", "client.der")
    sh("x509", "-in", path("ca.crt"), "-outform", "DER", "-out", "ca.der")
    sh("pkey", "-in", path("client.key"), "-outform", "DER", "-out", "client-key.der")


def concatenate(names, target):
    with open(os.path.join(EXTRA, target), "w") as out:
        for name in names:
            with open(os.path.join(EXTRA, name)) as f:
                out.write(f.read())


def tearDownModule():
    shutil.rmtree(EXTRA, ignore_errors=True)


class ClientTestCase(unittest.TestCase):

    def assertErrorLine(self, done, code, label, *words):
        """One line in the one error format, this label and exit code, these words."""
        self.assertEqual(done.returncode, code, done.stderr)
        self.assertRegex(done.stderr, ERROR_LINE)
        self.assertTrue(done.stderr.startswith(f"error: {label}: "), done.stderr)
        for word in words:
            self.assertIn(word, done.stderr)

    def assertFailure(self, failure, code, label, *words, absent=()):
        """A classified failure: code, label, words present and absent."""
        text = f"{failure.label}: {failure.message}"
        self.assertEqual((failure.code, failure.label), (code, label), text)
        self.assertIn(" -- ", failure.message)
        for word in words:
            self.assertIn(word, text)
        for word in absent:
            self.assertNotIn(word, text)


# --- what the server refused: never blame the wrong certificate -----------------

class ServerRefusedTest(ClientTestCase):

    def test_unknown_ca_after_sending_the_whole_chain_points_at_the_servers_log(self):
        """A server without our intermediate's CRL answers unknown_ca (verify error 3):
        the chain we already sent is not the cause; a leaf alone still gets the chain hint."""
        with RunningServer(crl="ca.crl") as srv:
            failure = failure_of(srv.url, context(cert="int-client-chain.pem", key="client.key"))
            line = srv.log.wait_for(lambda l: l.startswith("rejected"))
        self.assertIn("CRL", line)            # the server's own reason: a missing CRL
        self.assertFailure(failure, client.EXIT_CLIENT_REJECTED, "unknown CA",
                           "we sent whole", "read the server's log", "--crl",
                           absent=["pass the chain file"])
        with RunningServer() as srv:
            leaf_only = failure_of(srv.url, context(cert="int-client.crt", key="client.key"))
        self.assertFailure(leaf_only, client.EXIT_CLIENT_REJECTED, "unknown CA",
                           "pass the chain file (leaf + intermediate) as --cert")

    def test_an_expired_ca_at_the_server_is_not_called_our_expired_certificate(self):
        """A server whose --ca expired answers certificate_expired to our in-date
        certificate: say a certificate in the chain (the leaf, an intermediate, or the
        server's CA), in the words server.py logs."""
        with OpenSSLServer("-cert", path("server.crt"), "-key", path("server.key"),
                           "-CAfile", find("old-ca.crt"), "-Verify", "1",
                           "-verify_return_error", "-www") as srv:
            failure = failure_of(srv.url(), context(cert="old-client.crt", key="old-client.key"))
        self.assertFailure(failure, client.EXIT_CLIENT_REJECTED, "certificate expired",
                           "a certificate in the chain has expired: the leaf, an "
                           "intermediate, or the server's CA",
                           "the server's CA (its --ca)", "openssl x509 -noout -enddate",
                           absent=["get a new one"])

    def test_an_expired_intermediate_that_we_send_is_named(self):
        """The server refuses our chain because its intermediate expired: we name it."""
        with RunningServer() as srv:
            failure = failure_of(srv.url, context(cert="old-int-chain.pem", key="client.key"))
        self.assertFailure(failure, client.EXIT_CLIENT_REJECTED, "certificate expired",
                           "intermediate CA certificate 'old-int'", "expired on Jan  1 00:00:00 2021 GMT")

    def test_tls12_handshake_failure_without_a_certificate_names_both_causes(self):
        """TLS 1.2 handshake_failure does not say why: a server sharing no cipher
        with us and one wanting a certificate get the same honest line."""
        no_cipher = ["-tls1_2", "-cipher", "aNULL:@SECLEVEL=0"]    # anonymous: Python never offers it
        wants_cert = ["-tls1_2", "-Verify", "1", "-verify_return_error", "-CAfile", path("ca.crt")]
        for name, options in [("no shared cipher", no_cipher), ("certificate wanted", wants_cert)]:
            with self.subTest(name), OpenSSLServer("-cert", path("server.crt"), "-key",
                                                   path("server.key"), "-www", *options) as srv:
                failure = failure_of(srv.url(), context())
                self.assertFailure(failure, client.EXIT_TLS, "handshake failed",
                                   "it wants a client certificate and we sent none",
                                   "or we share no cipher or TLS version")


# --- what we refused: the server's certificate ----------------------------------

class ServerCertificateTest(ClientTestCase):

    def test_an_expired_ca_in_cacert_is_named_not_the_servers_certificate(self):
        """Our --cacert expired: name it and its date; an expired server leaf is the
        server's, and then our CAs are said to be in date."""
        with OpenSSLServer("-cert", find("old-server.crt"), "-key", find("old-server.key"),
                           "-www") as srv:
            failure = failure_of(srv.url(), context(cacert="old-ca.crt"))
        self.assertFailure(failure, client.EXIT_SERVER_UNTRUSTED, "CA certificate expired",
                           "our CA certificate 'old-ca'", "expired on Jan  1 00:00:00 2021 GMT",
                           "the server's own certificate may be fine", absent=["server needs"])
        with OpenSSLServer("-cert", path("expired-server.crt"), "-key", path("server.key"),
                           "-www") as srv:
            leaf = failure_of(srv.url(), context())
        self.assertFailure(leaf, client.EXIT_SERVER_UNTRUSTED, "server certificate expired",
                           "our CAs are in date", "kill -HUP")

    def test_an_ip_address_mismatch_is_a_hostname_mismatch(self):
        """https://127.0.0.1 to a certificate for www.example.com only (verify code 64)."""
        with OpenSSLServer("-cert", path("elsewhere-server.crt"), "-key", path("server.key"),
                           "-www") as srv:
            failure = failure_of(srv.url("127.0.0.1"), context())
        self.assertFailure(failure, client.EXIT_SERVER_UNTRUSTED, "hostname mismatch",
                           "not valid for the IP address '127.0.0.1'", "use an IP address listed")

    def test_the_common_name_is_never_consulted(self):
        """CN=localhost with a SAN of only IP:127.0.0.1 is refused for https://localhost
        (and accepted for https://127.0.0.1, so the certificate is otherwise fine)."""
        with OpenSSLServer("-cert", find("ip-only.crt"), "-key", path("server.key"), "-www") as srv:
            failure = failure_of(srv.url("localhost"), context())
            status, _ = client.fetch(srv.url("127.0.0.1"), context())
        self.assertEqual(status, 200)
        self.assertFailure(failure, client.EXIT_SERVER_UNTRUSTED, "hostname mismatch",
                           "not valid for the name 'localhost'")

    def test_a_server_using_another_ca_is_not_answered_with_pass_cacert(self):
        """After 'make clean && make certs' under a running server, the CA we pass
        is a new my-ca: say the server uses another CA (restart, kill -HUP)."""
        with RunningServer() as srv:
            rebuilt = failure_of(srv.url, context(cacert="rebuilt-ca.crt"))
            without = failure_of(srv.url, context(cacert=None))
        self.assertFailure(rebuilt, client.EXIT_SERVER_UNTRUSTED, "server not trusted",
                           "the server uses another CA", "restart the server (or kill -HUP it)",
                           "rebuilt-ca.crt", absent=["pass --cacert"])
        self.assertFailure(without, client.EXIT_SERVER_UNTRUSTED, "server not trusted",
                           "pass --cacert with the CA that signed it")


    def test_after_a_ca_rollover_the_fix_is_the_trust_file_not_a_restart(self):
        """After make ca-2 and rollover-phase1..3 the server's certificate is signed by
        my-ca-2, which certs/ca.crt lacks and certs/trust.pem holds: say pass that."""
        rolled = rolled_pki()
        with RunningServer(ca=os.path.join(rolled, "trust.pem"),
                           cert=os.path.join(rolled, "server.crt"),
                           key=os.path.join(rolled, "server.key")) as srv:
            old = failure_of(srv.url, client.make_client_context(os.path.join(rolled, "ca.crt")))
            trust = os.path.join(rolled, "trust.pem")
            status, body = client.fetch(srv.url, client.make_client_context(
                trust, os.path.join(rolled, "client.crt"), os.path.join(rolled, "client.key")))
        self.assertFailure(old, client.EXIT_SERVER_UNTRUSTED, "server not trusted",
                           "CA rollover", f"--cacert {trust}", absent=["restart the server"])
        self.assertEqual((status, body.strip()), (200, "Hello, my-client"))


# --- after the handshake ----------------------------------------------------------

def serve_once(answer):
    """A TLS server (the test PKI's server certificate) that reads one request and
    writes `answer`; returns its port."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(path("server.crt"), path("server.key"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve():
        with listener:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                tls.sendall(answer)
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


class AnswerTest(ClientTestCase):

    def test_no_answer_after_the_handshake_is_not_cannot_connect(self):
        """s_server completes the handshake and says nothing: 'no answer' (exit 7);
        a listener that never speaks TLS is still a timeout (exit 3)."""
        with OpenSSLServer("-cert", path("server.crt"), "-key", path("server.key")) as srv:
            silent = failure_of(srv.url(), context(), timeout=1)
        self.assertFailure(silent, client.EXIT_TLS, "no answer",
                           "accepted the connection and our request, but sent no answer in time")
        with socket.create_server(("127.0.0.1", 0)) as mute:   # connects, never answers
            never = failure_of(f"https://localhost:{mute.getsockname()[1]}/", context(), timeout=1)
        self.assertFailure(never, client.EXIT_CONNECT, "timeout", "did not answer in time")

    def test_the_servers_error_text_is_escaped_and_clipped(self):
        """A 403 body with escape codes, newlines and 1000 characters: one line, escaped, cut."""
        body = b"\x1b[31mred\nerror: forged second line\n" + b"x" * 1000
        port = serve_once(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n"
                          b"Connection: close\r\n\r\n%s" % (len(body), body))
        done = run_client("--cacert", path("ca.crt"), f"https://localhost:{port}/")
        self.assertErrorLine(done, client.EXIT_HTTP, "HTTP 403 Forbidden",
                             '"\\x1b[31mred\\nerror: forged second line\\nxxx', 'xxx..." -- ')
        self.assertNotIn("\x1b", done.stderr)
        self.assertLess(len(done.stderr), 400)

    def test_a_non_ascii_name_on_an_ascii_terminal_is_escaped(self):
        """PYTHONIOENCODING=ascii: the greeting of a UTF-8 name prints, escaped."""
        env = dict(os.environ, PYTHONIOENCODING="ascii")
        with RunningServer() as srv:
            done = run_client("--cacert", path("ca.crt"), "--cert", find("utf8-client.crt"),
                              "--key", path("client.key"), srv.url, env=env)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("cl\\xefent", done.stdout)
        self.assertNotIn("Traceback", done.stderr)
        # The same with a server of our own, whatever server.py's greeting becomes.
        body = "Hello, cl\u00efent \u2713\n".encode()
        port = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        done = run_client("--cacert", path("ca.crt"), f"https://localhost:{port}/", env=env)
        self.assertEqual((done.returncode, done.stdout), (0, "Hello, cl\\xefent \\u2713\n"),
                         done.stderr)


# --- URLs: suggest the one the user meant --------------------------------------

class PlainHTTP(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"plain\n")

    def log_message(self, *args):
        pass


class URLTest(ClientTestCase):

    def check_urls(self, cases, code=client.EXIT_USAGE, label="bad URL"):
        for url, words in cases:
            with self.subTest(url=url):
                self.assertErrorLine(run_client("--cacert", path("ca.crt"), url), code, label, *words)

    def test_a_url_without_scheme_or_with_one_slash_gets_the_url_meant(self):
        self.check_urls([
            ("localhost:3200", ["has no https:// in front -- use https://localhost:3200/"]),
            ("localhost", ["-- use https://localhost:3000/"]),      # server.py's port, not 443
            ("[::1]", ["-- use https://[::1]:3000/"]),
            ("127.0.0.1:3200", ["-- use https://127.0.0.1:3200/"]),
            ("localhost:3200/hello", ["-- use https://localhost:3200/hello"]),
            ("https:/localhost:3200/", ["needs two slashes", "-- use https://localhost:3200/"]),
            ("ftp://localhost:3200/", ["is not an https:// URL -- use https://localhost:3200/"]),
        ])

    def test_a_user_and_password_in_the_url_are_named_and_not_echoed(self):
        self.check_urls([
            ("https://user:secret@localhost:3200/", ["'https://user:***@localhost:3200/' holds a "
                                                     "user name or password",
                                                     "-- use https://localhost:3200/"]),
        ])
        self.assertNotIn("secret", run_client("https://user:secret@localhost:3200/").stderr)

    def test_a_space_in_the_url_is_written_percent_20(self):
        """A space, a tab or a non-ASCII letter: the percent-encoded URL to use instead."""
        self.check_urls([
            ("https://localhost:3200/a b", ["holds a space, which must be written %20",
                                            "-- use https://localhost:3200/a%20b"]),
            ("https://localhost:3200/a\tb", ["holds the character \\t",
                                             "-- use https://localhost:3200/a%09b"]),
            ("https://localhost:3200/caf\u00e9", ["which must be written %C3%A9",
                                                 "-- use https://localhost:3200/caf%C3%A9"]),
        ])

    def test_http_urls_say_what_is_on_the_other_end(self):
        """http:// to a plain HTTP server: use curl; http:// to TLS: use https://;
        https:// to a plain HTTP server: no suggestion that goes round in a circle."""
        plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PlainHTTP)
        threading.Thread(target=plain.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.addCleanup(plain.server_close)
        self.addCleanup(plain.shutdown)
        port = plain.server_address[1]
        with RunningServer() as srv:
            self.check_urls([
                (f"http://127.0.0.1:{port}/", ["does not speak TLS",
                                               f"-- for a plain HTTP server use curl http://127.0.0.1:{port}/"]),
                (srv.url.replace("https", "http"), ["speaks TLS", f"-- use {srv.url}"]),
            ])
        done = run_client("--cacert", path("ca.crt"), f"https://127.0.0.1:{port}/")
        self.assertErrorLine(done, client.EXIT_TLS, "not TLS", f"curl http://127.0.0.1:{port}/")
        self.assertNotIn("is it an http:// server", done.stderr)

    def test_an_http_url_to_the_tls_port_presents_no_certificate(self):
        """The probe behind "speaks TLS -- use https://" is not a request: the
        server never sees our certificate, so it logs no 'accepted' line."""
        with RunningServer() as srv:
            done = run_client("--cacert", path("ca.crt"), "--cert", path("client.crt"),
                              "--key", path("client.key"), srv.url.replace("https", "http"))
            self.assertErrorLine(done, client.EXIT_USAGE, "bad URL", f"-- use {srv.url}")
            self.assertTrue(srv.log.wait_for(lambda l: l.startswith("rejected"), timeout=5),
                            srv.log.lines)
            self.assertEqual([l for l in srv.log.lines if l.startswith("accepted")], [])

    def test_on_an_80_column_terminal_the_error_is_wrapped_between_words(self):
        """A projector's terminal: the one error wraps at its width, no word cut;
        a pipe (the other tests) gets it as one line."""
        import fcntl
        import pty
        import struct
        import termios
        main_fd, child_fd = pty.openpty()
        fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        port = free_port()
        proc = subprocess.Popen([PYTHON, os.path.join(ROOT, "client.py"), "--cacert",
                                 path("ca.crt"), f"https://localhost:{port}/"],
                                stdin=child_fd, stdout=child_fd, stderr=child_fd, cwd=ROOT)
        os.close(child_fd)
        proc.wait(30)
        output = b""
        while True:                                   # the child is gone: read what it left
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:                           # EIO: nothing more
                break
            if not chunk:
                break
            output += chunk
        os.close(main_fd)
        lines = output.decode().replace("\r", "").splitlines()
        self.assertGreater(len(lines), 1, lines)
        self.assertLessEqual(max(map(len, lines)), 80, lines)
        self.assertRegex(" ".join(l.strip() for l in lines),
                         rf"^error: connection refused: nothing listens on localhost:{port} -- "
                         rf"start the server \(make run .*PORT={port}\) or fix the URL$")

    def test_an_ipv6_address_is_printed_in_brackets(self):
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
                port = s.getsockname()[1]                # closed again: nothing listens
        except OSError:
            self.skipTest("no IPv6 loopback here")
        done = run_client("--cacert", path("ca.crt"), f"https://[::1]:{port}/")
        self.assertErrorLine(done, client.EXIT_CONNECT, "connection refused",
                             f"nothing listens on [::1]:{port};")

    def test_nothing_on_ipv6_points_at_the_ipv4_server_that_make_run_starts(self):
        """make run listens on localhost, which server.py takes as 127.0.0.1 only:
        a request to [::1] is refused, and the fix names the URL that works."""
        with RunningServer(host="localhost") as srv:
            done = run_client("--cacert", path("ca.crt"), "--cert", path("client.crt"),
                              "--key", path("client.key"), f"https://[::1]:{srv.port}/")
            self.assertErrorLine(done, client.EXIT_CONNECT, "connection refused",
                                 "listens on 127.0.0.1 only",
                                 f"try https://127.0.0.1:{srv.port}/", "--host ::1")
            works = run_client("--cacert", path("ca.crt"), "--cert", path("client.crt"),
                               "--key", path("client.key"), f"https://127.0.0.1:{srv.port}/")
            self.assertEqual(works.returncode, 0, works.stderr)

    def test_the_start_command_for_a_refused_connection_keeps_the_port_and_folder(self):
        """make client PORT=42002 with no server: the make run it suggests must
        serve on that port (and the CERTS folder used), not on 3000."""
        port = free_port()
        done = run_client("--cacert", path("ca.crt"), f"https://localhost:{port}/")
        self.assertErrorLine(done, client.EXIT_CONNECT, "connection refused",
                             f"(make run CERTS={pki()} PORT={port})")
        default = run_client("--cacert", "certs/ca.crt", "https://localhost:3000/")
        if "connection refused" in default.stderr:       # unless something listens on 3000
            self.assertIn("start the server (make run) or fix the URL", default.stderr)


# --- files: the exact problem, and the target that makes them -------------------

class FileTest(ClientTestCase):

    def test_a_missing_file_names_the_make_target_that_makes_it(self):
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        certs = os.path.join(folder, "certs")
        cases = [
            (["--cacert", f"{certs}/ca.crt"], f"run 'make certs CERTS={certs}' first, or fix --cacert"),
            (["--cacert", path("ca.crt"), "--cert", f"{certs}/expired-client.crt", "--key",
              path("client.key")], f"run 'make scenarios CERTS={certs}' first, or fix --cert"),
            (["--cacert", f"{certs}/article/ca.crt"],
             f"run 'make article-certs CERTS={certs}' first, or fix --cacert"),
            (["--cacert", f"{folder}/my-ca.pem"], "not found -- fix --cacert"),
        ]
        for args, words in cases:
            with self.subTest(args=args):
                self.assertErrorLine(run_client(*args, "https://localhost:1/"),
                                     client.EXIT_USAGE, "missing file", words)
        self.assertNotIn("make", run_client("--cacert", f"{folder}/my-ca.pem").stderr)

    def test_a_leaf_as_cacert_is_named_not_blamed_on_the_server(self):
        """--cacert with a client's or a server's own certificate: it holds no CA."""
        for leaf in ("client.crt", "server.crt"):
            with self.subTest(cacert=leaf):
                done = run_client("--cacert", path(leaf), "https://localhost:1/")
                self.assertErrorLine(done, client.EXIT_USAGE, "bad file", "holds no CA certificate",
                                     "-- pass the CA that signed the server's, e.g. --cacert certs/ca.crt")

    def test_a_key_of_another_type_does_not_match(self):
        """An EC key with an RSA certificate (or the reverse) is a mismatch, not a format problem."""
        done = run_client("--cacert", path("ca.crt"), "--cert", path("client.crt"),
                          "--key", find("other-type.key"), "https://localhost:1/")
        self.assertErrorLine(done, client.EXIT_USAGE, "bad file",
                             "is not the private key of", "they do not match")

    @unittest.skipUnless(shutil.which("bash"), "bash not installed: apt-get install bash")
    def test_pipes_are_read_like_files_and_an_empty_file_is_named(self):
        """--cacert <(cat ca.crt) --cert <(cat ...) --key <(cat ...) works, as with curl;
        /dev/null is 'empty'."""
        with RunningServer() as srv:
            command = (f'exec "$0" client.py --cacert <(cat "$1") --cert <(cat "$2") '
                       f'--key <(cat "$3") "$4"')
            done = subprocess.run(["bash", "-c", command, PYTHON, path("ca.crt"),
                                   path("client.crt"), path("client.key"), srv.url], cwd=ROOT,
                                  capture_output=True, text=True, timeout=30)
        self.assertEqual((done.returncode, done.stdout), (0, "Hello, my-client\n"), done.stderr)
        self.assertErrorLine(run_client("--cacert", "/dev/null"), client.EXIT_USAGE, "bad file",
                             "CA certificate '/dev/null' is empty")

    def test_a_key_others_can_read_draws_one_warning_and_the_request_still_runs(self):
        """A private key of mode 0644 (in --key, or inside --cert): one warning line on
        stderr, as server.py gives, and the answer; 0600: nothing on stderr."""
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        both = os.path.join(folder, "client-and-key.pem")
        concatenate([path("client.crt"), path("client.key")], both)
        key = os.path.join(folder, "client.key")
        shutil.copy(path("client.key"), key)
        with RunningServer() as srv:
            for mode, args, exposed in [
                    (0o644, ["--cert", path("client.crt"), "--key", key], key),
                    (0o600, ["--cert", path("client.crt"), "--key", key], key),
                    (0o640, ["--cert", both], both)]:
                with self.subTest(mode=oct(mode), file=os.path.basename(exposed)):
                    os.chmod(exposed, mode)
                    done = run_client("--cacert", path("ca.crt"), *args, srv.url)
                    self.assertEqual((done.returncode, done.stdout), (0, "Hello, my-client\n"),
                                     done.stderr)
                    warning = (f"warning: {exposed} has mode {mode:04o}, readable by other "
                               f"users -- chmod 600 {exposed}\n")
                    self.assertEqual(done.stderr, warning if mode != 0o600 else "")

    def test_a_der_file_gets_the_command_that_converts_it(self):
        ca, cert, key = find("ca.der"), find("client.der"), find("client-key.der")
        cases = [
            (["--cacert", ca], f"openssl x509 -inform DER -in {ca} -out {ca}.pem"),
            (["--cert", cert, "--key", path("client.key")],
             f"openssl x509 -inform DER -in {cert} -out {cert}.pem"),
            (["--cert", path("client.crt"), "--key", key],
             f"openssl pkey -inform DER -in {key} -out {key}.pem"),
        ]
        for args, words in cases:
            with self.subTest(args=args):
                self.assertErrorLine(run_client(*args, "https://localhost:1/"),
                                     client.EXIT_USAGE, "bad file", "in DER (binary) form", words)

    def test_bad_options_use_the_one_error_format(self):
        self.assertErrorLine(run_client("--timeout", "0"), client.EXIT_USAGE, "bad option",
                             "'0' is not a number of seconds more than 0")
        self.assertErrorLine(run_client("--bogus"), client.EXIT_USAGE, "bad option",
                             "unknown option '--bogus' -- use one of --help, --cacert")

    def test_a_mistyped_option_gets_the_option_meant_not_a_complaint_about_the_url(self):
        """--certs (for --cert) and curl's -cacert took the next word as the URL, and
        argparse named the real URL as the unrecognized argument."""
        for typo, meant in (("--certs", "--cert"), ("-cacert", "--cacert"), ("--kye", "--key")):
            done = run_client(typo, path("client.crt"), "https://localhost:3000/")
            self.assertErrorLine(done, client.EXIT_USAGE, "bad option",
                                 f"unknown option '{typo}' -- did you mean {meant}?")
            self.assertNotIn("https://localhost:3000/", done.stderr)


# --- --keylog: secrets go only to a private file of our own ---------------------

class KeylogTest(ClientTestCase):

    def setUp(self):
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)
        self.keys = os.path.join(self.folder, "keys.txt")

    def keylog(self, *args, env=None):
        return run_client("--cacert", path("ca.crt"), "--keylog", self.keys, *args,
                          "https://localhost:1/", env=env)

    def test_a_new_key_log_is_created_0600(self):
        done = subprocess.run(["sh", "-c", 'umask 000; exec "$@"', "sh", PYTHON, "client.py",
                               "--cacert", path("ca.crt"), "--keylog", self.keys,
                               "https://localhost:1/"], cwd=ROOT, capture_output=True, text=True,
                              timeout=30)
        self.assertIn("connection refused", done.stderr)      # got as far as connecting
        self.assertEqual(os.stat(self.keys).st_mode & 0o777, 0o600)

    def test_a_key_log_others_can_read_is_refused(self):
        for mode in (0o644, 0o640, 0o604):
            with self.subTest(mode=oct(mode)):
                with open(self.keys, "w"):
                    pass
                os.chmod(self.keys, mode)
                self.assertErrorLine(self.keylog(), client.EXIT_USAGE, "bad file",
                                     f"has mode {mode:04o}: other users could read",
                                     f"chmod 600 {self.keys}")
                self.assertEqual(os.stat(self.keys).st_mode & 0o777, mode)    # untouched

    def test_a_symlink_is_refused_and_its_target_left_alone(self):
        target = os.path.join(self.folder, "someone-elses.txt")
        with open(target, "w") as f:
            f.write("theirs\n")
        os.symlink(target, self.keys)
        self.assertErrorLine(self.keylog(), client.EXIT_USAGE, "bad file", "is a symbolic link")
        with open(target) as f:
            self.assertEqual(f.read(), "theirs\n")

    def test_a_key_log_that_is_not_a_regular_file_is_refused(self):
        """A FIFO, with a reader or without one (where opening it to write would wait)."""
        os.mkfifo(self.keys, 0o600)
        self.assertErrorLine(self.keylog(), client.EXIT_USAGE, "bad file", "is not a regular file")
        reader = os.open(self.keys, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        self.assertErrorLine(self.keylog(), client.EXIT_USAGE, "bad file", "is not a regular file")

    def test_sslkeylogfile_in_the_environment_is_ignored(self):
        """ssl.create_default_context() honours SSLKEYLOGFILE; client.py's context must not."""
        env = dict(os.environ, SSLKEYLOGFILE=self.keys)
        saved = os.environ.get("SSLKEYLOGFILE")
        os.environ["SSLKEYLOGFILE"] = self.keys
        try:
            self.assertEqual(ssl.create_default_context().keylog_filename, self.keys)  # the trap
            self.assertIsNone(context().keylog_filename)
        finally:
            if saved is None:
                del os.environ["SSLKEYLOGFILE"]
            else:
                os.environ["SSLKEYLOGFILE"] = saved
        os.remove(self.keys)
        with RunningServer() as srv:
            done = run_client("--cacert", path("ca.crt"), "--cert", path("client.crt"),
                              "--key", path("client.key"), srv.url, env=env)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertFalse(os.path.exists(self.keys), "SSLKEYLOGFILE switched key logging on")


# --- Python versions --------------------------------------------------------------

def old_pythons():
    """Interpreters older than 3.9 that pyenv has here."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for version in ("3.6.15", "3.7.16", "3.8.18"):
        exe = os.path.join(root, "versions", version, "bin", "python3")
        if os.access(exe, os.X_OK):
            found.append((version, exe))
    return found


class PythonVersionTest(ClientTestCase):

    def test_python_older_than_3_9_gets_one_line(self):
        found = old_pythons()
        if not found:
            self.skipTest("no Python older than 3.9 under pyenv")
        for version, exe in found:
            with self.subTest(version=version):
                done = subprocess.run([exe, "client.py", "--cacert", path("ca.crt")], cwd=ROOT,
                                      capture_output=True, text=True, timeout=30)
                short = ".".join(version.split(".")[:2])
                self.assertEqual((done.returncode, done.stderr),
                                 (2, f"error: unsupported Python: client.py needs Python 3.9+ "
                                     f"(this is {short}) -- run it with python3.9 or newer\n"))


if __name__ == "__main__":
    unittest.main()
