"""--check: each broken certificate of the scenario PKI gets the right finding.

Every test runs demo/check.py's check_certificates() on real files made by the
Makefile (tests/support.py pki()), with the real openssl binary and real
in-memory handshakes; the URL test talks to a real server.py on 127.0.0.1.
Each "should fail" case is paired with a good one, or with the fix the
report printed, applied and checked again.
"""

import contextlib
import io
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from tests import support
from tests.support import path

from demo import check

VERDICTS = ("ok   ", "warn ", "FAIL ")


def run_check(cacert, cert=None, key=None, url=None):
    """check_certificates() as --check runs it; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = check.check_certificates(cacert, cert, key, url, width=100)
    return code, out.getvalue(), err.getvalue()


def findings(output):
    """{check name: (verdict, whole text)}, continuation lines joined; a
    check that prints twice (dates for two certificates) keeps both texts."""
    found, current = {}, None
    for line in output.splitlines():
        if line.startswith(VERDICTS):
            verdict, rest = line[:4].strip(), line[5:]
            current = [verdict, rest]
            found.setdefault(rest.split(":", 1)[0], []).append(current)
        elif line.startswith("     ") and current:
            current[1] += " " + line.strip()
        else:
            current = None
    return {name: (entries[0][0] if len(entries) == 1 else
                   "FAIL" if any(e[0] == "FAIL" for e in entries) else entries[0][0],
                   " | ".join(e[1] for e in entries)) for name, entries in found.items()}


class CheckTestCase(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mtls-check-test-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)

    def check(self, cacert, cert=None, key=None, url=None, code=None):
        """Run the check; assert the width rule and the exit code; return its findings."""
        exit_code, out, err = run_check(cacert, cert, key, url)
        for line in out.splitlines():
            self.assertLessEqual(len(line), 100, f"too wide: {line!r}")
        self.assertNotIn("Traceback", out + err)
        if code is not None:
            self.assertEqual(exit_code, code, out + err)
        self.output = out
        found = findings(out)
        for name, (verdict, text) in found.items():
            for one in text.split(" | "):
                self.assertLessEqual(one.count(" -- "), 1, f"one ' -- ' before the fix: {one}")
        return found

    def assertFinding(self, found, name, verdict, *phrases):
        """The check `name` said `verdict`, in words that include each phrase."""
        self.assertIn(name, found, self.output)
        self.assertEqual(found[name][0], verdict, self.output)
        for phrase in phrases:
            self.assertIn(phrase, found[name][1], self.output)

    def openssl(self, *args, cwd=None):
        """Run the real openssl binary; the test fails if it does."""
        done = subprocess.run(["openssl"] + list(args), capture_output=True, text=True,
                              cwd=cwd or self.tmp, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)


class TestGoodCertificates(CheckTestCase):

    def test_good_client_passes_every_check(self):
        """The project's own client certificate: every check says ok, exit 0."""
        found = self.check(path("ca.crt"), path("client.crt"), path("client.key"), code=0)
        for name in ("parse ca.crt", "parse client.crt", "parse client.key", "CA", "key match",
                     "dates client", "dates CA", "complete chain", "chain", "strict", "purpose",
                     "identity", "key size"):
            self.assertFinding(found, name, "ok")
        self.assertFinding(found, "chain", "ok", "openssl verify -x509_strict -purpose sslclient: OK")
        self.assertFinding(found, "strict", "ok", "Python", "VERIFY_X509_STRICT")
        self.assertFinding(found, "identity", "ok", "cn:my-client")
        self.assertIn("summary: 0 FAIL, 0 warn,", self.output)

    def test_full_chain_file_is_complete(self):
        """Leaf + intermediate in one file: the chain is complete and verifies."""
        found = self.check(path("ca.crt"), path("int-client-chain.pem"), path("client.key"), code=0)
        self.assertFinding(found, "complete chain", "ok", "CN=my-intermediate-ca")
        self.assertFinding(found, "strict", "ok")

    def test_uri_san_is_the_identity(self):
        """A client with a URI SAN is known by it, spelled as server.py spells it."""
        found = self.check(path("ca.crt"), path("other-client.crt"), path("other-client.key"), code=0)
        self.assertFinding(found, "identity", "ok", "uri:spiffe://example.org/other-client")


    def test_ca_bundle_is_judged_by_the_ca_your_chain_uses(self):
        """A bundle of four CAs, one of them the article's (no keyUsage): alone it is one
        warning line; with a certificate, only the CA that issued it is judged."""
        bundle = os.path.join(self.tmp, "bundle.crt")
        with open(bundle, "w") as f:
            for name in ("ca.crt", "rogue-ca.crt", "article/ca.crt", "int-ca.crt"):
                with open(path(name)) as part:
                    f.write(part.read())
        found = self.check(bundle, code=0)
        self.assertFinding(found, "CA", "warn", "1 of 4 certificates", "CN=my-ca")
        self.assertFinding(found, "dates CA", "ok", "all 4 certificates")
        found = self.check(bundle, path("client.crt"), path("client.key"), code=0)
        self.assertFinding(found, "strict", "ok")


