"""The facts the README teaches about X.509 extensions and strict checking, run.

Each test makes a CA and a leaf that differ from openssl.cnf's in one
extension, and verifies the leaf the way Python does with
VERIFY_X509_STRICT, in a real TLS handshake held in memory (two MemoryBIO
pairs, no network). So the README's extensions table says what each
extension is really required for: every row is one of these outcomes.

What Python itself sets: on 3.13, ssl.create_default_context() (and so
urllib's default) turns on VERIFY_X509_STRICT and VERIFY_X509_PARTIAL_CHAIN;
a plain ssl.SSLContext does not, on any version.
"""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

from tests.support import cert_config

# The shared config (tests.support) gives [client], a client-only leaf; this
# module adds a CA with no authorityKeyIdentifier (plain_ca) and the variants
# that each leave one extension out or weaken it.
EXTENSIONS = cert_config("""\
[plain_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ca_without_key_usage]
basicConstraints = critical, CA:TRUE
subjectKeyIdentifier = hash
[ca_without_skid]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = none
[ca_basic_constraints_not_critical]
basicConstraints = CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_without_akid]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = none
[leaf_without_eku]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
""")

FOLDER = None


def openssl(*args):
    subprocess.run(["openssl"] + list(args), cwd=FOLDER, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=30)


def make_ca(section):
    """A self-signed CA with the extensions of `section`; returns its name."""
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", section + ".key")
    openssl("req", "-new", "-x509", "-key", section + ".key", "-subj", "/CN=" + section,
            "-config", "ext.cnf", "-extensions", section, "-days", "2", "-out", section + ".crt")
    return section


def make_leaf(ca, section=None, name=None):
    """A leaf for the key leaf.key, signed by `ca`, with the extensions of
    `section`, or none at all (an X.509 v1 certificate, as in the article)."""
    name = name or f"{section or 'v1'}-under-{ca}"
    extensions = ["-extfile", "ext.cnf", "-extensions", section] if section else []
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-set_serial", str(abs(hash(name)) % 10**9), "-days", "1", *extensions, "-out", name + ".crt")
    return name


def setUpModule():
    global FOLDER
    if ssl.OPENSSL_VERSION_INFO < (3, 0):
        raise unittest.SkipTest(f"the strict RFC 5280 checks need OpenSSL 3.0+; Python links "
                                f"{ssl.OPENSSL_VERSION}")
    FOLDER = tempfile.mkdtemp(prefix="mtls-facts-")
    with open(os.path.join(FOLDER, "ext.cnf"), "w") as f:
        f.write(EXTENSIONS)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "leaf.key")
    openssl("req", "-new", "-key", "leaf.key", "-subj", "/CN=localhost", "-config", "ext.cnf",
            "-out", "leaf.csr")
    for section in ("plain_ca", "ca_without_key_usage", "ca_without_skid",
                    "ca_basic_constraints_not_critical"):
        make_ca(section)


def tearDownModule():
    shutil.rmtree(FOLDER, ignore_errors=True)


def verify(ca, leaf, strict=True, purpose=ssl.Purpose.SERVER_AUTH):
    """Present `leaf` in a real handshake, as the server's certificate
    (SERVER_AUTH) or the client's (CLIENT_AUTH), and verify it against `ca`
    on the other side; return "OK" or OpenSSL's verify message."""
    def file(name):
        return os.path.join(FOLDER, name)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    if purpose is ssl.Purpose.SERVER_AUTH:      # the client verifies the server's leaf
        server.load_cert_chain(file(leaf + ".crt"), file("leaf.key"))
        verifier = client
    else:                                       # the server verifies the client's leaf
        server.load_cert_chain(file(make_leaf("plain_ca", "leaf", "good-server") + ".crt"), file("leaf.key"))
        client.load_cert_chain(file(leaf + ".crt"), file("leaf.key"))
        client.load_verify_locations(file("plain_ca.crt"))
        server.verify_mode = ssl.CERT_REQUIRED
        verifier = server
    verifier.load_verify_locations(file(ca + ".crt"))
    if strict:
        verifier.verify_flags |= ssl.VERIFY_X509_STRICT
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    sides = [client.wrap_bio(c_in, c_out), server.wrap_bio(s_in, s_out, server_side=True)]
    done = [False, False]
    for _ in range(10):
        for i, side in enumerate(sides):
            try:
                side.do_handshake()
                done[i] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                return exc.verify_message
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done):
            break
    # TLS 1.3: the server judges the client's certificate on its last read.
    try:
        sides[1].read(1)
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message
    return "OK" if all(done) else "handshake did not finish"


