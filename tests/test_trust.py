"""The trust audit, proven: nothing gets in that shouldn't.

Each test states one rule of server.py's trust boundary and breaks it the
way a real deployment would: a CRL file with a CA appended, an expired
client that keeps resuming its session, a client that is not on the
allow-list sending a second request, a crowd of silent connections, a
planted key log file. Real handshakes on 127.0.0.1, real certificates made
here with the openssl binary (a small CA of our own, through `openssl ca`,
which can set any date and revoke).

Chapters: a CA for the tests, what --crl and --ca may hold, revocation
through a chain, resumption after expiry, authorization per connection,
typed identities, the waiting room, shutdown, the key log, warnings and
wrong files, what the log says.
"""

import http.client
import http.server
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import quote

from tests.support import (PYTHON, ROOT, LogCollector, RunningServer, ServerProcess, cert_config,
                           path, server_files, wait_until)
from tests.support import openssl as support_openssl

import client
import server
from armour import slow_clients

GREETING = (200, "Hello, my-client\n")
# The random of a ServerHello that is a HelloRetryRequest: SHA-256("HelloRetryRequest").
HELLO_RETRY_REQUEST = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891"
                                    "c2a211167abb8c5e079e09e2c8a8339c")
# The shared config (tests.support), and the two CAs and the server this module adds:
# a CA that is also a client, and a server leaf that names no host.
EXTENSIONS = cert_config("""\
[ca_client]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server_no_san]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
""")


def openssl(*args, cwd=None, env=None):
    """tests.support's openssl, with TEST_CN set (ext.cnf names it; only `req` uses it)."""
    env = dict(env or os.environ)
    env.setdefault("TEST_CN", "unused")
    return support_openssl(*args, cwd=cwd, env=env)


def stamp(seconds_from_now):
    """A date for openssl ca (YYYYMMDDHHMMSSZ), relative to now."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + seconds_from_now))


class TestCA:
    """A CA made with `openssl ca`, in a folder of its own: it issues
    certificates with any dates and extensions, revokes, and publishes CRLs."""

    def __init__(self, folder, name, issuer=None, start=None, end=None):
        self.folder, self.name = folder, name
        self.db = os.path.join(folder, name + "-db")
        os.makedirs(self.db)
        for file, text in [("index.txt", ""), ("serial", "1000\n"), ("crlnumber", "1000\n")]:
            with open(os.path.join(self.db, file), "w") as f:
                f.write(text)
        self.key = self.new_key(name)
        self.crt = os.path.join(folder, name + ".crt")
        csr = self.request(name, name)
        signer = issuer or self
        signer.sign(csr, self.crt, "ca", start=start or stamp(-3600), end=end or stamp(86400),
                    selfsign=issuer is None)

    def new_key(self, name):
        key = os.path.join(self.folder, name + ".key")
        if not os.path.exists(key):
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        return key

    def request(self, name, cn, key=None):
        csr = os.path.join(self.folder, name + ".csr")
        env = dict(os.environ, TEST_CN=cn)
        config = os.path.join(self.folder, "ext.cnf")
        if not os.path.exists(config):
            with open(config, "w") as f:
                f.write(EXTENSIONS.replace("CN = unused", "CN = $ENV::TEST_CN"))
        openssl("req", "-new", "-utf8", "-key", key or self.new_key(name), "-config", config,
                "-out", csr, env=env)
        return csr

    def sign(self, csr, out, extensions, start=None, end=None, selfsign=False, extfile=None):
        args = ["ca", "-batch", "-notext", "-config", os.path.join(ROOT, "ca.cnf"),
                "-keyfile", self.key, "-in", csr, "-out", out, "-md", "sha256",
                "-extfile", extfile or os.path.join(self.folder, "ext.cnf"), "-extensions", extensions,
                "-startdate", start or stamp(-3600), "-enddate", end or stamp(86400), "-utf8"]
        args += ["-selfsign"] if selfsign else ["-cert", self.crt]
        openssl(*args, env=dict(os.environ, CA_DIR=self.db))

    def issue(self, name, cn=None, extensions="client", start=None, end=None, key=None, extra=None):
        """A certificate for `name` (CN `cn`), signed by this CA; returns (crt, key)."""
        key = key or self.new_key(name)
        csr = self.request(name, cn or name, key)
        crt = os.path.join(self.folder, name + ".crt")
        extfile = None
        if extra:                       # extra extension lines for this one certificate
            extfile = os.path.join(self.folder, name + ".ext")
            with open(os.path.join(self.folder, "ext.cnf")) as f:
                base = f.read()
            with open(extfile, "w") as f:
                f.write(base.replace(f"[{extensions}]", f"[{extensions}]\n{extra}"))
        self.sign(csr, crt, extensions, start, end, extfile=extfile)
        return crt, key

    def revoke(self, crt):
        openssl("ca", "-config", os.path.join(ROOT, "ca.cnf"), "-keyfile", self.key,
                "-cert", self.crt, "-revoke", crt, env=dict(os.environ, CA_DIR=self.db))

    def crl(self, name=None, last=None, next=None, extensions=None):
        """A CRL from this CA; `extensions`, config lines of CRL extensions for it alone."""
        out = os.path.join(self.folder, (name or self.name) + ".crl")
        config = os.path.join(ROOT, "ca.cnf")
        if extensions:                  # ca.cnf, with our own crl_ext section last
            with open(config) as f:
                base = f.read()
            config = os.path.join(self.folder, (name or self.name) + "-crl.cnf")
            with open(config, "w") as f:
                f.write(base + f"\n[test_crl_ext]\n{extensions}\n")
        args = ["ca", "-gencrl", "-config", config, "-keyfile", self.key,
                "-cert", self.crt, "-out", out]
        args += ["-crlexts", "test_crl_ext"] if extensions else []
        args += ["-crl_lastupdate", last] if last else []
        args += ["-crl_nextupdate", next] if next else ["-crldays", "1"]
        openssl(*args, env=dict(os.environ, CA_DIR=self.db))
        return out


FOLDER = None
CA = None          # our own CA for these tests, with an intermediate below it


def setUpModule():
    global FOLDER, CA
    FOLDER = tempfile.mkdtemp(prefix="mtls-trust-")
    CA = TestCA(FOLDER, "root")
    CA.server = CA.issue("server", "localhost", "server")
    CA.client = CA.issue("client", "my-client")
    CA.rogue = TestCA(FOLDER, "rogue")
    CA.rogue_client = CA.rogue.issue("rogue-client", "my-client")
    CA.int = TestCA(FOLDER, "int", issuer=CA)
    CA.int_client = CA.int.issue("int-client", "my-client")


def tearDownModule():
    shutil.rmtree(FOLDER, ignore_errors=True)


def concat(name, *files):
    """A file holding the given files one after the other (as `cat` makes)."""
    out = os.path.join(FOLDER, name)
    with open(out, "w") as f:
        for file in files:
            with open(file) as part:
                f.write(part.read())
    return out


def our_server(**options):
    """A RunningServer on our test CA's files, unless options say otherwise."""
    files = dict(ca=CA.crt, cert=CA.server[0], key=CA.server[1])
    files.update({k: options.pop(k) for k in list(options) if k in ("ca", "cert", "key", "crl")})
    return RunningServer(**files, **options)


def context(cert=None, key=None, cacert=None, tls12=False):
    ctx = client.make_client_context(cacert or CA.crt, cert or CA.client[0], key or CA.client[1])
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def read_all(tls):
    """Everything the server sends until it hangs up (or resets)."""
    reply = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except (ssl.SSLError, OSError):
            return reply
        if not chunk:
            return reply
        reply += chunk


def fetch(srv, ctx):
    """(200, body) for a greeting, "HTTP 403" for another status, else client.py's label."""
    try:
        status, body = client.fetch(srv.url, ctx, timeout=5)
    except client.Failure as failure:
        return failure.label
    return (status, body) if status == 200 else f"HTTP {status}"