class TestBrokenCertificates(CheckTestCase):

    def test_expired_client_fails_its_dates(self):
        """expired-client.crt: the dates check fails and says when it expired."""
        found = self.check(path("ca.crt"), path("expired-client.crt"), path("client.key"), code=1)
        self.assertFinding(found, "dates client", "FAIL", "expired on 2020-02-01", "renew it:")
        self.assertFinding(found, "chain", "FAIL", "certificate has expired", "see dates")
        self.assertFinding(found, "dates CA", "ok")
        # The renewal command it prints (the CA's key is next to ca.crt) gives a good certificate.
        work = tempfile.mkdtemp(dir=self.tmp)
        shutil.copy(path("expired-client.crt"), work)
        expired = os.path.join(work, "expired-client.crt")
        found = self.check(path("ca.crt"), expired, path("client.key"), code=1)
        command = found["dates client"][1].split("renew it: ", 1)[1]
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.check(path("ca.crt"), os.path.join(work, "expired-client-renewed.crt"),
                   path("client.key"), code=0)

    def test_server_certificate_as_client_fails_purpose(self):
        """server.crt passed as a client certificate: the EKU does not fit the role."""
        found = self.check(path("ca.crt"), path("server.crt"), path("server.key"), code=1)
        self.assertFinding(found, "purpose", "FAIL", "TLS Web Server Authentication",
                           "a server certificate", "clientAuth")
        self.assertFinding(found, "chain", "FAIL", "error 26", "see purpose")
        self.assertFinding(found, "strict", "FAIL", "unsuitable certificate purpose")

    def test_rogue_client_is_from_another_ca(self):
        """rogue-client.crt checked against our CA: the chain names the other CA."""
        found = self.check(path("ca.crt"), path("rogue-client.crt"), path("rogue-client.key"), code=1)
        self.assertFinding(found, "chain", "FAIL", "another CA, CN=rogue-ca", "rogue-ca.crt")
        self.assertNotIn("complete chain", found)       # not a gap in the file: a wrong CA
        self.assertFinding(found, "dates client", "ok")

    def test_leaf_without_its_intermediate_is_incomplete(self):
        """int-client.crt alone: incomplete chain. Beside int-client-chain.pem (the
        scenario folder) the check says to use that file; beside int-ca.crt only, it
        prints the cat command. Either way the file it names then passes every check."""
        found = self.check(path("ca.crt"), path("int-client.crt"), path("client.key"), code=1)
        self.assertFinding(found, "complete chain", "FAIL", "holds only CN=my-client",
                           "CN=my-intermediate-ca", f"use {path('int-client-chain.pem')} as")
        self.assertFinding(found, "chain", "FAIL", "error 20", "see complete chain")
        for tool in ("curl:", "client.py:", "requests:", "Node:", "nginx:"):
            self.assertRegex(self.output, rf"(?m)^ {{5}}{re.escape(tool)}")
        self.check(path("ca.crt"), path("int-client-chain.pem"), path("client.key"), code=0)
        folder = tempfile.mkdtemp(dir=self.tmp)
        for name in ("int-client.crt", "int-ca.crt", "ca.crt"):
            shutil.copy(path(name), folder)
        found = self.check(os.path.join(folder, "ca.crt"), os.path.join(folder, "int-client.crt"),
                           path("client.key"), code=1)
        self.assertFinding(found, "complete chain", "FAIL", "incomplete", "CN=my-intermediate-ca",
                           "int-ca.crt", "cat ")
        command = found["complete chain"][1].split("send the chain: ", 1)[1]
        done = subprocess.run(command.split(", then use it")[0], shell=True, capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.check(os.path.join(folder, "ca.crt"), os.path.join(folder, "int-client-chain.pem"),
                   path("client.key"), code=0)

    def test_missing_intermediate_nowhere_nearby(self):
        """The leaf and the root alone in a folder: still incomplete, naming the missing issuer."""
        folder = tempfile.mkdtemp(dir=self.tmp)
        for name in ("int-client.crt", "ca.crt"):
            shutil.copy(path(name), folder)
        found = self.check(os.path.join(folder, "ca.crt"), os.path.join(folder, "int-client.crt"),
                           path("client.key"), code=1)
        self.assertFinding(found, "complete chain", "FAIL", "CN=my-intermediate-ca",
                           "if CN=my-intermediate-ca is an intermediate CA, append")

    def test_article_ca_without_key_usage_fails_strict(self):
        """certs/article/: the CA's missing keyUsage (not the v1 leaf) fails the
        strict checks, both Python's handshake and openssl verify -x509_strict;
        the CA reissued with the command the report gives passes them."""
        found = self.check(path("article/ca.crt"), path("article/client.crt"),
                           path("article/client.key"), code=1)
        self.assertFinding(found, "CA", "FAIL", "no keyUsage", "not the v1 leaf")
        self.assertFinding(found, "strict", "FAIL", "CA cert does not include key usage extension",
                           "Python", "VERIFY_X509_STRICT", "see CA")
        self.assertFinding(found, "chain", "FAIL", "-x509_strict", "error 92",
                           "without -x509_strict openssl verify accepts it")
        self.assertFinding(found, "parse client.crt", "ok", "X.509 v1")
        self.assertFinding(found, "purpose", "warn", "no extendedKeyUsage", "every purpose")
        command = re.search(r"(openssl req -x509 .*? -out ca-new\.crt)", found["CA"][1]).group(1)
        work = tempfile.mkdtemp(dir=self.tmp)
        done = subprocess.run(shlex.split(command), cwd=work, capture_output=True, text=True,
                              timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        found = self.check(os.path.join(work, "ca-new.crt"), path("article/client.crt"),
                           path("article/client.key"), code=0)
        self.assertFinding(found, "CA", "ok", "Certificate Sign")
        self.assertFinding(found, "strict", "ok")

    def test_leaf_without_authority_key_identifier_fails_strict_only(self):
        """A v3 leaf without authorityKeyIdentifier: both strict engines refuse it, plain
        openssl verify accepts it, and the fix names the missing extension."""
        with open(os.path.join(self.tmp, "noakid.cnf"), "w") as f:
            f.write("[leaf]\nbasicConstraints = critical, CA:FALSE\nextendedKeyUsage = clientAuth\n"
                    "keyUsage = critical, digitalSignature\nauthorityKeyIdentifier = none\n")
        self.openssl("x509", "-req", "-in", path("client.csr"), "-CA", path("ca.crt"), "-CAkey",
                     path("ca.key"), "-set_serial", "9", "-days", "90", "-extfile", "noakid.cnf",
                     "-extensions", "leaf", "-out", "noakid.crt")
        found = self.check(path("ca.crt"), os.path.join(self.tmp, "noakid.crt"),
                           path("client.key"), code=1)
        self.assertFinding(found, "chain", "FAIL", "error 85 at depth 0",
                           "without -x509_strict openssl verify accepts it",
                           "authorityKeyIdentifier = keyid:always")
        self.assertFinding(found, "strict", "FAIL", "Missing Authority Key Identifier", "see chain")
        self.assertFinding(found, "CA", "ok")

    def test_mismatched_key(self):
        """Another certificate's key: Python's ssl and openssl both say it does not match."""
        found = self.check(path("ca.crt"), path("client.crt"), path("server.key"), code=1)
        self.assertFinding(found, "key match", "FAIL", "KEY_VALUES_MISMATCH",
                           "openssl: the public keys differ")
        self.assertNotIn("strict", found)        # a handshake with the wrong key proves nothing

    def test_der_files_are_named_with_their_conversion(self):
        """DER certificate and key: each says DER and how to convert; the rest is still
        checked (on PEM copies); the converted files pass."""
        crt, key = os.path.join(self.tmp, "client.der"), os.path.join(self.tmp, "client-key.der")
        self.openssl("x509", "-in", path("client.crt"), "-outform", "DER", "-out", crt)
        self.openssl("pkey", "-in", path("client.key"), "-outform", "DER", "-out", key)
        found = self.check(path("ca.crt"), crt, key, code=1)
        self.assertFinding(found, "parse client.der", "FAIL", "DER",
                           f"openssl x509 -inform DER -in {crt}")
        self.assertFinding(found, "parse client-key.der", "FAIL", "DER", "openssl pkey -inform DER")
        self.assertFinding(found, "chain", "ok")
        self.assertFinding(found, "strict", "ok")
        for name in ("parse client.der", "parse client-key.der"):
            command = found[name][1].split("convert it: ", 1)[1].split(" curl:")[0]
            done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
            self.assertEqual(done.returncode, 0, done.stderr)
        self.check(path("ca.crt"), crt[:-4] + ".pem", key[:-4] + ".pem", code=0)

    def test_rsa_1024_key_is_weak(self):
        """An RSA-1024 key, certified by our CA: the key size check fails."""
        self.openssl("genrsa", "-out", "weak.key", "1024")
        self.openssl("req", "-new", "-key", "weak.key", "-subj", "/CN=weak-client", "-out", "weak.csr")
        self.openssl("x509", "-req", "-in", "weak.csr", "-CA", path("ca.crt"), "-CAkey",
                     path("ca.key"), "-set_serial", "7", "-days", "90", "-extfile",
                     os.path.join(support.ROOT, "openssl.cnf"), "-extensions", "client",
                     "-out", "weak.crt")
        found = self.check(path("ca.crt"), os.path.join(self.tmp, "weak.crt"),
                           os.path.join(self.tmp, "weak.key"), code=1)
        self.assertFinding(found, "key size", "FAIL", "1024 bits", "openssl genpkey")
        self.assertFinding(found, "key match", "ok")
        self.assertFinding(found, "strict", "FAIL", "EE_KEY_TOO_SMALL")


    def test_certificate_expiring_soon_is_a_warning(self):
        """A certificate with 10 days left: a warning with the date, not a failure."""
        self.openssl("x509", "-req", "-in", path("client.csr"), "-CA", path("ca.crt"), "-CAkey",
                     path("ca.key"), "-set_serial", "8", "-days", "10", "-extfile",
                     os.path.join(support.ROOT, "openssl.cnf"), "-extensions", "client",
                     "-out", "soon.crt")
        found = self.check(path("ca.crt"), os.path.join(self.tmp, "soon.crt"), path("client.key"),
                           code=0)
        self.assertFinding(found, "dates client", "warn", "expires on", "in 9 days")

    def test_encrypted_keys_are_named_without_a_prompt(self):
        """An encrypted key (PEM or DER): one FAIL with the decrypt command; openssl
        is never left waiting for a passphrase."""
        self.openssl("pkey", "-in", path("client.key"), "-aes256", "-passout", "pass:secret",
                     "-out", "enc.key")
        self.openssl("pkcs8", "-topk8", "-in", path("client.key"), "-outform", "DER",
                     "-passout", "pass:secret", "-out", "enc.der")
        for name, form in (("enc.key", "PEM"), ("enc.der", "DER")):
            found = self.check(path("ca.crt"), path("client.crt"), os.path.join(self.tmp, name),
                               code=1)
            self.assertFinding(found, f"parse {name}", "FAIL", f"{form}, encrypted",
                               "openssl pkey", "-out")

    def test_key_inside_the_certificate_file(self):
        """No --key, the key in the cert file: it is found, and checked like any key."""
        combined = os.path.join(self.tmp, "combined.pem")
        with open(os.open(combined, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            for name in ("client.crt", "client.key"):
                with open(path(name)) as part:
                    f.write(part.read())
        found = self.check(path("ca.crt"), combined, None, code=0)
        self.assertFinding(found, "key match", "ok")
        self.assertFinding(found, "strict", "ok")


# Certificates as other tools make them: trustme's extensions (a root, an
# intermediate, a leaf for both roles), made with openssl req / x509 -req
# from a config of their own, not the project's openssl.cnf.
OTHER_TOOL_EXTENSIONS = """\
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth, serverAuth
subjectAltName = DNS:client.example.org
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_without_basic_constraints]
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[svid_san_not_critical]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment, keyAgreement
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = URI:spiffe://example.org/ns/default/sa/web
authorityKeyIdentifier = keyid:always
"""


class TestOtherToolsCertificates(CheckTestCase):
    """Certificates --check did not build: each finding is true, and each fix,
    run as printed, gives files that pass the check and a real server.py."""

    def setUp(self):
        self.work = tempfile.mkdtemp(dir=self.tmp)
        with open(os.path.join(self.work, "ext.cnf"), "w") as f:
            f.write(OTHER_TOOL_EXTENSIONS)

    def file(self, name):
        return os.path.join(self.work, name)

    def make_ca(self, name, subject, section="root"):
        """A self-signed CA, EC P-256, with the extensions of `section`."""
        self.openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "90",
                     "-subj", subject, "-config", "ext.cnf", "-extensions", section,
                     cwd=self.work)

    def sign(self, name, subject, ca, section, *extra, key=None):
        """A certificate for `subject` signed by the CA `ca` (name.crt, name.key)."""
        if key is None:
            self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-out", name + ".key", cwd=self.work)
        self.openssl("req", "-new", "-key", key or name + ".key", "-subj", subject,
                     "-out", name + ".csr", cwd=self.work)
        self.openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey",
                     ca + ".key", "-set_serial", str(len(os.listdir(self.work))), "-days", "60",
                     "-extfile", "ext.cnf", "-extensions", section, *extra, "-out", name + ".crt",
                     cwd=self.work)

    def concat(self, name, *parts):
        with open(self.file(name), "w") as f:
            for part in parts:
                with open(part) as one:
                    f.write(one.read())
        return self.file(name)

    def make_chain(self):
        """trustme's layout: a root, an intermediate, and a client leaf under it."""
        self.make_ca("ca", "/O=trustme/OU=Testing CA")
        self.sign("int", "/O=trustme/OU=Testing intermediate CA", "ca", "intermediate")
        self.sign("client", "/O=trustme/CN=client.example.org", "int", "leaf")

    def fetch_as(self, cert, key, ca):
        """A real request to server.py trusting `ca` for clients, with client.py's code."""
        import client
        with support.RunningServer(ca=ca) as running:
            context = client.make_client_context(path("ca.crt"), cert, key)
            try:
                return client.fetch(running.url, context, timeout=5.0)[0]
            except client.Failure as failure:
                return failure.label

    def test_chain_file_beside_the_leaf_is_the_one_to_use(self):
        """trustme's layout: the leaf alone, and beside it a file with the leaf and
        its intermediate. The check names that file (not "another CA"); server.py
        refuses the leaf and accepts the file, as the check says."""
        self.make_chain()
        chain = self.concat("client-chain.pem", self.file("client.crt"), self.file("int.crt"))
        found = self.check(self.file("ca.crt"), self.file("client.crt"), self.file("client.key"),
                           code=1)
        self.assertFinding(found, "complete chain", "FAIL",
                           "holds only CN=client.example.org,O=trustme",
                           f"{chain} next to it holds the whole chain", f"use {chain} as")
        self.assertNotIn("another CA", found["chain"][1])
        self.assertRegex(self.output, rf"(?m)^ {{5}}client.py: --cert {re.escape(chain)} --key")
        self.assertEqual(self.fetch_as(self.file("client.crt"), self.file("client.key"),
                                       self.file("ca.crt")), "unknown CA")
        self.assertEqual(self.fetch_as(chain, self.file("client.key"), self.file("ca.crt")), 200)
        found = self.check(self.file("ca.crt"), chain, self.file("client.key"), code=0)
        self.assertFinding(found, "complete chain", "ok", "Testing intermediate CA")

    def test_intermediate_inside_another_leafs_chain_file(self):
        """The intermediate sits second in another leaf's chain file (a server's, with
        its key): the command printed picks out just that block, and its result passes
        the check and server.py."""
        self.make_chain()
        self.sign("server", "/O=trustme/CN=localhost", "int", "leaf")
        self.concat("server-chain.pem", self.file("server.crt"), self.file("int.crt"),
                    self.file("server.key"))
        os.remove(self.file("int.crt"))
        found = self.check(self.file("ca.crt"), self.file("client.crt"), self.file("client.key"),
                           code=1)
        self.assertFinding(found, "complete chain", "FAIL", "is incomplete",
                           "Testing intermediate CA,O=trustme (in " + self.file("server-chain.pem"))
        command = found["complete chain"][1].split("send the chain: ", 1)[1]
        command = command.split(", then use it")[0]
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        chain = self.file("client-chain.pem")
        with open(chain) as f:
            self.assertEqual(f.read().count("BEGIN"), 2)          # leaf + intermediate, no key
        self.check(self.file("ca.crt"), chain, self.file("client.key"), code=0)
        self.assertEqual(self.fetch_as(chain, self.file("client.key"), self.file("ca.crt")), 200)

    def test_leaf_under_another_cas_intermediate(self):
        """A leaf from another CA's intermediate, both CA files beside it: the chain
        check names the other root, and both halves of its fix (trust that root, send
        the chain) are needed and enough for server.py."""
        self.make_chain()
        self.make_ca("mine", "/CN=the CA I trust")
        found = self.check(self.file("mine.crt"), self.file("client.crt"), self.file("client.key"),
                           code=1)
        self.assertFinding(found, "chain", "FAIL", "under another CA, OU=Testing CA,O=trustme (in "
                           + self.file("ca.crt"), f"add {self.file('ca.crt')} to the CAs it trusts",
                           "and send the chain: cat ")
        self.assertFinding(found, "strict", "FAIL", "see chain")
        self.assertNotIn("complete chain", found)
        command = found["chain"][1].split("send the chain: ", 1)[1].split(", then use it")[0]
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        both = self.concat("both.crt", self.file("mine.crt"), self.file("ca.crt"))
        key, chain = self.file("client.key"), self.file("client-chain.pem")
        self.assertEqual(self.fetch_as(self.file("client.crt"), key, both), "unknown CA")
        self.assertEqual(self.fetch_as(chain, key, self.file("mine.crt")), "unknown CA")
        self.assertEqual(self.fetch_as(chain, key, both), 200)

    def test_sha1_signature_is_named_with_its_fix(self):
        """A leaf signed with SHA-1 (openssl x509 -req -sha1): the signature check names
        it and OpenSSL 3's refusal; the re-signing command printed gives a certificate
        that passes; with a URL the server is described, not blamed."""
        shutil.copy(path("client.key"), self.work)
        self.openssl("x509", "-req", "-in", path("client.csr"), "-CA", path("ca.crt"), "-CAkey",
                     path("ca.key"), "-set_serial", "11", "-days", "60", "-sha1", "-extfile",
                     os.path.join(support.ROOT, "openssl.cnf"), "-extensions", "client",
                     "-out", "sha1.crt", cwd=self.work)
        with support.RunningServer() as running:
            found = self.check(path("ca.crt"), self.file("sha1.crt"), self.file("client.key"),
                               running.url, code=1)
        self.assertFinding(found, "signature", "FAIL", "sha1WithRSAEncryption", "SHA-1",
                           "CA_MD_TOO_WEAK", "re-sign it with SHA-256")
        self.assertFinding(found, "strict", "FAIL", "CA_MD_TOO_WEAK", "see signature")
        self.assertFinding(found, "server", "warn", "would not present your certificate",
                           "ca md too weak")
        self.assertFinding(found, "server sends", "ok", "CN=localhost")
        self.assertNotIn("is it a TLS server", self.output)
        self.assertFinding(found, "request", "FAIL", "CA_MD_TOO_WEAK", "see signature")
        command = found["signature"][1].split("re-sign it with SHA-256: ", 1)[1]
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        with support.RunningServer() as running:
            found = self.check(path("ca.crt"), self.file("sha1-renewed.crt"),
                               self.file("client.key"), running.url, code=0)
        self.assertFinding(found, "signature", "ok", "sha256WithRSAEncryption")
        self.assertFinding(found, "request", "ok", "HTTP 200")

    def test_ca_without_basic_constraints(self):
        """A self-signed CA with keyUsage keyCertSign but no basicConstraints: the CA
        check fails and says why (it used to say CA:TRUE); the CA reissued with the
        command printed passes the strict checks, for the same leaf."""
        self.make_ca("ca", "/CN=hand-made CA", "ca_without_basic_constraints")
        self.sign("client", "/CN=hand-made client", "ca", "leaf")
        found = self.check(self.file("ca.crt"), self.file("client.crt"), self.file("client.key"),
                           code=1)
        self.assertFinding(found, "CA", "FAIL", "has no basicConstraints", "invalid CA certificate",
                           "-addext 'basicConstraints=critical,CA:TRUE'")
        self.assertNotIn("CA:TRUE,", found["CA"][1])
        self.assertFinding(found, "chain", "FAIL", "error 79", "see CA")
        self.assertFinding(found, "strict", "FAIL", "invalid CA certificate", "see CA")
        command = re.search(r"(openssl req -x509 .*? -out ca-new\.crt)", found["CA"][1]).group(1)
        done = subprocess.run(shlex.split(command), cwd=self.work, capture_output=True, text=True,
                              timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        found = self.check(self.file("ca-new.crt"), self.file("client.crt"),
                           self.file("client.key"), code=0)
        self.assertFinding(found, "CA", "ok", "basicConstraints CA:TRUE")
        self.assertFinding(found, "strict", "ok")

    def test_chain_written_ca_first_is_put_in_order(self):
        """A chain file written intermediate first, then the leaf: server.py, client.py and
        the check each name the order (not a wrong key, nor a CA as --cert), with the
        command that puts the leaf first; its result passes the check and server.py."""
        import client
        self.make_chain()
        self.sign("server", "/O=trustme/CN=localhost", "int", "leaf")
        for role in ("client", "server"):
            self.concat(f"{role}-reversed.pem", self.file("int.crt"), self.file(f"{role}.crt"))
        done = support.run_script("server.py", "--port", "0", "--ca", self.file("ca.crt"),
                                  "--cert", self.file("server-reversed.pem"),
                                  "--key", self.file("server.key"))
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertRegex(done.stderr, r"^error: wrong order: .* starts with a CA certificate "
                         r"\(\(no CN\)\); the server's own certificate \(localhost\) is "
                         r"certificate 2 of 2.* -- put it first: awk ")
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        reversed_chain, key = self.file("client-reversed.pem"), self.file("client.key")
        with self.assertRaises(client.Failure) as caught:
            client.make_client_context(path("ca.crt"), reversed_chain, key)
        self.assertEqual(caught.exception.label, "wrong order")
        self.assertIn("our own certificate (client.example.org) is certificate 2 of 2",
                      caught.exception.message)
        found = self.check(self.file("ca.crt"), reversed_chain, key, code=1)
        self.assertFinding(found, "order", "FAIL", "starts with the CA certificate OU=Testing "
                           "intermediate CA,O=trustme", "certificate 2 of 2", "put the leaf first")
        self.assertFinding(found, "key match", "ok")
        self.assertFinding(found, "purpose", "ok")
        command = found["order"][1].split("put the leaf first: ", 1)[1].split(", then use ")[0]
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        fixed = self.file("client-reversed-fixed.pem")
        self.assertEqual(self.fetch_as(self.file("client.crt"), key, self.file("ca.crt")),
                         "unknown CA")                          # the leaf alone is not enough
        self.assertEqual(self.fetch_as(fixed, key, self.file("ca.crt")), 200)
        found = self.check(self.file("ca.crt"), fixed, key, code=0)
        self.assertNotIn("order", found)

    def test_svid_with_an_empty_subject_and_a_non_critical_san(self):
        """A SPIFFE-style certificate (empty subject, a URI SAN) whose SAN is not marked
        critical: strict verifiers refuse it (error 88); the chain check says what to
        reissue it with (not "see CA"), and no line shows an empty name as "()"."""
        self.make_ca("ca", "/O=SPIFFE")
        self.sign("svid", "/", "ca", "svid_san_not_critical")
        found = self.check(self.file("ca.crt"), self.file("svid.crt"), self.file("svid.key"),
                           code=1)
        self.assertFinding(found, "chain", "FAIL", "error 88 at depth 0 (empty subject)",
                           "subjectAltName = critical")
        self.assertNotIn("see CA", found["chain"][1])
        self.assertFinding(found, "strict", "FAIL", "not critical (verify error 88)")
        self.assertFinding(found, "dates client", "ok", "svid.crt (empty subject) valid until")
        self.assertNotIn("()", self.output)

    def test_leaf_as_the_ca_is_the_only_finding(self):
        """A leaf passed as --cacert: CA fails, and no check claims a complete chain or a
        strict handshake through a CA that is not one."""
        found = self.check(path("client.crt"), path("client.crt"), path("client.key"), code=1)
        self.assertFinding(found, "CA", "FAIL", "is not a CA")
        self.assertFinding(found, "chain", "FAIL", "holds no CA certificate: see CA")
        self.assertNotIn("complete chain", found)
        self.assertNotIn("strict", found)
        self.assertNotIn("ok   ", "\n".join(l for l in self.output.splitlines()
                                             if "complete chain" in l or "strict" in l))

    def test_key_and_certificate_in_one_file_from_the_command_line(self):
        """trustme's private_key_and_cert_chain_pem (key, leaf, intermediate in one file),
        given as --cert alone: the documented form works from the command line."""
        self.make_chain()
        combined = self.concat("client-combined.pem", self.file("client.key"),
                               self.file("client.crt"), self.file("int.crt"))
        os.chmod(combined, 0o600)
        done = support.run_script("mtls_demo.py", "--check", "--cacert", self.file("ca.crt"),
                                  "--cert", combined)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        found = findings(done.stdout)
        self.assertEqual(found["key match"][0], "ok", done.stdout)
        self.assertEqual(found["complete chain"][0], "ok", done.stdout)
        self.assertIn("and a private key", found["parse client-combined.pem"][1])
        done = support.run_script("mtls_demo.py", "--check", "--cacert", self.file("ca.crt"),
                                  "--key", self.file("client.key"))
        self.assertEqual(done.returncode, 2)
        self.assertIn("--key needs --cert", done.stderr)


class TestFieldsAsOpensslPrintsThem(CheckTestCase):
    """The one certificate reader (armour/certificate_fields.py) gives --check
    every field as `openssl x509 -text -nameopt RFC2253` prints it, without
    running the binary: names that need escaping, a multi-valued RDN,
    IPv6, URI, otherName and RID SANs, an unnamed EKU,
    RSA-PSS, Ed25519, P-384 and a v1 certificate."""

    CERTIFICATES = [
        ["-newkey", "ed25519", "-subj", "/CN=\u00e9 x,y;<z>/O=Acme \"q\"/OU= lead#/C=DE",
         "-addext", "subjectAltName=IP:::1,IP:fe80::1:abcd,DNS:a.example,email:a@b.example,"
         "URI:spiffe://example.org/a,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:u@example.org,"
         "RID:1.2.3.4",
         "-addext", "extendedKeyUsage=clientAuth,1.2.3.4,codeSigning,1.3.6.1.4.1.311.10.3.4",
         "-addext", "keyUsage=critical,digitalSignature,keyAgreement,encipherOnly",
         "-addext", "basicConstraints=critical,CA:TRUE,pathlen:2"],
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-subj",
         "/CN=#p384 /DC=org/emailAddress=x@y.example",
         "-addext", "basicConstraints=CA:FALSE", "-addext", "subjectAltName=DNS:*.example"],
        ["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048", "-subj", "/CN=a+OU=b/O=x",
         "-sha384"],
    ]

    def openssl_says(self, crt):
        """subject, issuer, signature, key type and bits, public key and the
        six extensions, parsed from what the openssl binary prints."""
        done = subprocess.run(
            ["openssl", "x509", "-in", crt, "-noout", "-subject", "-issuer", "-nameopt",
             "RFC2253", "-pubkey", "-ext", "subjectAltName,extendedKeyUsage,basicConstraints,"
             "keyUsage,subjectKeyIdentifier,authorityKeyIdentifier", "-text", "-certopt",
             "no_header,no_extensions,no_sigdump"],
            capture_output=True, text=True, timeout=30, check=True).stdout
        lines = done.splitlines()
        extensions = {line[7:].split(":")[0]: lines[i + 1].strip().split(", ")
                      for i, line in enumerate(lines) if line.startswith("X509v3 ")}
        return {"subject": lines[0][len("subject="):], "issuer": lines[1][len("issuer="):],
                "version": int(re.search(r"Version: (\d+)", done).group(1)),
                "signature": re.search(r"Signature Algorithm: (\S+)", done).group(1),
                "key_type": re.search(r"Public Key Algorithm: (\S+)", done).group(1),
                "key_bits": int(m.group(1)) if (m := re.search(r"\((\d+) bit\)", done)) else None,
                "public_key": re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----",
                                        done, re.S).group(0),
                "extensions": extensions}

    def test_fields_match_openssl_without_running_it(self):
        from unittest import mock
        from demo.certificates import read_certificate
        work = tempfile.mkdtemp(dir=self.tmp)
        made = []
        for i, args in enumerate(self.CERTIFICATES):
            crt = os.path.join(work, f"{i}.crt")
            self.openssl("req", "-x509", "-nodes", "-keyout", os.path.join(work, f"{i}.key"),
                         "-out", crt, "-days", "2", "-utf8", *args, cwd=work)
            made.append(crt)
        # A v1 certificate: no extensions at all (openssl x509 -req without -extfile).
        self.openssl("req", "-new", "-key", "2.key", "-subj", "/CN=v1", "-out", "v1.csr", cwd=work)
        self.openssl("x509", "-req", "-in", "v1.csr", "-key", "2.key", "-days", "2",
                     "-out", "v1.crt", cwd=work)
        made.append(os.path.join(work, "v1.crt"))
        expected = [self.openssl_says(crt) for crt in made]
        with mock.patch.dict(os.environ, {"PATH": work}):      # no openssl binary to ask
            for crt, want in zip(made, expected):
                with open(crt) as f:
                    cert = read_certificate(f.read())
                with self.subTest(crt=os.path.basename(crt), subject=want["subject"]):
                    self.assertEqual({k: getattr(cert, k) for k in want}, want)


class TestPemReader(unittest.TestCase):
    """The PEM reader that --check, server.py and the proxy path share."""

    def test_begin_lines_without_an_end_cost_no_quadratic_time(self):
        """A trusted proxy's header (or a file) of 3,500 BEGIN lines and no END took
        about a second of CPU (each BEGIN scanned to the end of the text); the
        real block after them is still found, and an encrypted key's DEK-Info
        line (with its dashes) stays inside its block."""
        from armour.certificate_fields import PEM_BLOCK, pem_to_ders
        with open(path("ca.crt"), "rb") as f:
            real = f.read()
        started = time.process_time()
        ders = pem_to_ders(b"-----BEGIN A-----" * 3500 + b"\n" + real)
        self.assertLess(time.process_time() - started, 0.25)     # before: about 1 s
        self.assertEqual(ders, [ssl.PEM_cert_to_DER_cert(real.decode())])
        key = (b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
               b"DEK-Info: AES-256-CBC,00FF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n")
        self.assertEqual([label for label, _ in PEM_BLOCK.findall(key)], [b"RSA PRIVATE KEY"])


class TestMistakes(CheckTestCase):

    def assertOneErrorLine(self, cacert, cert, key, url, *phrases):
        code, out, err = run_check(cacert, cert, key, url)
        self.assertEqual(code, 2, out + err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertTrue(err.startswith("error: ") and " -- " in err, err)
        for phrase in phrases:
            self.assertIn(phrase, err)

    def test_each_mistake_is_one_line(self):
        """Missing file, folder, no --cacert, --key alone, bad URL: one error line, exit 2."""
        missing = os.path.join(self.tmp, "nope.crt")
        self.assertOneErrorLine(path("ca.crt"), missing, path("client.key"), None,
                                "missing file", repr(missing), "--cert")
        self.assertOneErrorLine(self.tmp, None, None, None, "is a folder", "--cacert")
        self.assertOneErrorLine(None, path("client.crt"), path("client.key"), None, "--cacert")
        self.assertOneErrorLine(path("ca.crt"), None, path("client.key"), None, "--key needs --cert")
        self.assertOneErrorLine(path("ca.crt"), None, None, "http://localhost:3000/", "bad URL")

    def test_a_pipe_is_one_line_not_an_empty_file_or_a_hang(self):
        """A pipe, as <(cat ca.crt) gives, was read once and then reported "empty";
        a named pipe no one writes to hung --check: both are one line, exit 2."""
        with open(path("ca.crt"), "rb") as f:
            pem = f.read()
        read_end, write_end = os.pipe()
        os.write(write_end, pem)
        os.close(write_end)
        try:
            pipe = f"/dev/fd/{read_end}"
            self.assertOneErrorLine(pipe, None, None, None, "not a regular file", repr(pipe),
                                    "--cacert")
        finally:
            os.close(read_end)
        fifo = os.path.join(tempfile.mkdtemp(dir=self.tmp), "client.crt")
        os.mkfifo(fifo)
        done = support.run_script("mtls_demo.py", "--check", "--cacert", path("ca.crt"),
                                  "--cert", fifo, timeout=20)
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertIn(f"certificate {fifo!r} is not a regular file", done.stderr)

    def test_garbage_and_swapped_files_are_one_finding_each(self):
        """Garbage as the certificate, a key as the CA: one FAIL line each, no traceback."""
        garbage = os.path.join(self.tmp, "garbage.crt")
        with open(garbage, "wb") as f:
            f.write(b"\x00\xffnot a certificate\n")
        found = self.check(path("ca.crt"), garbage, path("client.key"), code=1)
        self.assertFinding(found, "parse garbage.crt", "FAIL", "not a certificate")
        self.assertEqual(self.output.count("\nFAIL "), 1, self.output)
        found = self.check(path("client.key"), path("client.csr"), None, code=1)
        self.assertFinding(found, "parse client.key", "FAIL", "holds a private key")
        self.assertFinding(found, "parse client.csr", "FAIL", "signing request (CSR)")


class TestServer(CheckTestCase):

    def test_url_reports_the_servers_chain_and_a_request(self):
        """With a URL: the chain the server sends, what it asks for, its name, and
        a real request through client.py that gets the greeting."""
        with support.RunningServer() as running:
            found = self.check(path("ca.crt"), path("other-client.crt"),
                               path("other-client.key"), running.url, code=0)
            accepted = running.log.wait_for(lambda l: l.startswith("accepted"))
        # The identity the check announces is the one server.py logs.
        self.assertIn(" as uri:spiffe://example.org/other-client", accepted or "")
        self.assertFinding(found, "identity", "ok", "as uri:spiffe://example.org/other-client (")
        self.assertFinding(found, "server sends", "ok", "2 certificates", "CN=localhost <- CN=my-ca")
        self.assertFinding(found, "server asks", "ok", "naming no CA")
        self.assertFinding(found, "hostname", "ok", "covers localhost")
        self.assertFinding(found, "server chain", "ok", "-purpose sslserver: OK")
        self.assertFinding(found, "request", "ok", "HTTP 200",
                           "Hello, spiffe://example.org/other-client")

    def test_url_without_a_client_certificate(self):
        """No --cert: the server is still described, and the request is refused as
        client.py classifies it (certificate required)."""
        with support.RunningServer() as running:
            found = self.check(path("ca.crt"), url=running.url, code=1)
        self.assertFinding(found, "server chain", "ok")
        self.assertFinding(found, "request", "FAIL", "certificate required")


    def test_nothing_listening_is_one_finding(self):
        """A URL where nothing listens: one FAIL line that says so, and no request."""
        with socket.socket() as sock:              # a port that was free a moment ago
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        found = self.check(path("ca.crt"), url=f"https://127.0.0.1:{port}/", code=1)
        self.assertFinding(found, "server", "FAIL", f"nothing listens on 127.0.0.1:{port}")
        self.assertNotIn("request", found)

    def test_cn_only_server_certificate_fails_hostname(self):
        """The article's server certificate names localhost in its CN only: the
        hostname check fails, as Python does with hostname_checks_common_name off."""
        with support.RunningServer(ca="article/ca.crt", cert="article/server.crt",
                                   key="article/server.key") as running:
            found = self.check(path("article/ca.crt"), url=running.url, code=1)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)    # not strict: only the name fails
            context.load_verify_locations(path("article/ca.crt"))
            context.hostname_checks_common_name = False
            with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
                with self.assertRaises(ssl.SSLCertVerificationError) as caught:
                    context.wrap_socket(sock, server_hostname="localhost")
        self.assertEqual(caught.exception.verify_code, 62)         # hostname mismatch
        self.assertFinding(found, "hostname", "FAIL", "(none)", "its CN matches",
                           "hostname_checks_common_name = False")
        self.assertFinding(found, "server chain", "FAIL", "error 92", "see CA")
        self.assertFinding(found, "server purpose", "warn", "every purpose")

    def test_ca_names_the_server_requests(self):
        """openssl s_server names the CAs it accepts (Python cannot): a client
        certificate from another CA is a FAIL that names the right one."""
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "2", "-www",
             "-cert", path("server.crt"), "-key", path("server.key"), "-Verify", "1",
             "-CAfile", path("ca.crt")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        try:
            for _ in range(10):
                line = server.stdout.readline()
                if not line or line.startswith("ACCEPT"):
                    break
            self.assertTrue(line.startswith("ACCEPT"), line)
            url = f"https://localhost:{line.rsplit(':', 1)[1].strip()}/"
            found = self.check(path("rogue-ca.crt"), path("rogue-client.crt"),
                               path("rogue-client.key"), url, code=1)
        finally:
            server.kill()
            server.wait(5)
            server.stdout.close()
        self.assertFinding(found, "server asks", "FAIL", "from: CN=my-ca",
                           "yours was issued by CN=rogue-ca")
        self.assertFinding(found, "server chain", "FAIL", "error 19", "a root CA that rogue-ca.crt")


class TestCommandLine(unittest.TestCase):

    def test_check_from_the_command_line(self):
        """python3 mtls_demo.py --check ... runs the checks; a URL without --check is refused."""
        done = support.run_script("mtls_demo.py", "--check", "--cacert", path("ca.crt"),
                                  "--cert", path("expired-client.crt"), "--key", path("client.key"))
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("FAIL dates client:", done.stdout)
        done = support.run_script("mtls_demo.py", "https://localhost:3000/")
        self.assertEqual(done.returncode, 2)
        self.assertIn("is a URL, which only --check takes", done.stderr)


if __name__ == "__main__":
    unittest.main()