class ExtensionFactsTest(unittest.TestCase):
    """What each extension of openssl.cnf is required for, under strict checking."""

    def test_our_profile_passes(self):
        self.assertEqual(verify("plain_ca", make_leaf("plain_ca", "leaf")), "OK")

    def test_a_v1_leaf_under_a_good_ca_passes_strict_verification(self):
        """So the article's v1 leaves are not why strict checking fails (its CA is)."""
        self.assertEqual(verify("plain_ca", make_leaf("plain_ca")), "OK")

    def test_a_ca_without_key_usage_fails_strict_verification_only(self):
        leaf = make_leaf("ca_without_key_usage")
        self.assertEqual(verify("ca_without_key_usage", leaf), "CA cert does not include key usage extension")
        self.assertEqual(verify("ca_without_key_usage", leaf, strict=False), "OK")

    def test_a_ca_without_subject_key_identifier_fails_strict_verification(self):
        self.assertEqual(verify("ca_without_skid", make_leaf("ca_without_skid")),
                         "Missing Subject Key Identifier")

    def test_a_ca_whose_basic_constraints_are_not_critical_fails_strict_verification(self):
        self.assertEqual(verify("ca_basic_constraints_not_critical", make_leaf("ca_basic_constraints_not_critical")),
                         "Basic Constraints of CA cert not marked critical")

    def test_a_v3_leaf_without_authority_key_identifier_fails_strict_verification_only(self):
        leaf = make_leaf("plain_ca", "leaf_without_akid")
        self.assertEqual(verify("plain_ca", leaf), "Missing Authority Key Identifier")
        self.assertEqual(verify("plain_ca", leaf, purpose=ssl.Purpose.CLIENT_AUTH),
                         "Missing Authority Key Identifier")
        self.assertEqual(verify("plain_ca", leaf, strict=False), "OK")

    def test_a_leaf_without_extended_key_usage_is_valid_for_every_purpose(self):
        """No EKU means no limit: the same certificate passes as a server and as a client."""
        leaf = make_leaf("plain_ca", "leaf_without_eku")
        self.assertEqual(verify("plain_ca", leaf, purpose=ssl.Purpose.SERVER_AUTH), "OK")
        self.assertEqual(verify("plain_ca", leaf, purpose=ssl.Purpose.CLIENT_AUTH), "OK")

    def test_a_client_only_eku_is_refused_as_a_server(self):
        leaf = make_leaf("plain_ca", "client")
        self.assertEqual(verify("plain_ca", leaf, purpose=ssl.Purpose.SERVER_AUTH), "unsuitable certificate purpose")
        self.assertEqual(verify("plain_ca", leaf, purpose=ssl.Purpose.CLIENT_AUTH), "OK")


class PythonDefaultsTest(unittest.TestCase):
    """Which contexts verify strictly by default: create_default_context() on 3.13+, only."""

    def test_default_context_flags(self):
        default = ssl.create_default_context().verify_flags
        plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).verify_flags
        strict_by_default = sys.version_info >= (3, 13)
        self.assertEqual(bool(default & ssl.VERIFY_X509_STRICT), strict_by_default)
        if strict_by_default:
            self.assertTrue(default & ssl.VERIFY_X509_PARTIAL_CHAIN)
        self.assertFalse(plain & ssl.VERIFY_X509_STRICT)


if __name__ == "__main__":
    unittest.main()