def run(*args, timeout=20):
    return subprocess.run([PYTHON, os.path.join(ROOT, "server.py"), "--host", "127.0.0.1",
                           "--port", "0"] + list(args), cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


# --- what --crl and --ca may hold ---------------------------------------------------

class CRLAddsNoTrustTest(unittest.TestCase):
    """--crl must never add trust: a CRL file is read for CRLs only."""

    def test_a_crl_file_with_another_ca_appended_is_refused_at_start(self):
        """The attack: a rogue CA's certificate and CRL appended to our CRL file. Before this
        rule, the rogue CA's client was greeted as my-client; now the server does not start."""
        bundle = concat("bundle.crl", CA.crl(), CA.rogue.crt, CA.rogue.crl())
        with self.assertRaises(server.ConfigError) as caught:
            server.make_server_context(CA.crt, CA.server[0], CA.server[1], crl=[bundle])
        self.assertIn("also holds CERTIFICATE blocks", str(caught.exception))
        done = run("--ca", CA.crt, "--cert", CA.server[0], "--key", CA.server[1], "--crl", bundle)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertRegex(done.stderr, r"^error: bad file: CRL file '.*bundle.crl' also holds "
                                      r"CERTIFICATE blocks.* -- pass a file with only CRLs")

    def test_a_delta_or_indirect_crl_is_refused_at_start_and_on_reload(self):
        """An empty delta CRL beside the base CRL that revokes a client: OpenSSL took the delta
        for a complete list (the newer one) and greeted the revoked client. Now such a file is
        refused at start in one line, and a reload to it keeps the previous CRL."""
        ca = TestCA(FOLDER, "delta-ca")
        srv_files = ca.issue("delta-server", "localhost", "server")
        revoked = ca.issue("delta-revoked", "my-client")
        ca.revoke(revoked[0])
        base = ca.crl("delta-base")
        delta = ca.crl("delta-delta", extensions="authorityKeyIdentifier = keyid:always\n"
                                                 "2.5.29.27 = critical, DER:02:02:10:00")
        indirect = ca.crl("delta-indirect", extensions="2.5.29.28 = critical, DER:30:03:84:01:FF")
        files = dict(ca=ca.crt, cert=srv_files[0], key=srv_files[1])
        for crls, kind in [([base, delta], "a delta CRL"), ([concat("bd.pem", base, delta)],
                                                             "a delta CRL"),
                           ([indirect], "an indirect CRL")]:
            with self.subTest(kind=kind, files=len(crls)):
                with self.assertRaises(server.ConfigError) as caught:
                    server.make_server_context(crl=crls, **files)
                self.assertIn(f"holds {kind}", caught.exception.what)
                self.assertIn("pass the CA's full (base) CRL", caught.exception.fix)
        done = run(*[a for k, v in files.items() for a in (f"--{k}", v)], "--crl", base,
                   "--crl", delta)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertEqual(done.stderr.count("\n"), 1, done.stderr)
        self.assertIn("delta CRL (deltaCRLIndicator) from delta-ca", done.stderr)
        # A reload to base + delta: refused, and the revoked client stays out.
        crl = concat("delta-live.pem", base)
        with our_server(crl=[crl], **files) as srv:
            revoked_ctx = context(*revoked, cacert=ca.crt)
            self.assertEqual(fetch(srv, revoked_ctx), "certificate revoked")
            concat("delta-live.pem", base, delta)
            start = len(srv.log.lines)
            srv.server.request_reload()
            answer = srv.log.wait_for(lambda l: "reload" in l, start=start)
            self.assertIn("reload failed, still serving with the previous certificates", answer)
            self.assertEqual(fetch(srv, revoked_ctx), "certificate revoked")

    def test_loading_crls_leaves_the_trust_store_as_it_was(self):
        """Two CRLs, each with its own --crl: one more CRL each, and no certificate."""
        ctx = server.make_server_context(CA.crt, CA.server[0], CA.server[1],
                                         crl=[CA.crl(), CA.int.crl()])
        self.assertEqual(ctx.cert_store_stats(), {"x509": 1, "x509_ca": 1, "crl": 2})

    def test_a_ca_file_without_a_ca_certificate_is_refused(self):
        """--ca with a CRL or a leaf would start a server that refuses everyone: refuse it."""
        for wrong in (CA.crl(), CA.client[0]):
            with self.subTest(ca=os.path.basename(wrong)):
                done = run("--ca", wrong, "--cert", CA.server[0], "--key", CA.server[1])
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertRegex(done.stderr, r"^error: bad file: .* (holds no CA certificate|"
                                              r"holds no PEM certificate)")
                self.assertEqual(len(done.stderr.splitlines()), 1)


# --- revocation through a chain -----------------------------------------------------

class RevocationTest(unittest.TestCase):
    """CRLs from each CA, one --crl each; --crl-chain checks every link."""

    def chain(self):
        return concat("int-client-chain.pem", CA.int_client[0], CA.int.crt)

    def test_leaf_checking_needs_the_issuers_crl(self):
        """VERIFY_CRL_CHECK_LEAF: the intermediate's client needs the intermediate's CRL.
        Without it: verify error 3, and the server says which CRL is missing."""
        with our_server(crl=[CA.crl()]) as srv:
            self.assertEqual(fetch(srv, context(self.chain(), CA.int_client[1])), "unknown CA")
            line = srv.log.wait_for(lambda l: l.startswith("rejected"))
            self.assertIn("no CRL for a CA in the client's chain", line)
        with our_server(crl=[CA.crl(), CA.int.crl()]) as srv:
            self.assertEqual(fetch(srv, context(self.chain(), CA.int_client[1])), GREETING)

    def test_crl_chain_catches_a_revoked_intermediate(self):
        """The root revokes the intermediate. Leaf checking does not notice; --crl-chain does."""
        folder = tempfile.mkdtemp(dir=FOLDER)
        root = TestCA(folder, "root2")
        inter = TestCA(folder, "int2", issuer=root)
        leaf = inter.issue("leaf2", "my-client")
        chain = concat("leaf2-chain.pem", leaf[0], inter.crt)
        root.revoke(inter.crt)
        crls = [root.crl(), inter.crl()]
        ctx = context(chain, leaf[1], cacert=CA.crt)
        with our_server(ca=root.crt, crl=crls) as srv:
            self.assertEqual(fetch(srv, ctx), GREETING)          # the hole leaf checking leaves
        context_chain = server.make_server_context(root.crt, CA.server[0], CA.server[1],
                                                   crl=crls, crl_chain=True)
        self.assertTrue(context_chain.verify_flags & ssl.VERIFY_CRL_CHECK_CHAIN)
        done = ServerProcess("--ca", root.crt, "--cert", CA.server[0], "--key", CA.server[1],
                             "--crl", crls[0], "--crl", crls[1], "--crl-chain")
        try:
            self.assertEqual(fetch(done, ctx), "certificate revoked")
            self.assertIsNotNone(done.log.wait_for(lambda l: "has been revoked" in l))
        finally:
            done.stop()


class CRLIssuerTest(unittest.TestCase):
    """A CRL from a CA that is not in --ca, in place of its own: one warning at start."""

    def start(self, *crls):
        """server.py on our CA and these CRLs: (its start-up log, the CRL warnings in it),
        with the server still running (stopped by the test's cleanup)."""
        args = ["--ca", CA.crt, "--cert", CA.server[0], "--key", CA.server[1]]
        srv = ServerProcess(*args, *[a for crl in crls for a in ("--crl", crl)], test=self)
        return srv, [l for l in srv.text().splitlines() if "not a CA in --ca" in l]

    def assertRefusedForNoCRL(self, srv):
        """Our client is refused, and the log says why: no CRL for our CA."""
        self.assertEqual(fetch(srv, context()), "unknown CA")
        line = srv.log.wait_for(lambda l: l.startswith("rejected"))
        self.assertIn("no CRL for a CA in the client's chain", line)

    def test_another_cas_crl_is_named_and_the_server_starts(self):
        """The rogue CA's CRL (openssl ca -gencrl) as our --crl: one line naming rogue and
        the fix; the server starts, and refuses our client "no CRL", as the line says."""
        srv, warnings = self.start(CA.rogue.crl())
        self.assertEqual(len(warnings), 1, srv.text())
        self.assertRegex(warnings[0], r"^warning: CRL '.*rogue.crl' is from rogue, which is "
                                      r"not a CA in --ca '.*root.crt'; the CA there, root, has "
                                      r"no CRL, so every client certificate root signed is "
                                      r"refused \('no CRL for a CA in the client's chain'\), and "
                                      r"this CRL is used only if clients send rogue as an "
                                      r"intermediate -- pass the CRL of the CA in --ca \(make "
                                      r"crl makes certs/ca.crl\)$")
        self.assertRefusedForNoCRL(srv)

    def test_a_crl_with_our_cas_name_and_another_key_is_named(self):
        """A CA named root, as ours is, with a key of its own: its CRL's authorityKeyIdentifier
        is not our CA's subjectKeyIdentifier, so it is not our CA's CRL."""
        twin = TestCA(tempfile.mkdtemp(dir=FOLDER), "root")
        srv, warnings = self.start(twin.crl("twin"))
        self.assertEqual(len(warnings), 1, srv.text())
        self.assertRegex(warnings[0], r"is from a CA named root but with another key than "
                                      r"the root in --ca '.*root.crt' \(its "
                                      r"authorityKeyIdentifier differs\), so not a CA in --ca; "
                                      r"the CA there, root, has no CRL")
        self.assertRefusedForNoCRL(srv)

    def test_our_own_and_an_intermediates_crl_are_not_named(self):
        """Our CA's CRL, alone or with the intermediate's: no warning. The intermediate's
        alone: named, and true to its words: the intermediate's client, which sends it, is
        greeted; the root's own client is refused."""
        for crls in ([CA.crl()], [CA.crl(), CA.int.crl()]):
            with self.subTest(crls=[os.path.basename(c) for c in crls]):
                srv, warnings = self.start(*crls)
                self.assertEqual(warnings, [], srv.text())
                self.assertEqual(fetch(srv, context()), GREETING)
                srv.stop()
        srv, warnings = self.start(CA.int.crl())
        self.assertEqual(len(warnings), 1, srv.text())
        self.assertIn("used only if clients send int as an intermediate", warnings[0])
        chain = concat("int-client-chain.pem", CA.int_client[0], CA.int.crt)
        self.assertEqual(fetch(srv, context(chain, CA.int_client[1])), GREETING)
        self.assertEqual(fetch(srv, context()), "unknown CA")


# --- resumption after expiry ----------------------------------------------------------

class ResumptionTest(unittest.TestCase):
    """An expired client must not stay in by resuming its session."""

    def test_an_expired_client_cannot_resume(self):
        """TLS 1.3 and 1.2: a session begun while the certificate was valid is not
        resumed once it has expired (each resumption would hand out a new ticket)."""
        expires = int(time.time()) + 2
        end = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(expires))
        with our_server() as srv:
            sessions = {}
            for version in ("1.3", "1.2"):
                crt, key = CA.issue(f"short-{version}", "my-client", end=end)
                ctx = context(crt, key, tls12=version == "1.2")
                first = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=5)
                first.request("GET", "/")
                self.assertEqual(first.getresponse().read(), b"Hello, my-client\n")
                sessions[version] = (ctx, first.sock.session)
                first.close()
            while time.time() <= expires + 0.5:        # wait for the clock, not for a thread
                time.sleep(0.1)
            for version, (ctx, session) in sessions.items():
                with self.subTest(version=version):
                    start = len(srv.log.lines)
                    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
                        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                            self.assertTrue(tls.session_reused, "the session was not resumed")
                            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                            try:
                                reply = tls.recv(4096)
                            except (ssl.SSLError, OSError):
                                reply = b""
                    self.assertNotIn(b"Hello", reply)
                    line = srv.log.wait_for(lambda l: "checked again on a resumed session" in l,
                                            start=start)
                    self.assertRegex(line or "", r"^rejected 127\.0\.0\.1:\d+: client certificate "
                                                 r"expired on \d{4}-\d\d-\d\d")

    def test_no_session_outlives_the_session_lifetime(self):
        """--session-lifetime: the server renews its TLS context, and a session from the old
        one is not resumed: the client makes a full handshake, with every check, and is served."""
        ctx = context()
        with our_server(session_lifetime=0.3) as srv:
            first = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=5)
            first.request("GET", "/")
            first.getresponse().read()
            session, old = first.sock.session, srv.server.context
            first.close()
            deadline = time.monotonic() + 5                  # until the renewal has happened
            while srv.server.context is old and time.monotonic() < deadline:
                srv.log.wait_for(lambda l: False, timeout=0.05)
            self.assertIsNot(srv.server.context, old, "the context was not renewed")
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    self.assertIn(b"Hello, my-client", tls.recv(4096))
                    self.assertFalse(tls.session_reused)

    def test_the_ticket_lifetime_hint_says_7200_s_whatever_the_session_lifetime(self):
        """What the server.py comment on SESSION_LIFETIME says: Python's ssl cannot set the
        ticket lifetime hint, so a ticket says 7200 s (OpenSSL's default) even when sessions
        end after --session-lifetime 600 (then the client makes a full handshake, above)."""
        with our_server(session_lifetime=600) as srv:
            conn = http.client.HTTPSConnection("localhost", srv.port, context=context(), timeout=5)
            conn.request("GET", "/")
            conn.getresponse().read()
            session = conn.sock.session
            conn.close()
        self.assertTrue(session.has_ticket)
        self.assertEqual(session.ticket_lifetime_hint, 7200)
        self.assertEqual(srv.server.session_lifetime, 600)

    def test_an_open_connection_ends_after_a_reload(self):
        """A keep-alive connection is as old as its handshake: after a reload it is
        answered once more, then closed, and the client must handshake again."""
        with our_server() as srv:
            conn = http.client.HTTPSConnection("localhost", srv.port, context=context(), timeout=5)
            conn.request("GET", "/")
            conn.getresponse().read()
            srv.server.reload()
            conn.request("GET", "/")
            response = conn.getresponse()
            self.assertEqual(response.read(), b"Hello, my-client\n")
            self.assertEqual(response.getheader("Connection"), "close")
            conn.close()

    def test_an_unrelated_expired_ca_does_not_stop_resumption(self):
        """An old, expired CA in the --ca bundle, beside ours: our clients still resume."""
        folder = tempfile.mkdtemp(dir=FOLDER)
        old = TestCA(folder, "old-unrelated", start="20200101000000Z", end="20210101000000Z")
        bundle = concat("bundle-with-old.pem", CA.crt, old.crt)
        ctx = context()
        with our_server(ca=bundle) as srv:
            first = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=5)
            first.request("GET", "/")
            first.getresponse().read()
            session = first.sock.session
            first.close()
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    self.assertTrue(tls.session_reused)
                    self.assertIn(b"Hello, my-client", tls.recv(4096))

    def test_a_valid_client_still_resumes(self):
        ctx = context()
        with our_server() as srv:
            first = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=5)
            first.request("GET", "/")
            first.getresponse().read()
            session = first.sock.session
            first.close()
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    self.assertIn(b"Hello, my-client", tls.recv(4096))
                    self.assertTrue(tls.session_reused)


