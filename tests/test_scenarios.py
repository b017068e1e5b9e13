"""The failure gallery: every scenario of mtls_demo.py, classified on both sides.

For each scenario the test starts server.py's server in-process with the
scenario's options, makes the request with client.py's functions, and
checks two things: how the client classified the outcome, and what the
server logged. The demo itself is run end to end once, with --all.
"""

import http.client
import os
import re
import shutil
import ssl
import subprocess
import unittest

from tests.support import RunningServer, pki, run_script

import client
from demo import cases, commands, scenarios
import server


def start_server(scenario):
    """The scenario's server, in-process, with the options the demo gives server.py."""
    args = server.parse_args(["--port", "0"] + cases.server_command(scenario, pki()))
    return RunningServer(ca=args.ca, cert=args.cert, key=args.key, crl=args.crl, allow=args.allow)


def run_scenario(scenario, with_message=False):
    """Run one scenario in-process; return (client outcome, server log lines),
    and with_message, the error line client.py would print (or None).

    The outcome is what the demo's table calls it: "ok", "HTTP 403 Forbidden",
    or the label client.py prints after "error:"."""
    message = None
    with start_server(scenario) as srv:
        client_args = client.parse_args(commands.fill(scenario.client, pki(), srv.port))
        context = client.make_client_context(client_args.cacert, client_args.cert, client_args.key)
        try:
            status, body = client.fetch(client_args.url, context)
            outcome = "ok" if status == 200 else f"HTTP {status} {http.client.responses[status]}"
            if status != 200:
                message = client.http_error(status, body)
        except client.Failure as failure:
            outcome = failure.label
            message = f"error: {failure.label}: {failure.message}"
        srv.log.wait_for(lambda line: scenario.server_says in line or line.startswith(("rejected", "forbidden")))
        lines = list(srv.log.lines)
    return (outcome, lines, message) if with_message else (outcome, lines)


class ScenarioTest(unittest.TestCase):
    """One test per scenario, generated below from demo/scenarios.py's SCENARIOS."""


def make_test(scenario):
    def test(self):
        if scenario.strict and not scenarios.STRICT_CHECKS:
            self.skipTest(f"needs the strict RFC 5280 checks of OpenSSL 3.0+ (this Python "
                          f"uses {ssl.OPENSSL_VERSION})")
        outcome, lines = run_scenario(scenario)
        self.assertEqual(outcome, scenario.expect, f"client side; server said {lines}")
        self.assertTrue(any(scenario.server_says in line for line in lines),
                        f"server side: no line with {scenario.server_says!r} in {lines}")
    test.__doc__ = f"{scenario.name}: {scenario.title} -> {scenario.expect}"
    return test


for _scenario in scenarios.SCENARIOS:
    setattr(ScenarioTest, "test_" + _scenario.name.replace("-", "_"), make_test(_scenario))


class ScenarioStabilityTest(unittest.TestCase):
    """TLS 1.3 rejections surface after the handshake: they must classify the same every time."""

    def test_post_handshake_rejections_are_stable_over_20_runs(self):
        by_name = {s.name: s for s in scenarios.SCENARIOS}
        for name in ["other-ca", "expired-client", "revoked", "wrong-purpose", "client-chain-leaf-only"]:
            scenario = by_name[name]
            with start_server(scenario) as srv:
                args = client.parse_args(commands.fill(scenario.client, pki(), srv.port))
                context = client.make_client_context(args.cacert, args.cert, args.key)
                for attempt in range(20):
                    with self.assertRaises(client.Failure) as caught:
                        client.fetch(args.url, context)
                    self.assertEqual(caught.exception.label, scenario.expect, f"{name} attempt {attempt}")


class ArticleCertificatesTest(unittest.TestCase):
    """make article-certs runs the article's commands: v1 leaves that strict checks refuse."""

    def openssl(self, *args):
        return subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)

    def test_article_leaves_are_version_1(self):
        text = self.openssl("x509", "-in", os.path.join(pki(), "article", "client.crt"), "-noout", "-text").stdout
        self.assertIn("Version: 1 (0x0)", text)
        self.assertNotIn("X509v3 extensions", text)

    @unittest.skipUnless(scenarios.STRICT_CHECKS, "needs OpenSSL 3.0+ for strict RFC 5280 checks")
    def test_strict_verification_refuses_the_article_ca_and_accepts_ours(self):
        article = os.path.join(pki(), "article")
        refused = self.openssl("verify", "-x509_strict", "-CAfile", os.path.join(article, "ca.crt"),
                               os.path.join(article, "server.crt"))
        self.assertNotEqual(refused.returncode, 0)
        self.assertRegex(refused.stdout + refused.stderr, r"(?i)key usage|authority key identifier")
        ours = self.openssl("verify", "-x509_strict", "-CAfile", os.path.join(pki(), "ca.crt"),
                            os.path.join(pki(), "server.crt"))
        self.assertEqual(ours.returncode, 0, ours.stderr)


class DemoAllTest(unittest.TestCase):
    """python3 mtls_demo.py --all: every scenario with expected = observed, exit 0."""

    def test_demo_all(self):
        done = run_script("mtls_demo.py", "--all", "--certs", pki(), timeout=180)
        self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr)
        count = len(scenarios.SCENARIOS)
        self.assertIn(f"{count} of {count} cases behaved as expected", done.stdout)
        self.assertEqual(len(re.findall(r"\| yes$", done.stdout, re.M)), count)

    def test_list_and_unknown_names(self):
        listed = run_script("mtls_demo.py", "--list")
        self.assertEqual(listed.returncode, 0)
        names = [line.split()[0] for line in listed.stdout.splitlines()]
        for scenario in scenarios.SCENARIOS:
            self.assertEqual(names.count(scenario.name), 1, scenario.name)
        wrong = run_script("mtls_demo.py", "no-such-case")
        self.assertEqual(wrong.returncode, 2)
        self.assertRegex(wrong.stderr, r"^error: unknown name: 'no-such-case' is not a scenario")
        self.assertNotIn("Traceback", wrong.stderr)


if __name__ == "__main__":
    unittest.main()