# --- authorization per connection -----------------------------------------------------

class AuthorizationTest(unittest.TestCase):
    """A client not on --allow gets one 403 with Connection: close, one 'forbidden' line,
    and the connection ends: no second request, whatever the method."""

    def setUp(self):
        self.other = CA.issue("other", "other-client")
        self.srv = our_server(allow=["cn:my-client"]).__enter__()
        self.addCleanup(self.srv.__exit__)

    def test_forbidden_ends_the_connection(self):
        raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
        with context(*self.other).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reply = b""
            while True:                              # read until the server hangs up
                try:
                    chunk = tls.recv(4096)
                except (ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 403 "), reply)
            self.assertIn(b"\r\nConnection: close", head)
            self.assertIn(b"cn:other-client is not on the allow-list", body)
            with self.assertRaises(OSError):         # a second request finds the door shut
                for _ in range(3):
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    if not tls.recv(4096):
                        raise ConnectionResetError("closed")
        lines = [l for l in self.srv.log.lines if "127.0.0.1" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"^forbidden 127\.0\.0\.1:\d+: cn:other-client is not on "
                                   r"the allow-list \(--allow\)$")

    def test_every_method_is_forbidden(self):
        for method in ("HEAD", "POST", "PUT", "DELETE", "BREW"):
            with self.subTest(method=method):
                conn = http.client.HTTPSConnection("localhost", self.srv.port, timeout=5,
                                                   context=context(*self.other))
                conn.request(method, "/", body=b"x" if method in ("POST", "PUT") else None)
                self.assertEqual(conn.getresponse().status, 403)
                conn.close()

    def test_the_allowed_client_keeps_its_connection(self):
        conn = http.client.HTTPSConnection("localhost", self.srv.port, timeout=5, context=context())
        for _ in range(3):
            conn.request("HEAD", "/")
            response = conn.getresponse()
            response.read()
            self.assertEqual(response.status, 200)
        conn.close()


# --- typed identities ---------------------------------------------------------------------

class IdentityTest(unittest.TestCase):
    """Identities are the SAN entries, typed, or the CN when there is no SAN;
    --allow names one by type and exact value, and nothing else is accepted."""

    def assertForbidden(self, crt, key, why):
        """The client is authenticated, then refused: a 403, and a log line saying why."""
        with our_server() as srv:
            self.assertEqual(fetch(srv, context(crt, key)), "HTTP 403")
            line = srv.log.wait_for(lambda l: l.startswith("forbidden"))
            self.assertIn(why, line or "")

    def test_old_and_copied_spellings_are_refused_with_the_right_one(self):
        for given, right in [("my-client", "cn:my-client"), ("CN=my-client", "cn:my-client"),
                             ("/CN=my-client", "cn:my-client"),
                             ("subject=CN = my-client", "cn:my-client"),
                             ("spiffe://example.org/x", "uri:spiffe://example.org/x"),
                             ("URI:spiffe://example.org/x", "uri:spiffe://example.org/x"),
                             ("DNS:svc.local", "dns:svc.local"), ("IP Address:10.0.0.1", "ip:10.0.0.1"),
                             ("", "cn:NAME")]:
            with self.subTest(allow=given):
                done = run(*server_files(), "--allow", given)
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
                self.assertIn(f"-- write {right}", done.stderr)

    def test_a_san_hides_the_cn(self):
        """CN=my-client with a SAN of dns:svc.local: its identity is dns:svc.local only."""
        crt, key = CA.issue("san-client", "my-client", extra="subjectAltName = DNS:svc.local, DNS:b.local")
        with our_server(allow=["cn:my-client"]) as srv:
            self.assertEqual(fetch(srv, context(crt, key)), "HTTP 403")
        with our_server(allow=["dns:b.local"]) as srv:
            self.assertEqual(fetch(srv, context(crt, key)), (200, "Hello, svc.local\n"))
            line = srv.log.wait_for(lambda l: l.startswith("accepted"))
            self.assertRegex(line, r" as dns:svc\.local, dns:b\.local$")

    def test_typed_values_match_exactly(self):
        crt, key = CA.issue("spiffe", "x", extra="subjectAltName = URI:spiffe://example.org/a, IP:10.0.0.1")
        for allow, expected in [("uri:spiffe://example.org/a", 200),
                                ("uri:spiffe://example.org/", "HTTP 403"),
                                ("dns:spiffe://example.org/a", "HTTP 403"), ("ip:10.0.0.1", 200),
                                ("cn:x", "HTTP 403")]:
            with self.subTest(allow=allow):
                with our_server(allow=[allow]) as srv:
                    outcome = fetch(srv, context(crt, key))
                    self.assertEqual(outcome if outcome == "HTTP 403" else outcome[0], expected)

    def test_dns_names_match_in_any_case_and_only_they_do(self):
        """DNS names are case-insensitive (RFC 4343, RFC 6125 6.4.1): --allow dns:SVC.Example
        lets in DNS:svc.example, and the reverse, each logged as its certificate spells it;
        forwarded by a proxy too. CN, URI and email values still match exactly."""
        lower = CA.issue("dns-lower", "x", extra="subjectAltName = DNS:svc.example")
        upper = CA.issue("dns-upper", "x", extra="subjectAltName = DNS:SVC.Example")
        uri = CA.issue("uri-email", "x", extra="subjectAltName = URI:spiffe://example.org/A, "
                                              "email:Ann@example.org")
        for files, allow, expected in [(lower, "dns:SVC.Example", "dns:svc.example"),
                                       (upper, "dns:svc.example", "dns:SVC.Example"),
                                       (CA.client, "cn:My-Client", None),
                                       (uri, "uri:spiffe://example.org/a", None),
                                       (uri, "email:ann@example.org", None),
                                       (uri, "uri:spiffe://example.org/A", "uri:spiffe://")]:
            with self.subTest(allow=allow), our_server(allow=[allow]) as srv:
                outcome = fetch(srv, context(*files))
                line = srv.log.wait_for(lambda l: l.startswith(("accepted", "forbidden")))
                if expected is None:
                    self.assertEqual(outcome, "HTTP 403")
                    self.assertIn("is not on the allow-list", line)
                else:
                    self.assertEqual(outcome[0], 200, outcome)
                    self.assertRegex(line, r"^accepted .* as " + re.escape(expected))
        proxy = CA.issue("dns-proxy", "my-proxy")
        dns_proxy = CA.issue("dns-proxy-2", "p", extra="subjectAltName = DNS:Proxy.Example")
        for files, options in [(proxy, dict(trust_proxy="cn:my-proxy", allow=["dns:SVC.Example"])),
                               (dns_proxy, dict(trust_proxy="dns:proxy.example"))]:
            with self.subTest(**options), our_server(**options) as srv:
                conn = http.client.HTTPSConnection("localhost", srv.port, timeout=5,
                                                   context=context(*files))
                with open(lower[0]) as f:
                    conn.request("GET", "/", headers={"X-Client-Cert": quote(f.read())})
                self.assertEqual(conn.getresponse().read(), b"Hello, svc.example\n")
                conn.close()
                line = srv.log.wait_for(lambda l: l.startswith(("proxied", "forbidden")))
                self.assertRegex(line, r"^proxied .*: dns:svc\.example \(forwarded by ")

    def test_two_cns_are_refused(self):
        """/CN=guest/CN=my-client: which is it? A CA's check may have read the other one."""
        crt, key = CA.issue("two-cns", "guest")
        csr = os.path.join(FOLDER, "two-cns-2.csr")
        openssl("req", "-new", "-key", key, "-subj", "/CN=guest/CN=my-client", "-out", csr,
                "-config", os.path.join(FOLDER, "ext.cnf"))
        CA.sign(csr, crt, "client")
        self.assertForbidden(crt, key, "cn:guest, cn:my-client: 2 CN names, so no single identity")

    def test_a_ca_certificate_is_no_client(self):
        """A client certificate with CA:TRUE could sign any name, the proxy's too: refused."""
        crt, key = CA.issue("ca-client", "my-client", extensions="ca_client")
        self.assertForbidden(crt, key, "a CA certificate (basicConstraints CA:TRUE) is no client")

    def test_two_uri_sans_are_refused(self):
        crt, key = CA.issue("two-uris", "x", extra="subjectAltName = URI:spiffe://a.org/x, URI:spiffe://b.org/y")
        self.assertForbidden(crt, key, "2 URI names, so no single identity")

    def test_a_real_certificate_with_control_and_non_ascii_characters(self):
        """A CN with a newline, an escape and non-ASCII letters: one log line, escaped."""
        crt, key = CA.issue("odd", "évil\nfake line\x1b[2J")
        with our_server() as srv:
            status, body = fetch(srv, context(crt, key))
            self.assertEqual(status, 200)
            line = srv.log.wait_for(lambda l: l.startswith("accepted"))
            self.assertEqual(line.split(" as ", 1)[1], "cn:\\xe9vil\\nfake line\\x1b[2J")
        self.assertTrue(all(len(l.splitlines()) == 1 for l in srv.log.lines))


# --- the proxy's connection ---------------------------------------------------------------

class ProxyTest(unittest.TestCase):
    """--trust-proxy: the header is believed only on the proxy's connection, one request at a time."""

    def setUp(self):
        self.proxy = CA.issue("my-proxy", "my-proxy")
        self.other = CA.issue("other-p", "other-client")
        self.srv = our_server(trust_proxy="cn:my-proxy", allow=["cn:my-client"]).__enter__()
        self.addCleanup(self.srv.__exit__)

    def header(self, crt):
        import urllib.parse
        with open(crt) as f:
            return urllib.parse.quote(f.read())

    def test_a_body_cannot_smuggle_a_second_request(self):
        """A GET whose body is a whole request with a forged X-Client-Cert: the body is never
        parsed as a request; the connection ends after the answer."""
        smuggled = (f"GET / HTTP/1.1\r\nHost: x\r\nX-Client-Cert: {self.header(CA.client[0])}"
                    f"\r\n\r\n").encode()
        first = (f"GET / HTTP/1.1\r\nHost: x\r\nX-Client-Cert: {self.header(self.other[0])}\r\n"
                 f"Content-Length: {len(smuggled)}\r\n\r\n").encode() + smuggled
        raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
        with context(*self.proxy).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(first)
            reply = read_all(tls)
        self.assertEqual(reply.count(b"HTTP/1.1 "), 1, reply)
        self.assertIn(b"403", reply.split(b"\r\n")[0])
        self.assertNotIn(b"Hello, my-client", reply)
        self.assertFalse(any("proxied" in l and "my-client" in l for l in self.srv.log.lines))

    def test_smuggling_through_odd_body_headers_ends_the_connection(self):
        """Two Content-Lengths (the first 0), or a header name with a space before its colon:
        either the request is refused, or the connection ends after it: never a second request."""
        smuggled = (f"GET / HTTP/1.1\r\nHost: x\r\nX-Client-Cert: {self.header(CA.client[0])}"
                    f"\r\n\r\n").encode()
        heads = [f"Content-Length: 0\r\nContent-Length: {len(smuggled)}",
                 f"Content-Length : {len(smuggled)}",
                 "Transfer-Encoding: \r\nTransfer-Encoding: chunked"]
        for head in heads:
            with self.subTest(head=head):
                first = (f"POST / HTTP/1.1\r\nHost: x\r\nX-Client-Cert: "
                         f"{self.header(self.other[0])}\r\n{head}\r\n\r\n").encode() + smuggled
                raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
                with context(*self.proxy).wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(first)
                    reply = read_all(tls)
                self.assertEqual(reply.count(b"HTTP/1.1 "), 1, reply)
                self.assertNotIn(b"Hello, my-client", reply)

    def test_a_proxy_certificate_must_be_sound(self):
        """/CN=evil/CN=my-proxy, or a CA certificate for my-proxy, is no proxy: its
        forwarded header is not believed."""
        two = CA.issue("two-proxy", "evil")
        csr = os.path.join(FOLDER, "two-proxy-2.csr")
        openssl("req", "-new", "-key", two[1], "-subj", "/CN=evil/CN=my-proxy", "-out", csr,
                "-config", os.path.join(FOLDER, "ext.cnf"))
        CA.sign(csr, two[0], "client")
        ca_proxy = CA.issue("ca-proxy", "my-proxy", extensions="ca_client")
        for crt, key in (two, ca_proxy):
            with self.subTest(cert=os.path.basename(crt)):
                conn = http.client.HTTPSConnection("localhost", self.srv.port, timeout=5,
                                                   context=context(crt, key))
                conn.request("GET", "/", headers={"X-Client-Cert": self.header(CA.client[0])})
                response = conn.getresponse()
                self.assertEqual(response.status, 403, response.read())
                conn.close()
        self.assertFalse([l for l in self.srv.log.lines if l.startswith("proxied")])

    def test_a_forwarded_client_that_may_not_be_served_gets_no_100_continue(self):
        """Behind the proxy, a request whose client is not on --allow and that asks
        "Expect: 100-continue" gets its 403 first, never "100 Continue"."""
        raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
        with context(*self.proxy).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nX-Client-Cert: {self.header(self.other[0])}"
                        f"\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n".encode())
            reply = read_all(tls)
        self.assertTrue(reply.startswith(b"HTTP/1.1 403 "), reply)
        self.assertNotIn(b"100 Continue", reply)

    def test_whoever_holds_the_proxys_key_has_the_cas_power(self):
        """The taught limit (the signature of a forwarded certificate is not checked): a
        certificate from another key, with our CA's name and key identifier, is greeted as
        whoever it names, a revoked identity too under a new serial; direct, both are refused."""
        from armour.certificate_fields import read_certificate, read_pem
        revoked = CA.issue("forge-revoked", "forge-revoked")
        CA.revoke(revoked[0])
        ski = read_certificate(read_pem(CA.crt)[0][1])["ski"].hex(":")
        config = os.path.join(FOLDER, "forge.cnf")
        with open(config, "w") as f:
            f.write(f"[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign"
                    f"\nsubjectKeyIdentifier = {ski}\n[leaf]\nbasicConstraints = critical, "
                    f"CA:FALSE\nextendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n")
        forger = os.path.join(FOLDER, "forger")          # a key of its own, our CA's name
        openssl("req", "-x509", "-new", "-key", CA.rogue.key, "-subj", "/CN=root", "-days", "1",
                "-config", config, "-extensions", "ca", "-out", forger + ".crt")
        with our_server(trust_proxy="cn:my-proxy", crl=[CA.crl("forge")]) as srv:
            for name in ("admin", "forge-revoked"):
                with self.subTest(name=name):
                    csr, crt = (os.path.join(FOLDER, f"forged-{name}.{x}") for x in ("csr", "crt"))
                    openssl("req", "-new", "-key", CA.client[1], "-subj", f"/CN={name}",
                            "-out", csr, "-config", config)
                    openssl("x509", "-req", "-in", csr, "-CA", forger + ".crt", "-CAkey",
                            CA.rogue.key, "-days", "1", "-extfile", config, "-extensions", "leaf",
                            "-out", crt)
                    start = len(srv.log.lines)
                    self.assertNotEqual(fetch(srv, context(crt, CA.client[1])), GREETING)
                    line = srv.log.wait_for(lambda l: l.startswith("rejected"), start=start)
                    self.assertIn("certificate signature failure", line)
                    conn = http.client.HTTPSConnection("localhost", srv.port, timeout=5,
                                                       context=context(*self.proxy))
                    conn.request("GET", "/", headers={"X-Client-Cert": self.header(crt)})
                    self.assertEqual(conn.getresponse().read(), f"Hello, {name}\n".encode())
                    conn.close()

    def test_an_empty_or_unreadable_header_is_logged_as_what_it_is(self):
        """An empty X-Client-Cert was logged as "1 X-Client-Cert headers", and one
        holding no certificate as "(list index out of range)"."""
        for value, said in (("", "forwarded an empty X-Client-Cert header"),
                            ("%25zz", "(no -----BEGIN CERTIFICATE----- block in it)")):
            with self.subTest(value=value):
                start = len(self.srv.log.lines)
                conn = http.client.HTTPSConnection("localhost", self.srv.port, timeout=5,
                                                   context=context(*self.proxy))
                conn.request("GET", "/", headers={"X-Client-Cert": value})
                self.assertEqual(conn.getresponse().status, 403)
                conn.close()
                line = self.srv.log.wait_for(lambda l: l.startswith("forbidden"), start=start)
                self.assertIn(said, line or "")

    def test_the_proxy_forwards_and_others_are_not_believed(self):
        conn = http.client.HTTPSConnection("localhost", self.srv.port, timeout=5,
                                           context=context(*self.proxy))
        conn.request("GET", "/", headers={"X-Client-Cert": self.header(CA.client[0])})
        self.assertEqual(conn.getresponse().read(), b"Hello, my-client\n")
        conn.close()
        conn = http.client.HTTPSConnection("localhost", self.srv.port, timeout=5,
                                           context=context(*self.other))
        conn.request("GET", "/", headers={"X-Client-Cert": self.header(CA.client[0])})
        self.assertEqual(conn.getresponse().status, 403)
        conn.close()


def odd_client(name, subject, lines):
    """A client certificate for `subject` from our CA with these extension lines (made
    with x509 -req: openssl ca's policy would ask for a CN)."""
    config = os.path.join(FOLDER, f"odd-{name}.cnf")
    with open(config, "w") as f:
        f.write("[ext]\nbasicConstraints = critical, CA:FALSE\n"
                "authorityKeyIdentifier = keyid:always\n" + lines + "\n")
    csr, crt = (os.path.join(FOLDER, f"odd-{name}.{x}") for x in ("csr", "crt"))
    openssl("req", "-new", "-key", CA.client[1], "-subj", subject, "-out", csr,
            "-config", os.path.join(FOLDER, "ext.cnf"))
    openssl("x509", "-req", "-in", csr, "-CA", CA.crt, "-CAkey", CA.key, "-days", "1",
            "-extfile", config, "-extensions", "ext", "-out", crt)
    return crt


def refused_direct_and_forwarded(test, srv, crt, proxy, label="certificate rejected"):
    """Present `crt` (with CA.client's key) directly (client.py says `label`), then
    forwarded by `proxy`: assert both are refused with the same reason, in the log and the
    403; return the reason."""
    start = len(srv.log.lines)
    test.assertEqual(fetch(srv, context(crt, CA.client[1])), label)
    direct = srv.log.wait_for(lambda l: l.startswith("rejected"), start=start)
    conn = http.client.HTTPSConnection("localhost", srv.port, timeout=5, context=context(*proxy))
    with open(crt) as f:
        conn.request("GET", "/", headers={"X-Client-Cert": quote(f.read())})
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    test.assertEqual(response.status, 403, body)
    reason = direct.split(": ", 1)[1]
    test.assertEqual(body, f"403 Forbidden: {reason}\n")
    forwarded = srv.log.wait_for(lambda l: "(forwarded by" in l, start=start)
    test.assertEqual(forwarded.split(": ", 1)[1], f"{reason} (forwarded by cn:my-proxy)")
    return reason


class StrictForwardedTest(unittest.TestCase):
    """A forwarded certificate meets what VERIFY_X509_STRICT refuses at the door, in its words."""

    SECTIONS = {        # RFC 5280 rules that only strict mode checks; each breaks one
        "no-aki": ("/CN=no-aki", "authorityKeyIdentifier = none\nsubjectKeyIdentifier = none"),
        "pathlen": ("/CN=pathlen", "basicConstraints = critical, CA:FALSE, pathlen:0"),
        "certsign": ("/CN=certsign", "keyUsage = critical, digitalSignature, keyCertSign"),
        "empty-san": ("/CN=empty-san", "2.5.29.17 = DER:30:00"),
        "no-subject": ("/", ""),
        "san-not-critical": ("/", "subjectAltName = DNS:x.example"),
    }

    def test_what_strict_mode_refuses_directly_is_refused_forwarded_with_the_same_reason(self):
        """Before, a certificate without authorityKeyIdentifier was refused at the door
        ("Missing Authority Key Identifier") and greeted through the proxy."""
        proxy = CA.issue("strict-proxy", "my-proxy")
        with our_server(trust_proxy="cn:my-proxy") as srv:
            for name, (subject, lines) in self.SECTIONS.items():
                with self.subTest(name=name):
                    crt = odd_client(name, subject, "extendedKeyUsage = clientAuth\n" + lines)
                    reason = refused_direct_and_forwarded(self, srv, crt, proxy)
                    self.assertIn("client certificate fails verification: ", reason)


class PurposeTest(unittest.TestCase):
    """A certificate not for client authentication is refused, saying what is true of it."""

    def test_keyusage_and_nscerttype_refusals_do_not_blame_the_eku(self):
        """keyEncipherment alone (clientAuth in its EKU), nsCertType=server (no EKU), or
        anyExtendedKeyUsage alone: OpenSSL refuses each as the wrong purpose. Before, the log
        said "its extendedKeyUsage lacks clientAuth", and forwarded ones were greeted."""
        proxy = CA.issue("purpose-proxy", "my-proxy")
        cases = {
            "key-encipherment": "extendedKeyUsage = clientAuth\n"
                                "keyUsage = critical, keyEncipherment",
            "netscape-server": "nsCertType = server",
            "any-eku": "extendedKeyUsage = anyExtendedKeyUsage",
        }
        with our_server(trust_proxy="cn:my-proxy") as srv:
            for name, lines in cases.items():
                with self.subTest(name=name):
                    crt = odd_client(name, f"/CN={name}", lines)
                    reason = refused_direct_and_forwarded(self, srv, crt, proxy, "wrong purpose")
                    self.assertEqual(reason, "client certificate has the wrong purpose: not for "
                                             "client authentication (by its extendedKeyUsage, "
                                             "keyUsage or nsCertType)")
            # ...and what does allow it is greeted both ways: keyAgreement alone, nsCertType=client.
            for name, lines in {"key-agreement": "keyUsage = critical, keyAgreement\n"
                                                 "extendedKeyUsage = clientAuth",
                                "netscape-client": "nsCertType = client"}.items():
                with self.subTest(name=name):
                    crt = odd_client(name, f"/CN={name}", lines)
                    self.assertEqual(fetch(srv, context(crt, CA.client[1])),
                                     (200, f"Hello, {name}\n"))
                    conn = http.client.HTTPSConnection("localhost", srv.port, timeout=5,
                                                       context=context(*proxy))
                    with open(crt) as f:
                        conn.request("GET", "/", headers={"X-Client-Cert": quote(f.read())})
                    self.assertEqual(conn.getresponse().read().decode(), f"Hello, {name}\n")
                    conn.close()


# --- the waiting room -----------------------------------------------------------------------

class CrowdTest(unittest.TestCase):
    """Unauthenticated connections must not lock out authenticated clients."""

    def test_1000_silent_and_50_dribbling_connections(self):
        """1,000 silent TCP connections and 50 dribbling a ClientHello: a good client is still
        greeted within 1 s, and the server's threads stay well under 200."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 1200:
            self.skipTest(f"needs 1,200 open files, the hard limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        srv = ServerProcess("--ca", CA.crt, "--cert", CA.server[0], "--key", CA.server[1])
        crowd = []
        try:
            for _ in range(1000):
                crowd.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            hello = client_hello()
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                sock.sendall(hello[:20])                    # the rest never comes
                crowd.append(sock)
            times = []
            for _ in range(3):
                started = time.monotonic()
                self.assertEqual(client.fetch(srv.url, context(), timeout=5), GREETING)
                times.append(time.monotonic() - started)
            self.assertLess(max(times), 1.0, times)
            threads = len(os.listdir(f"/proc/{srv.proc.pid}/task"))
            self.assertLess(threads, 200)
        finally:
            for sock in crowd:
                sock.close()
            srv.stop()

    def test_a_dribbled_hello_holds_no_worker(self):
        """One byte, or half a ClientHello, waits in the waiting room: with one worker,
        three such connections leave it free for a real client."""
        with our_server(workers=1) as srv:
            hello = client_hello()
            crowd = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(3)]
            for sock, part in zip(crowd, (hello[:1], hello[:5], hello[:len(hello) // 2])):
                self.addCleanup(sock.close)
                sock.sendall(part)
            self.assertEqual(fetch(srv, context()), GREETING)

    def test_odd_records_are_left_to_openssl(self):
        """A 1-byte handshake fragment and a zero-length record wait in the room, as
        OpenSSL waits for more (with one worker, a real client is still served); a record
        over 2^14 bytes gets OpenSSL's alert (record_overflow), not a TCP reset."""
        with our_server(workers=1) as srv:
            for record in ("160301000101", "1603010000"):
                waiting = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                self.addCleanup(waiting.close)
                waiting.sendall(bytes.fromhex(record))
            self.assertEqual(fetch(srv, context()), GREETING)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as big:
                big.sendall(bytes.fromhex("1603014001") + bytes(16385))
                reply = read_all(big)
            self.assertEqual(reply[:1] + reply[3:], bytes.fromhex("1500020216"), reply)
            line = srv.log.wait_for(lambda l: l.startswith("rejected"))
            self.assertRegex(line or "", r"^rejected 127\.0\.0\.1:\d+: not a TLS handshake we "
                                         r"accept \(.*\)$")

    def test_a_forbidden_client_gets_its_403_without_a_request(self):
        """A client not on --allow that sends nothing gets its 403 at once and the
        connection ends: no worker waits for its request (with one worker, and the
        idle timeout at 30 s, an allowed client is served next)."""
        other = CA.issue("other-idle", "other-client")
        with our_server(allow=["cn:my-client"], workers=1, idle_timeout=30) as srv:
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            with context(*other).wrap_socket(raw, server_hostname="localhost") as tls:
                reply = read_all(tls)                 # it asks for nothing
            head, _, body = reply.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 403 Forbidden\r\n"), reply)
            self.assertIn(b"\r\nConnection: close", head)
            self.assertEqual(body, b"403 Forbidden: cn:other-client is not on the allow-list "
                                   b"(--allow)\n")
            self.assertEqual(fetch(srv, context()), GREETING)

    def test_when_the_room_is_full_the_oldest_makes_room(self):
        with our_server(max_pending=5) as srv:
            first = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            self.addCleanup(first.close)
            first_peer = "%s:%d" % first.getsockname()[:2]
            srv.log.wait_for(lambda l: False, timeout=0.01)
            others = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(5)]
            for sock in others:
                self.addCleanup(sock.close)
            line = srv.log.wait_for(lambda l: "to make room" in l)
            self.assertEqual(line, f"rejected {first_peer}: sent nothing, closed to make room for "
                                   f"a new connection (--max-pending 5)")
            self.assertEqual(fetch(srv, context()), GREETING)

    def test_connections_come_no_faster_than_the_room_makes_room(self):
        """--max-pending is kept even when connections come faster than the waiting room
        closes the oldest: while it is busy (here, held in its log line), the accept loop
        takes no more, and they wait in the kernel's listen queue (a burst of 3,000 once
        left 244 strangers open with --max-pending 1)."""
        self.addCleanup(setattr, slow_clients, "FULL_ROOM_WAIT", slow_clients.FULL_ROOM_WAIT)
        slow_clients.FULL_ROOM_WAIT = 30.0       # the accept loop's wait for room, at most
        with our_server(max_pending=1) as srv:
            room, log = srv.server.waiting_room, srv.server.log
            held, release = threading.Event(), threading.Event()
            self.addCleanup(release.set)

            def hold_the_room(line):
                log(line)
                if "to make room" in line and not held.is_set():
                    held.set()
                    release.wait(10)

            srv.server.log = hold_the_room
            first, second = (socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                             for _ in range(2))
            self.assertTrue(held.wait(5))        # closing `first`, to make room for `second`
            more = [socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                    for _ in range(5)]
            for sock in [first, second] + more:
                self.addCleanup(sock.close)
            self.assertFalse(wait_until(lambda: len(room.strangers) > 2, timeout=0.5),
                             f"{len(room.strangers)} strangers open (--max-pending 1)")
            release.set()
            self.assertEqual(fetch(srv, context()), GREETING)

    def test_a_refused_client_closed_to_make_room_is_logged_once(self):
        """A refused client whose last bytes the server still reads (close_gently; here for
        up to 30 s) counts towards --max-pending, and may be closed to make room: without
        a second line, which said it "did not finish its handshake" (it was refused), or
        "sent nothing" (it spoke plain HTTP)."""
        self.addCleanup(setattr, slow_clients, "LINGER_TIMEOUT", slow_clients.LINGER_TIMEOUT)
        slow_clients.LINGER_TIMEOUT = 30.0
        no_certificate = ssl.create_default_context(cafile=CA.crt)

        def refused_client(port):             # its TLS 1.3 handshake ends before our alert
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            return no_certificate.wrap_socket(raw, server_hostname="localhost")

        def plain_client(port):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\n")           # half a request head
            return sock
        with our_server(max_pending=1) as srv:
            room = srv.server.waiting_room
            for connect, reason in ((refused_client, "no client certificate"),
                                    (plain_client, "plain HTTP")):
                sock = connect(srv.port)
                self.addCleanup(sock.close)
                peer = "%s:%d" % sock.getsockname()[:2]
                line = srv.log.wait_for(lambda l: l.startswith(f"rejected {peer}: "))
                self.assertIn(reason, line)
                self.assertTrue(wait_until(lambda: any(c.peer == peer for c in room.waiting)))
                newcomer = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                self.addCleanup(newcomer.close)
                self.assertTrue(wait_until(lambda: not any(
                    c.peer == peer for c in list(srv.server.open_connections))))
                self.assertEqual([l for l in srv.log.lines if peer in l], [line])
                newcomer.close()
                self.assertTrue(wait_until(lambda: not srv.server.open_connections))

    def test_a_stranger_closed_to_make_room_is_not_woken_in_the_same_turn(self):
        """When a new connection makes room, the oldest stranger is closed; if it spoke
        in the same turn of the selector, its bytes are ignored, not taken for a
        connection still waiting (which logged "error in the waiting room: KeyError")."""
        with our_server(max_pending=1) as srv:
            room, log = srv.server.waiting_room, srv.server.log
            handed, held, release = LogCollector(), threading.Event(), threading.Event()
            arrive = room.arrive

            def arrive_and_tell(conn):
                arrive(conn)
                handed(conn.peer)                    # in the waiting room's hands (or a worker's)

            def hold_the_room(line):
                log(line)                            # the waiting room's thread logs it
                if "to make room" in line and not held.is_set():
                    held.set()
                    release.wait(5)

            room.arrive, srv.server.log = arrive_and_tell, hold_the_room
            first, second = (socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                             for _ in range(2))
            self.assertTrue(held.wait(5))            # the room is closing `first` for `second`
            third = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            for sock in (first, second, third):
                self.addCleanup(sock.close)
            third_peer = "%s:%d" % third.getsockname()[:2]
            self.assertEqual(handed.wait_for(lambda p: p == third_peer), third_peer)
            second.sendall(b"\x16")                 # `second` speaks as `third` arrives
            release.set()
            second_peer = "%s:%d" % second.getsockname()[:2]
            self.assertIsNotNone(srv.log.wait_for(lambda l: l.startswith(
                f"rejected {second_peer}: ") and "to make room" in l))
            self.assertEqual(fetch(srv, context()), GREETING)
            self.assertEqual([l for l in srv.log.lines if l.startswith("error")], [])

    def test_a_bug_in_the_waiting_room_is_logged_and_the_room_goes_on(self):
        """A bug of ours in a turn of the waiting room (here, in make_room) is one
        "error" line; the room's thread lives on and a client is still served
        (before, only a bug while waking a connection was caught: any other
        killed the thread, and the server accepted connections and served none)."""
        with our_server() as srv:
            room = srv.server.waiting_room
            make_room, failed = room.make_room, threading.Event()

            def broken():
                if not failed.is_set():
                    failed.set()
                    raise RuntimeError("a bug")
                make_room()
            room.make_room = broken
            room.ring()
            self.assertTrue(failed.wait(5))
            self.assertEqual(srv.log.wait_for(lambda l: l.startswith("error")),
                             "error in the waiting room: RuntimeError('a bug')")
            self.assertEqual(fetch(srv, context()), GREETING)

    def hold_the_one_worker(self, srv):
        """Keep a server's only worker busy (inside the log call of an accepted
        client's line) until the returned Event is set; return that client's
        TLS socket and the Event."""
        log, held, release = srv.server.log, threading.Event(), threading.Event()

        def hold_the_worker(line):
            log(line)
            if line.startswith("accepted") and not held.is_set():
                held.set()
                release.wait(5)

        srv.server.log = hold_the_worker
        self.addCleanup(release.set)
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        busy = context().wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(busy.close)
        self.assertTrue(held.wait(5))
        return busy, release

    def test_hellos_queued_for_a_busy_worker_count_towards_max_pending(self):
        """--max-pending is a bound even for connections whose ClientHello is there when
        they are accepted (they queue for a worker): with the one worker busy and the room
        for 3, 7 of 10 such connections are closed at once."""
        with our_server(max_pending=3, workers=1) as srv:
            busy, release = self.hold_the_one_worker(srv)
            hello = client_hello()
            for _ in range(10):                      # ...while 10 ClientHellos arrive
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                self.addCleanup(sock.close)
                sock.sendall(hello)
            capped = lambda: [l for l in srv.log.lines if "(--max-pending 3)" in l]
            srv.log.wait_for(lambda l: len(capped()) >= 7, timeout=5)
            self.assertEqual(len(capped()), 7, capped())
            release.set()
            busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(read_all(busy).endswith(b"Hello, my-client\n"))

    def test_a_hello_queued_past_its_deadline_gets_no_handshake_work(self):
        """A ClientHello that waited for a busy worker beyond --handshake-timeout is
        closed without an answer (no key exchange, no signature spent on it)."""
        with our_server(handshake_timeout=0.5, workers=1) as srv:
            busy, release = self.hold_the_one_worker(srv)
            queued = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            self.addCleanup(queued.close)
            queued.sendall(client_hello())
            clock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            self.addCleanup(clock.close)
            clock_peer = "%s:%d" % clock.getsockname()[:2]   # says nothing; accepted later
            self.assertIsNotNone(srv.log.wait_for(lambda l: l.startswith(
                f"rejected {clock_peer}: sent nothing within"), timeout=5))
            release.set()
            self.assertEqual(read_all(queued), b"")
            queued_peer = "%s:%d" % queued.getsockname()[:2]
            self.assertEqual(srv.log.wait_for(lambda l: queued_peer in l),
                             f"rejected {queued_peer}: handshake not begun within 0.5 s "
                             f"(--handshake-timeout): the server was busy with other handshakes")

    def test_a_client_that_owes_a_second_hello_did_send_a_whole_one(self):
        """A client told to send its hello again (a HelloRetryRequest: the test server
        offers P-256 only, the hello carries an X25519 key share) that never does is
        logged as a handshake not finished, not as a half-sent ClientHello."""
        with our_server(handshake_timeout=0.5) as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as stalled:
                stalled.sendall(client_hello())
                answer = stalled.recv(43, socket.MSG_WAITALL)   # up to a ServerHello's random
                self.assertEqual(answer[:1] + answer[5:6], b"\x16\x02", answer)
                self.assertEqual(answer[11:], HELLO_RETRY_REQUEST)      # RFC 8446 4.1.3
                peer = "%s:%d" % stalled.getsockname()[:2]
                line = srv.log.wait_for(lambda l: l.startswith(f"rejected {peer}:"))
            self.assertEqual(line, f"rejected {peer}: handshake not finished in time "
                                   f"(--handshake-timeout): an idle or slow client")


class NoWaitingWorkerTest(unittest.TestCase):
    """Threads work, the selector waits: no worker waits on the network for a stranger's
    handshake or an idle client, so crowds of either lock nobody out."""

    def test_130_stalled_handshakes_hold_no_worker(self):
        """130 connections send a whole ClientHello, read the server's answer, and go
        silent: a real client is still greeted, and the server has no thread per stall."""
        with our_server(handshake_timeout=30) as srv:
            hello = client_hello()
            stalled = []
            for _ in range(130):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                self.addCleanup(sock.close)
                sock.sendall(hello)
                stalled.append(sock)
            for sock in stalled:                       # the server has answered each hello
                self.assertTrue(sock.recv(5).startswith(b"\x16\x03"))
            self.assertEqual(fetch(srv, context()), GREETING)
            self.assertLess(threading.active_count(), 50)
            self.assertFalse([l for l in srv.log.lines if l.startswith("rejected")])

    def test_200_idle_keep_alive_connections_hold_no_worker(self):
        """200 clients keep their connection open after a greeting: each is answered
        again, a new client is greeted, and the server has no thread per connection."""
        with our_server() as srv:
            kept = []
            for _ in range(200):
                conn = http.client.HTTPSConnection("localhost", srv.port, timeout=5,
                                                   context=context())
                self.addCleanup(conn.close)
                conn.request("GET", "/")
                self.assertEqual(conn.getresponse().read(), b"Hello, my-client\n")
                kept.append(conn)
            self.assertLess(threading.active_count(), 50)
            self.assertEqual(fetch(srv, context()), GREETING)
            for conn in kept:
                conn.request("GET", "/")
                self.assertEqual(conn.getresponse().read(), b"Hello, my-client\n")
            self.assertEqual(len([l for l in srv.log.lines if l.startswith("accepted")]), 201)

    def test_a_client_that_said_close_is_not_waited_for(self):
        """After answering a request that said "Connection: close", the server closes
        at once: all the client may still send is its close_notify. After a close it
        chose itself (here, for a request with a body), it first reads what the client
        sends, for up to LINGER_TIMEOUT, so that those bytes do not turn the close
        into a TCP reset."""
        said_close = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        with_a_body = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        with our_server() as srv:
            room = srv.server.waiting_room

            def lingering():
                return [c for c in list(room.waiting) if c.step is slow_clients.drain]
            for request, closed_at_once in ((said_close, True), (with_a_body, False)):
                raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                with context().wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(request)
                    self.assertTrue(read_all(tls).startswith(b"HTTP/1.1 200 OK\r\n"))
                    if closed_at_once:        # while our end is still open
                        self.assertTrue(wait_until(lambda: not srv.server.open_connections,
                                                   slow_clients.LINGER_TIMEOUT / 2))
                    else:
                        self.assertTrue(wait_until(lingering, slow_clients.LINGER_TIMEOUT / 2))
                        self.assertTrue(srv.server.open_connections)

    def test_a_client_that_does_not_read_its_answers_holds_no_worker(self):
        """A client pipelines requests until the server stops reading, and never reads
        an answer: with one worker, a real client is still greeted, as writes wait in
        the waiting room, not in a worker; at --request-timeout the reader is closed."""
        with our_server(workers=1, request_timeout=20) as srv:
            deaf = pipeline_without_reading(self, srv)
            self.assertEqual(fetch(srv, context()), GREETING)
            self.assertFalse([l for l in srv.log.lines if l.startswith("closed")])
            deaf.close()
        with our_server(request_timeout=1) as srv:
            deaf = pipeline_without_reading(self, srv)
            line = srv.log.wait_for(lambda l: l.startswith("closed"), timeout=10)
            self.assertEqual(line, f"closed {deaf.getsockname()[0]}:{deaf.getsockname()[1]}: "
                                   f"does not read its answers: none taken for 1 s "
                                   f"(--request-timeout)")

    def test_a_wake_up_without_a_whole_request_holds_no_worker(self):
        """A worker waits for a request only right after an answer: woken by part of a
        TLS record, it parks the connection at once. (With one worker, and that wait
        set to 30 s, a real client is still greeted.)"""
        self.addCleanup(setattr, slow_clients, "NEXT_REQUEST_WAIT", slow_clients.NEXT_REQUEST_WAIT)
        slow_clients.NEXT_REQUEST_WAIT = 30.0
        with our_server(workers=1) as srv:
            sock, tls, _, outgoing = handshake_by_hand(self, srv)
            for text in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /"):
                tls.write(text)          # an answer, then the start of the next request
                sock.sendall(outgoing.read())
            self.assertEqual(fetch(srv, context()), GREETING)     # so it waits in the room
            tls.write(b"x")
            sock.sendall(outgoing.read()[:1])            # one byte of a record: no request
            self.assertEqual(fetch(srv, context()), GREETING)

    def test_a_replayed_resumption_hello_holds_no_worker(self):
        """A resumption ClientHello (a ticket and its PSK binder) proves nothing: anyone
        who saw it can send it again. Replayed, and never followed by a Finished, it
        waits in the waiting room: with one worker, and a worker's wait set to 30 s, a
        real client is still greeted."""
        self.addCleanup(setattr, slow_clients, "NEXT_REQUEST_WAIT", slow_clients.NEXT_REQUEST_WAIT)
        slow_clients.NEXT_REQUEST_WAIT = 30.0
        with our_server(workers=1) as srv:
            ctx = context()
            ctx.set_ecdh_curve("prime256v1")     # the test server's one group: no HelloRetryRequest
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            with ctx.wrap_socket(raw, server_hostname="localhost") as first:
                first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                read_all(first)                  # TLS 1.3 tickets come after the handshake
                ticket = first.session
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            again = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost", session=ticket)
            with self.assertRaises(ssl.SSLWantReadError):
                again.do_handshake()
            replay = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            self.addCleanup(replay.close)
            replay.sendall(outgoing.read())      # the hello someone saw, sent by someone else
            head = replay.recv(5, socket.MSG_WAITALL)
            server_hello = replay.recv(int.from_bytes(head[3:5], "big"), socket.MSG_WAITALL)
            self.assertEqual(head[:1] + server_hello[:1], b"\x16\x02", head)   # a ServerHello
            self.assertIn(b"\x00\x29\x00\x02\x00\x00", server_hello)   # pre_shared_key: resumed
            self.assertEqual(fetch(srv, context()), GREETING)

    def test_a_large_client_hello_gets_through(self):
        """A ClientHello of about 64 KB (a long ALPN list) is read by OpenSSL like any
        other; OpenSSL's own limit is 131,396 bytes."""
        ctx = context()
        ctx.set_alpn_protocols([("p%03d" % i) + "x" * 250 for i in range(250)])
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        probe = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with self.assertRaises(ssl.SSLWantReadError):
            probe.do_handshake()
        self.assertGreater(len(outgoing.read()), 60000)
        with our_server() as srv:
            self.assertEqual(fetch(srv, ctx), GREETING)

    def test_a_client_hello_of_131_000_bytes_is_answered(self):
        """A ClientHello near the largest TLS allows (OpenSSL's limit, 131,396 bytes: 64 KB
        of cipher suites and 64 KB of extensions), sent in 9 records, gets a ServerHello."""
        def extension(kind, data):
            return kind.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
        extensions = b"".join([
            extension(10, bytes.fromhex("0004001d0017")),          # groups: X25519, P-256
            extension(13, bytes.fromhex("0006080404030401")),      # signature algorithms
            extension(43, bytes.fromhex("020304")),                # TLS 1.3
            extension(51, bytes.fromhex("0024001d0020") + os.urandom(32)),   # an X25519 share
            extension(0xFA00, bytes(65535 - 71 - 4))])             # unknown: ignored
        suites = bytes.fromhex("130113021303") + b"\xfe\xfe" * 32764       # unknown ones too
        body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32)
                + len(suites).to_bytes(2, "big") + suites + b"\x01\x00"
                + len(extensions).to_bytes(2, "big") + extensions)
        hello = b"\x01" + len(body).to_bytes(3, "big") + body
        self.assertEqual(len(hello), 131146)
        records = b"".join(b"\x16\x03\x01" + len(hello[i:i + 16384]).to_bytes(2, "big")
                           + hello[i:i + 16384] for i in range(0, len(hello), 16384))
        with our_server() as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
                sock.sendall(records)
                answer = sock.recv(6)
        self.assertEqual(answer[:1] + answer[5:6], b"\x16\x02", answer)   # a ServerHello

    def test_expect_100_continue_is_answered_only_after_authorization(self):
        """A client not on --allow that asks "Expect: 100-continue" gets its 403 and no
        "100 Continue"; an allowed one gets "100 Continue", then its answer (501: we
        serve no POST)."""
        other = CA.issue("other-expect", "other-client")
        request = (b"POST / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 5\r\n\r\n")
        with our_server(allow=["cn:my-client"]) as srv:
            for ctx, first in ((context(*other), b"HTTP/1.1 403 "),
                               (context(), b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 501 ")):
                raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(request)
                    reply = read_all(tls)
                self.assertTrue(reply.startswith(first), reply)
                self.assertEqual(reply.count(b"100 Continue"), first.count(b"100 Continue"))

    def test_curl_with_a_certificate_but_no_key_is_not_called_a_port_scan_only(self):
        """curl --cert without --key fails before TLS: the log line says that can be why."""
        if not shutil.which("curl"):
            self.skipTest("curl not installed: apt-get install curl")
        with our_server() as srv:
            done = subprocess.run(["curl", "-sS", "--cacert", path("ca.crt"), "--cert",
                                   path("client.crt"), srv.url], capture_output=True, text=True,
                                  timeout=20)
            self.assertNotEqual(done.returncode, 0)
            line = srv.log.wait_for(lambda l: l.startswith("rejected"), timeout=5)
            self.assertIn("a client that failed before TLS", line or "")

    def test_a_flood_of_refusals_is_counted_not_logged_line_by_line(self):
        """After log_burst refusals, the rest are counted: one line gives the count per reason."""
        with our_server(log_burst=5) as srv:
            for _ in range(20):
                socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
            line = srv.log.wait_for(lambda l: l.startswith("refused"), timeout=5)
            match = re.fullmatch(r"refused (\d+) more connections in \d+ s, counted, not logged "
                                 r"one by one: (\d+) rejected: connected and closed without a "
                                 r"word \(a port scan, or a client that failed before TLS\)", line or "")
            self.assertIsNotNone(match, line)
            one_by_one = [l for l in srv.log.lines if l.startswith("rejected")]
            self.assertLess(len(one_by_one), 10, "5 at once, and 50 a second after that")
            self.assertEqual(int(match[1]), int(match[2]))
            self.assertEqual(len(one_by_one) + int(match[1]), 20)


def pipeline_without_reading(test, srv):
    """An authenticated connection that sends GET requests (up to 64 MB) until the
    server stops reading them, and reads no answer. Returns its TLS socket."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)     # fills sooner
    raw.settimeout(5)
    raw.connect(("127.0.0.1", srv.port))
    tls = context().wrap_socket(raw, server_hostname="localhost")
    test.addCleanup(tls.close)
    requests = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" * 1000
    tls.settimeout(0.5)                  # a send blocked this long: the server stopped reading
    try:
        for _ in range(64 * 2 ** 20 // len(requests)):
            tls.sendall(requests)
    except socket.timeout:
        return tls
    test.fail("the server read 64 MB of requests without our reading one answer")


def handshake_by_hand(test, srv):
    """An authenticated connection whose TLS runs over memory buffers, so that a test
    can send part of a record: (its socket, its SSLObject, its incoming and outgoing
    buffers)."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    test.addCleanup(sock.close)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    for _ in range(20):
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    sock.sendall(outgoing.read())            # our certificate and Finished
    return sock, tls, incoming, outgoing


def client_hello():
    """The bytes of a real TLS ClientHello, made without a network."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# --- shutdown ------------------------------------------------------------------------------

class ShutdownTest(unittest.TestCase):

    def greeted_tls_object(self, srv):
        """(socket, SSLObject, its incoming and outgoing BIOs) after a greeting: TLS by
        hand, so that a test can choose how the connection ends."""
        sock, tls, incoming, outgoing = handshake_by_hand(self, srv)
        tls.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.sendall(outgoing.read())
        reply = b""
        for _ in range(20):
            if b"Hello, my-client" in reply:
                return sock, tls, incoming, outgoing
            try:
                reply += tls.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
        self.fail(f"no greeting: {reply!r}")

    def test_a_client_close_notify_is_answered_with_ours(self):
        """The client ends with close_notify: the server answers with its own (before, it
        closed without one). A client that only half-closes TCP gets OpenSSL's alert for an
        unexpected EOF, decode_error (Python 3.9's ssl ignores such an EOF: close_notify)."""
        with our_server() as srv:
            for how in ("close_notify", "half-close"):
                with self.subTest(how=how):
                    sock, tls, incoming, outgoing = self.greeted_tls_object(srv)
                    if how == "close_notify":
                        with self.assertRaises(ssl.SSLWantReadError):
                            tls.unwrap()            # ours is written; the server's not here yet
                        sock.sendall(outgoing.read())
                    else:
                        sock.shutdown(socket.SHUT_WR)
                    incoming.write(read_all(sock))  # until the server hangs up
                    if how == "close_notify":
                        tls.unwrap()                # SSLWantReadError again without the server's
                    elif sys.version_info < (3, 10):
                        self.assertEqual(tls.read(), b"")   # a close_notify
                    else:
                        with self.assertRaisesRegex(ssl.SSLError, "DECODE_ERROR"):
                            tls.read()
            self.assertFalse([l for l in srv.log.lines if "error" in l], srv.log.lines)

    def test_after_server_close_an_open_keep_alive_connection_is_not_served(self):
        srv = our_server().__enter__()
        conn = http.client.HTTPSConnection("localhost", srv.port, timeout=5, context=context())
        conn.request("GET", "/")
        self.assertEqual(conn.getresponse().read(), b"Hello, my-client\n")
        srv.__exit__(None, None, None)              # shutdown() and server_close()
        with self.assertRaises((http.client.HTTPException, OSError)):
            conn.request("GET", "/")
            conn.getresponse()
        conn.close()


# --- the key log -------------------------------------------------------------------------

class KeylogTest(unittest.TestCase):
    """--keylog never leaks secrets to a file others can read, or to a planted one."""

    def setUp(self):
        self.folder = tempfile.mkdtemp(dir=FOLDER)

    def start(self, keylog):
        return run(*server_files(), "--keylog", keylog, "--port", "0", timeout=10)

    def test_unsafe_files_are_refused(self):
        readable = os.path.join(self.folder, "readable.txt")
        with open(readable, "w"):
            pass
        os.chmod(readable, 0o644)
        target = os.path.join(self.folder, "target.txt")
        with open(target, "w"):
            pass
        os.chmod(target, 0o600)
        link = os.path.join(self.folder, "link.txt")
        os.symlink(target, link)
        cases = [(readable, "has mode 0644"), (link, "is a symbolic link"),
                 (self.folder, "cannot write the key log")]
        if os.geteuid() == 0:
            foreign = os.path.join(self.folder, "foreign.txt")
            with open(foreign, "w"):
                pass
            os.chmod(foreign, 0o600)
            os.chown(foreign, 65534, 65534)
            cases.append((foreign, "belongs to another user"))
        for file, words in cases:
            with self.subTest(file=os.path.basename(file)):
                done = run(*server_files(), "--keylog", file)
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertIn(words, done.stderr)
                self.assertTrue(done.stderr.startswith("error: bad key log: "), done.stderr)
        self.assertEqual(os.path.getsize(target), 0)

    def test_a_new_key_log_is_0600_and_gets_the_secrets(self):
        keys = os.path.join(self.folder, "keys.txt")
        srv = ServerProcess(*server_files(), "--keylog", keys)
        try:
            self.assertEqual(client.fetch(srv.url, client.make_client_context(
                path("ca.crt"), path("client.crt"), path("client.key"))), GREETING)
        finally:
            srv.stop()
        self.assertEqual(os.stat(keys).st_mode & 0o777, 0o600)
        with open(keys) as f:
            self.assertIn("CLIENT_HANDSHAKE_TRAFFIC_SECRET", f.read())


# --- warnings and wrong files --------------------------------------------------------------

class FilesTest(unittest.TestCase):
    """At start and at each reload: out-of-date files are named with their dates, and a
    certificate no client would accept as a server's is refused."""

    def test_wrong_certificates_as_cert_are_refused(self):
        for crt, key, words in [(CA.crt, CA.key, "is a CA certificate"),
                                (CA.client[0], CA.client[1], "lacks serverAuth"),
                                (CA.crt, CA.server[1], "is a CA certificate"),       # and its key
                                (CA.client[0], CA.server[1], "lacks serverAuth")]:   # is not blamed
            with self.subTest(cert=os.path.basename(crt), key=os.path.basename(key)):
                done = run("--ca", CA.crt, "--cert", crt, "--key", key)
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertIn(words, done.stderr)
                self.assertTrue(done.stderr.startswith("error: wrong certificate: "))

    def test_expired_and_expiring_files_are_named_at_start(self):
        folder = tempfile.mkdtemp(dir=FOLDER)
        soon = TestCA(folder, "soon", end=stamp(5 * 86400))
        cert = soon.issue("soon-server", "localhost", "server", end=stamp(3 * 86400))
        stale = soon.crl("stale", last=stamp(-7200), next=stamp(-3600))
        srv = ServerProcess("--ca", soon.crt, "--cert", cert[0], "--key", cert[1], "--crl", stale)
        try:
            text = srv.text()
            self.assertRegex(text, r"warning: server certificate '.*soon-server.crt' \(localhost\) "
                                   r"expires in 2 days, on \d{4}-\d\d-\d\d")
            self.assertRegex(text, r"warning: CA certificate '.*soon.crt' \(soon\) expires in 4 days")
            self.assertRegex(text, r"warning: CRL '.*stale.crl' \(from soon\) expired on .* \(its "
                                   r"nextUpdate\): every client is refused -- publish a fresh CRL")
        finally:
            srv.stop()

    def test_server_certificate_without_san_is_warned_about_at_start(self):
        """A server certificate naming localhost in its CN only: one warning line at
        start, and client.py does refuse it; the same key with a SAN gets no warning."""
        folder = tempfile.mkdtemp(dir=FOLDER)
        ca = TestCA(folder, "san-ca")
        client_files = ca.issue("client", "my-client")
        for extensions, warned in (("server_no_san", True), ("server", False)):
            crt, key = ca.issue(extensions, "localhost", extensions)
            srv = ServerProcess("--ca", ca.crt, "--cert", crt, "--key", key)
            try:
                text = srv.text()
                got = fetch(srv, context(*client_files, cacert=ca.crt))
            finally:
                srv.stop()
            with self.subTest(extensions=extensions):
                warning = (f"warning: server certificate {crt!r} (localhost) has no "
                           f"subjectAltName: clients that ignore the CN, as RFC 9525 asks (client.py among them), "
                           f"refuse it with 'hostname mismatch' -- reissue it with subjectAltName "
                           f"= DNS:localhost (as make certs does)")
                self.assertEqual(warning in text, warned, text)
                self.assertEqual(got, "hostname mismatch" if warned else GREETING)

    def test_an_expired_ca_is_named_not_blamed_on_the_client(self):
        folder = tempfile.mkdtemp(dir=FOLDER)
        old = TestCA(folder, "old-ca", start="20200101000000Z", end="20200201000000Z")
        crt, key = old.issue("old-client", "my-client", start="20200101000000Z", end=stamp(86400))
        srv = ServerProcess("--ca", old.crt, "--cert", CA.server[0], "--key", CA.server[1])
        try:
            self.assertRegex(srv.text(), r"warning: CA certificate '.*old-ca.crt' "
                                                   r"\(old-ca\) expired on 2020-02-01")
            fetch(srv, context(crt, key))
            line = srv.log.wait_for(lambda l: l.startswith("rejected"))
            self.assertIn("our CA old-ca (expired Feb  1 00:00:00 2020 GMT) (--ca)", line)
        finally:
            srv.stop()

    def test_crl_verify_reasons(self):
        """A CRL past its nextUpdate, or not valid yet: the log says which, and the fix."""
        for crl, words in [(CA.crl("old", last=stamp(-7200), next=stamp(-3600)), "our CRL has expired"),
                           (CA.crl("future", last=stamp(3600), next=stamp(7200)), "our CRL is not valid yet")]:
            with self.subTest(crl=os.path.basename(crl)):
                with our_server(crl=[crl]) as srv:
                    fetch(srv, context())
                    line = srv.log.wait_for(lambda l: l.startswith("rejected"))
                    self.assertIn(words, line)


# --- old Pythons --------------------------------------------------------------------------

class OldPythonTest(unittest.TestCase):

    def test_python_older_than_3_9_gets_one_line(self):
        """3.6 to 3.8 (where pyenv has them): one line saying 3.9+ is needed, exit 2."""
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() \
            if shutil.which("pyenv") else ""
        olds = sorted(p for p in (os.path.join(root, "versions", v, "bin", "python3")
                                  for v in (os.listdir(os.path.join(root, "versions"))
                                            if root and os.path.isdir(os.path.join(root, "versions")) else ())
                                  if re.match(r"3\.[678]\.", v)) if os.path.exists(p))
        if not olds:
            self.skipTest("no Python 3.6-3.8 here (pyenv)")
        for python in olds:
            with self.subTest(python=python):
                done = subprocess.run([python, os.path.join(ROOT, "server.py")], capture_output=True,
                                      text=True, timeout=20, stdin=subprocess.DEVNULL)
                self.assertEqual(done.returncode, 2)
                self.assertRegex(done.stderr, r"^error: unsupported Python: server.py needs Python "
                                              r"3\.9\+ \(this is 3\.[678]\) -- run it with python3\.9 "
                                              r"or newer\n$")


# --- what the log says ---------------------------------------------------------------------

class LogTest(unittest.TestCase):

    def test_ffdhe_and_other_groups_are_refused(self):
        """Imported as a module (so without groups.cnf), server.py sets one key-exchange group
        by our key's type (X25519 for RSA, P-256 for EC): a ClientHello asking for ffdhe8192
        (100 ms of server CPU each) is refused at once. (server.py run as a program offers
        three: test_hardening.KeyExchangeTest.)"""
        temp_key = {"X25519": "Server Temp Key: X25519", "P-256": "Server Temp Key: ECDH, prime256v1"}
        for srv in (our_server(), RunningServer()):         # an EC and the project's (RSA) PKI
            with srv:
                group = srv.server.context.groups
                other = "P-256" if group == "X25519" else "X25519"
                for offered, works in [("ffdhe8192", False), ("ffdhe2048", False),
                                       (group, True), (other, False)]:
                    with self.subTest(server_group=group, offered=offered):
                        done = subprocess.run(["openssl", "s_client", "-connect",
                                               f"127.0.0.1:{srv.port}", "-groups", offered],
                                              input="", capture_output=True, text=True, timeout=10)
                        self.assertEqual(temp_key[group] in done.stdout, works,
                                         done.stdout[-300:] + done.stderr[-300:])
                if group == "P-256":
                    line = srv.log.wait_for(lambda l: "no key-exchange group in common" in l)
                    self.assertIn("(we offer P-256)", line or "")

    def test_a_request_head_over_64_kb_ends_the_connection(self):
        with our_server() as srv:
            conn = http.client.HTTPSConnection("localhost", srv.port, timeout=5, context=context())
            conn.putrequest("GET", "/")
            for i in range(40):
                conn.putheader(f"X-Filler-{i}", "x" * 4000)
            conn.endheaders()
            with self.assertRaises((http.client.HTTPException, OSError)):
                conn.getresponse().read()
            conn.close()
            line = srv.log.wait_for(lambda l: l.startswith("closed"))
            self.assertIn("request head over 65536 bytes", line or "")

    def test_http_server_alone_reads_a_6_mb_head_and_server_py_stops_at_64_kb(self):
        """What MAX_REQUEST_HEAD buys: http.server caps each line at 65,536 bytes and a head at
        100 lines, so alone it reads and answers a head of 99 lines of 65,500 bytes (6.5 MB);
        server.py closes the same head's connection after 64 KB."""
        head = (b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                + b"".join(b"X-%d: %s\r\n" % (i, b"x" * 65500) for i in range(98)) + b"\r\n")
        self.assertGreater(len(head), 6_400_000)

        class Plain(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        plain = http.server.HTTPServer(("127.0.0.1", 0), Plain)
        threading.Thread(target=plain.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.addCleanup(plain.server_close)
        self.addCleanup(plain.shutdown)
        with socket.create_connection(plain.server_address, timeout=10) as sock:
            sock.sendall(head)
            self.assertTrue(sock.recv(100).startswith(b"HTTP/1.0 200 OK"))

        with our_server() as srv:
            with context().wrap_socket(socket.create_connection(("127.0.0.1", srv.port),
                                                                timeout=10),
                                       server_hostname="localhost") as tls:
                try:
                    tls.sendall(head)
                except OSError:                       # closed before it was all sent
                    pass
            line = srv.log.wait_for(lambda l: l.startswith("closed"))
            self.assertIn("request head over 65536 bytes", line or "")

    def test_an_alert_sent_first_is_named_as_tls(self):
        with our_server() as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
                sock.sendall(b"\x15\x03\x03\x00\x02\x02\x28")     # alert: fatal handshake_failure
                sock.recv(100)
            line = srv.log.wait_for(lambda l: l.startswith("rejected"))
            self.assertIn("sent a TLS alert (handshake_failure) instead of a ClientHello", line)

    def test_a_tls_record_that_is_no_handshake_is_named_as_tls(self):
        """ChangeCipherSpec, application data or a heartbeat sent first: TLS, but no
        ClientHello (before, "not TLS at all"); garbage with a record's first byte is not TLS."""
        records = [(b"\x14\x03\x03\x00\x01\x01", "a TLS record of type 20 (change_cipher_spec)"),
                   (b"\x17\x03\x03\x00\x05hello", "a TLS record of type 23 (application_data)"),
                   (b"\x18\x03\x03\x00\x03\x01\x00\x00", "a TLS record of type 24 (heartbeat)"),
                   (b"\x17\x00\x01\x02", "not TLS at all (first bytes 17000102)")]
        with our_server() as srv:
            for record, words in records:
                with self.subTest(words=words):
                    start = len(srv.log.lines)
                    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
                        sock.sendall(record)
                        sock.recv(100)                  # until the server hangs up
                    line = srv.log.wait_for(lambda l: l.startswith("rejected"), start=start)
                    self.assertIn(words, line)
                    if "TLS record" in words:
                        self.assertTrue(line.endswith("instead of a ClientHello: TLS, but no "
                                                      "handshake"), line)

    def test_a_fatal_tls_error_after_the_handshake_is_logged(self):
        with our_server() as srv:
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            tls = context().wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            tls.recv(4096)
            # A forged application-data record: the server cannot decrypt it.
            with socket.socket(fileno=os.dup(tls.fileno())) as plain:
                plain.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
            line = srv.log.wait_for(lambda l: l.startswith("closed"))
            tls.close()
            self.assertRegex(line or "", r"^closed 127\.0\.0\.1:\d+: TLS error after the handshake "
                                         r"\(.+\)$")
            self.assertNotIn("_ssl.c", line)

    def test_tls12_without_a_client_certificate(self):
        with our_server() as srv:
            ctx = client.make_client_context(CA.crt)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            fetch(srv, ctx)
            line = srv.log.wait_for(lambda l: l.startswith("rejected"))
            self.assertIn("no client certificate (the client sent none)", line)


if __name__ == "__main__":
    unittest.main()
