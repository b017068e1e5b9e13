"""demo/scenarios.py: what the demo shows, as data.

SCENARIOS    each case of the failure gallery: one client request against
             one server configuration, what client.py and server.py say,
             why, and what the same client meets under TLS 1.2
FIX_COMMANDS the command a case's why: ends with
ARTICLE_CASES, DEMOS, STRICT_CHECKS, SCENARIO_BY_NAME
LESSON       the classroom path: six cases in teaching order, each with
             its setup, the question for the class, and what you just saw

Reads and writes nothing; mtls_demo.py runs these, README.md's failure
gallery table is made from them (mtls_demo.py --markdown).
"""

import ssl
from collections import namedtuple


# --- the scenarios -------------------------------------------------------
#
# A scenario is one client request against one server configuration.
# {certs} in an argument stands for the certificates folder, {url} for the
# server's address. `expect` is the client's outcome: "ok" (it printed the
# greeting), "HTTP 403 Forbidden", or the label client.py prints after
# "error:". `server_says` is a phrase of the server's log line for the
# connection. `does`, `cause` and `fix` are the short cells of the Markdown
# table. `tls12` is what the same client meets when limited to TLS 1.2:
# (who sends the fatal alert, its name, curl's exit code), measured with
# OpenSSL 3.0 and curl 7.88. `strict`: the case relies on OpenSSL 3.0's
# strict RFC 5280 checks (a CA without keyUsage), so it is skipped on older ones.

Scenario = namedtuple("Scenario", "name title server client expect server_says why "
                      "curl does cause fix tls12 strict",
                      defaults=(None, "", "", "", None, False))

OK_CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/client.crt", "--key", "{certs}/client.key"]
DEFAULT_SERVER = ()

SCENARIOS = [
    Scenario(
        "success", "Both sides show a certificate signed by my-ca",
        DEFAULT_SERVER, OK_CLIENT + ["{url}"], "ok", "accepted",
        "The client checked that the server's certificate is signed by my-ca and names "
        "localhost; the server checked that the client's is signed by my-ca too. Each side "
        "proved it holds its private key by signing the handshake, so the server knows "
        "it is talking to my-client.",
        curl=["--cacert", "{certs}/ca.crt", "--key", "{certs}/client.key",
              "--cert", "{certs}/client.crt", "{url}"],
        does="sends its certificate, trusts my-ca", cause="both certificates check out",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "no-cacert", "The client does not trust the server's CA (no --cacert)",
        DEFAULT_SERVER, ["--cert", "{certs}/client.crt", "--key", "{certs}/client.key", "{url}"],
        "server not trusted", "client does not trust our certificate",
        "Without --cacert the client trusts only the system's CAs, and my-ca is not one "
        "of them, so it refuses the server's certificate and aborts before sending anything. "
        "The fix is on the client: trust the CA that signed the server (--cacert certs/ca.crt).",
        curl=["--key", "{certs}/client.key", "--cert", "{certs}/client.crt", "{url}"],
        does="leaves out `--cacert`", cause="the client does not trust my-ca",
        fix="`--cacert certs/ca.crt`", tls12=("client", "unknown_ca", 60)),
    Scenario(
        "no-client-cert", "The client sends no certificate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "{url}"],
        "certificate required", "no client certificate",
        "The server asked for a certificate (CertificateRequest) and got an empty one, so it "
        "ended the connection with the alert certificate_required. Under TLS 1.3 the client "
        "has already finished its half of the handshake by then, so it learns this only "
        "when it reads the response: that is why curl reports it from SSL_read.",
        curl=["--cacert", "{certs}/ca.crt", "{url}"],
        does="leaves out `--cert` and `--key`", cause="the server requires a client certificate",
        fix="`--cert certs/client.crt --key certs/client.key`",
        tls12=("server", "handshake_failure", 35)),
    Scenario(
        "other-ca", "A client certificate from another CA, claiming to be my-client",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/rogue-client.crt",
                         "--key", "{certs}/rogue-client.key", "{url}"],
        "unknown CA", "signed by an unknown CA",
        "Anyone can make a CA and write CN=my-client into a certificate. The server trusts "
        "only signatures by my-ca (--ca), cannot build a chain to it, and answers with the "
        "alert unknown_ca. The name inside a certificate is worth exactly as much as its issuer.",
        does="shows a certificate from rogue-ca", cause="not signed by the server's CA",
        fix="a certificate signed by my-ca", tls12=("server", "unknown_ca", 35)),
    Scenario(
        "expired-client", "The client's certificate expired in 2020",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/expired-client.crt",
                         "--key", "{certs}/client.key", "{url}"],
        "certificate expired", "has expired",
        "Every certificate carries notBefore/notAfter dates, checked against the server's "
        "clock: same key and name, but past dates, so the server sends certificate_expired. "
        "The fix is a new certificate for the same key: sign its request again (or use "
        "certs/client.crt, the valid one make certs made):",
        does="shows a certificate that expired", cause="its notAfter date has passed",
        fix="a new certificate for the same key", tls12=("server", "certificate_expired", 60)),
    Scenario(
        "expired-server", "The server's certificate expired in 2020",
        ["--cert", "{certs}/expired-server.crt"], OK_CLIENT + ["{url}"],
        "server certificate expired", "client says a certificate in our chain has expired",
        "The client checks the same dates on the server's certificate and refuses it. This "
        "is the most common outage in real mTLS deployments: renew before notAfter, and "
        "reload the server (kill -HUP) so it serves the new certificate.",
        does="connects to a server whose certificate expired", cause="the server's notAfter has passed",
        fix="renew it, then `kill -HUP` the server", tls12=("client", "certificate_expired", 60)),
    Scenario(
        "wrong-hostname", "The server's certificate is for www.example.com",
        ["--cert", "{certs}/elsewhere-server.crt"], OK_CLIENT + ["{url}"],
        "hostname mismatch", "client refused our certificate",
        "A valid certificate proves nothing unless it names the host you asked for. The client "
        "compares 'localhost' with the subjectAltName (www.example.com only) and hangs up. "
        "When a SAN is present the CN is ignored: put every name in the SAN.",
        does="connects to a server certified for www.example.com",
        cause="the SAN does not name localhost", fix="list every host name in the SAN",
        tls12=("client", "bad_certificate", 60)),
    Scenario(
        "ip-address", "https://127.0.0.1 works: the SAN lists IP:127.0.0.1",
        DEFAULT_SERVER, OK_CLIENT + ["{ipurl}"], "ok", "accepted",
        "An IP address is matched against the SAN's IP entries, never against DNS names or "
        "the CN. Our server certificate lists IP:127.0.0.1 and IP:::1 beside DNS:localhost, "
        "so https://127.0.0.1 passes the hostname check as localhost does (and https://[::1] "
        "would, with a server listening there: --host ::1).",
        does="connects to https://127.0.0.1", cause="the SAN lists IP:127.0.0.1",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "revoked-no-crl", "A revoked client certificate, but the server has no CRL",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/revoked-client.crt",
                         "--key", "{certs}/revoked-client.key", "{url}"],
        "ok", "accepted",
        "The CA revoked this certificate, but revocation lives in a separate list (the CRL) "
        "that the server must load and consult. Without --crl the signature and dates are "
        "fine, so it gets in: the classic mistake. The next case fixes it.",
        does="shows a revoked certificate; the server has no `--crl`",
        cause="the server never checks revocation", fix="start the server with `--crl certs/ca.crl`",
        tls12=(None, None, 0)),
    Scenario(
        "revoked", "The same revoked certificate, server started with --crl",
        ["--crl", "{certs}/ca.crl"], ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/revoked-client.crt",
                                    "--key", "{certs}/revoked-client.key", "{url}"],
        "certificate revoked", "has been revoked",
        "With --crl the server loads the CRL and sets VERIFY_CRL_CHECK_LEAF, so OpenSSL looks "
        "the client's serial number up and finds it revoked. A CRL goes stale (nextUpdate): "
        "regenerate it and reload the server (kill -HUP) to make new revocations count.",
        does="shows a revoked certificate; the server has `--crl`",
        cause="its serial number is in the CRL", fix="a new key and certificate",
        tls12=("server", "certificate_revoked", 35)),
    Scenario(
        "wrong-purpose", "The server's own certificate presented as a client certificate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/server.crt",
                         "--key", "{certs}/server.key", "{url}"],
        "wrong purpose", "wrong purpose",
        "The certificate is signed by my-ca and the key matches, but its extendedKeyUsage "
        "says serverAuth only. The server wants clientAuth: it logs 'wrong purpose' and sends the "
        "alert unsupported_certificate (openssl verify -purpose sslclient says 'unsuitable "
        "certificate purpose'). Issue separate certificates for each role.",
        does="shows the server's certificate as its own", cause="its EKU is serverAuth only",
        fix="a certificate with clientAuth", tls12=("server", "unsupported_certificate", 35)),
    Scenario(
        "article-server-strict", "The walkthrough's exact certificates on both sides, checked strictly",
        ["--ca", "{certs}/article/ca.crt", "--cert", "{certs}/article/server.crt",
         "--key", "{certs}/article/server.key"],
        ["--cacert", "{certs}/article/ca.crt", "--cert", "{certs}/article/client.crt",
         "--key", "{certs}/article/client.key", "{url}"],
        "server certificate invalid", "client refused our certificate",
        "The walkthrough's CA has basicConstraints but no keyUsage. Strict X.509 checking "
        "(VERIFY_X509_STRICT, which client.py and server.py set on every Python, and which "
        "ssl.create_default_context(), so urllib, sets since Python 3.13) wants keyCertSign "
        "in every CA's keyUsage, so client.py refuses the server. The walkthrough's leaves being "
        "X.509 v1 is not the cause: a v1 leaf signed by our CA passes. curl is not strict: it "
        "accepts this server, and then server.py refuses curl's walkthrough certificate.",
        curl=["--cacert", "{certs}/article/ca.crt", "--key", "{certs}/article/client.key",
              "--cert", "{certs}/article/client.crt", "{url}"],
        does="uses the article's certificates on both sides", cause="the article's CA lacks keyUsage",
        fix="a CA with keyUsage keyCertSign (`make certs`)", tls12=("client", "certificate_unknown", 35),
        strict=True),
    Scenario(
        "article-client-strict", "The walkthrough's client certificate, at a strict server",
        ["--ca", "{certs}/article/ca.crt"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/article/client.crt",
         "--key", "{certs}/article/client.key", "{url}"],
        "certificate rejected", "client certificate fails verification",
        "Now the server checks the walkthrough's client certificate strictly and refuses it: a "
        "strict verifier wants every CA to carry keyUsage with keyCertSign, and the walkthrough's "
        "CA has only basicConstraints. Our openssl.cnf adds it, which is why 'success' passes.",
        does="shows the article's client certificate", cause="its CA lacks keyUsage",
        fix="a CA with keyUsage keyCertSign (`make certs`)", tls12=("server", "certificate_unknown", 35),
        strict=True),
    Scenario(
        "not-authorized", "A valid client that is not on the allow-list (--allow cn:my-client)",
        ["--allow", "cn:my-client"], ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/other-client.crt",
                                   "--key", "{certs}/other-client.key", "{url}"],
        "HTTP 403 Forbidden", "forbidden",
        "TLS authenticated the client: its certificate is valid, and its identity is "
        "uri:spiffe://example.org/other-client. Authorization is a separate, later decision: "
        "this server lets in only cn:my-client (--allow), so it answers 403 over the working "
        "connection, and closes it.",
        does="shows a valid certificate that is not on `--allow`",
        cause="authenticated, but not authorized", fix="add its identity to `--allow`",
        tls12=(None, None, 0)),
    Scenario(
        "spiffe-identity", "The same client, allowed by its URI identity",
        ["--allow", "uri:spiffe://example.org/other-client"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/other-client.crt",
         "--key", "{certs}/other-client.key", "{url}"],
        "ok", "accepted",
        "A client's identities are its subjectAltName entries, each with its type (a URI "
        "here, as SPIFFE service meshes use), and its CN only when it has no SAN. --allow "
        "takes them in the spelling the log prints: uri:spiffe://example.org/other-client.",
        does="is allowed by its URI identity", cause="`--allow` names its URI SAN",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "chain-leaf-only", "A server signed by an intermediate CA sends only its leaf",
        ["--cert", "{certs}/int-server.crt"], OK_CLIENT + ["{url}"],
        "server not trusted", "client does not trust our certificate",
        "The client trusts the root (my-ca), but the server's certificate was signed by "
        "my-intermediate-ca, which the client has never seen. Without the intermediate the "
        "chain has a gap, so verification fails exactly as if the CA were unknown.",
        does="connects to a server that sends its leaf alone", cause="the client cannot reach my-ca",
        fix="serve the chain file (leaf + intermediate)", tls12=("client", "unknown_ca", 60)),
    Scenario(
        "chain-full", "Both sides send leaf + intermediate",
        ["--cert", "{certs}/int-server-chain.pem"],
        ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/int-client-chain.pem",
         "--key", "{certs}/client.key", "{url}"],
        "ok", "accepted",
        "A chain file holds the leaf followed by the intermediate. Each side sends it, and "
        "the peer links leaf -> intermediate -> root it trusts. Only the root need be "
        "configured as trusted (--ca, --cacert).",
        does="sends leaf + intermediate, as does the server", cause="each side completes the chain",
        fix="-", tls12=(None, None, 0)),
    Scenario(
        "client-chain-leaf-only", "The client sends its leaf without the intermediate",
        DEFAULT_SERVER, ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/int-client.crt",
                         "--key", "{certs}/client.key", "{url}"],
        "unknown CA", "signed by an unknown CA",
        "The same gap, the other way round: the server cannot link the client's leaf to "
        "my-ca without the intermediate, and answers unknown_ca. Send the chain file.",
        does="sends its leaf without the intermediate", cause="the server cannot reach my-ca",
        fix="`--cert` the chain file", tls12=("server", "unknown_ca", 35)),
]

SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}

# A command that a case's why: ends with, printed on its own line so that it
# pastes. {certs} stands for the certificates folder, {cnf} for openssl.cnf.
FIX_COMMANDS = {
    "expired-client": ["openssl", "x509", "-req", "-in", "{certs}/client.csr",
                       "-CA", "{certs}/ca.crt", "-CAkey", "{certs}/ca.key", "-days", "365",
                       "-extfile", "{cnf}", "-extensions", "client",
                       "-out", "{certs}/renewed-client.crt"],
}

# The three basic cases of the walkthrough this project follows, run when no
# name is given.
ARTICLE_CASES = ["success", "no-cacert", "no-client-cert"]

# Demonstrations that are not a request against a server configuration.
DEMOS = {"cleartext-cert": "TLS 1.2 sends the client's certificate unencrypted; TLS 1.3 does not"}

# OpenSSL 3.0 refuses a CA without keyUsage under strict checks; 1.1.1 does not.
STRICT_CHECKS = ssl.OPENSSL_VERSION_INFO >= (3, 0)


# --- the lesson ----------------------------------------------------------
#
# Six cases in teaching order. Each opens with a one-line heading and ends
# with a few lines of "what you just saw" (each under 82 characters, so
# each fits 100 columns with its label).

# `setup` and `ask` come before the case runs (with --pause, the class
# answers before Enter is pressed), `saw` after it.
Lesson = namedtuple("Lesson", "name heading setup ask saw")

LESSON = [
    Lesson("success", "mutual TLS working: each side proves who it is",
           "each side has a certificate signed by my-ca, and trusts my-ca.",
           "will the request work, and what does the server learn about the client?",
           ("Both sides showed a certificate signed by my-ca and proved they hold its key.",
            "The server knows the client is my-client; the client knows it reached localhost.")),
    Lesson("no-cacert", "the client does not trust the server's CA",
           "the client leaves out --cacert, so it trusts only the system's CAs.",
           "who refuses whom, and before or after the request is sent?",
           ("The client checks the server first: without --cacert it trusts only system CAs.",
            "It hung up in the handshake; the server logs that the client did not trust it.")),
    Lesson("no-client-cert", "the client shows no certificate",
           "the client has no certificate (no --cert, no --key).",
           "what will each side say, and when does the client find out?",
           ("The server asked (CertificateRequest), got none, and sent certificate_required.",
            "Under TLS 1.3 the client had finished its handshake: it hears at its first read.")),
    Lesson("other-ca", "a certificate from another CA, claiming to be my-client",
           "the client shows a certificate that says CN=my-client, signed by rogue-ca.",
           "does the name my-client get it in?",
           ("Anyone can write CN=my-client into a certificate: the signature is what counts.",
            "The server could not chain it to my-ca, the only CA it trusts: alert unknown_ca.",
            "The alert does not say why; the server's log does.")),
    Lesson("expired-client", "the client's certificate has expired",
           "the client's certificate has its usual key, name and CA, but expired in 2020.",
           "which side notices, and does the client learn why?",
           ("Same key, name and CA: only the dates are wrong, and the server checks them.",
            "The alert does not say why; the server's log does.",
            "The fix: sign its request again, for the same key (or use certs/client.crt):")),
    Lesson("not-authorized", "a valid client that this server does not allow",
           "a client with a valid certificate from my-ca; the server allows only cn:my-client.",
           "does the handshake work? what does the client get?",
           ("TLS worked: the server knows exactly who the client is (authentication).",
            "It is not on --allow, so the server answers 403 (authorization).",
            "The server names a client by its subjectAltName when it has one (here its URI),",
            "and by its CN (CN=other-client in make inspect ALL=1) only when it has none.")),
]


# Who holds which file is the README's section 2; the lesson only points there.
LESSON_INTRO = (
    "Six cases, each a real request to a real server.py, which demands a client certificate "
    "signed by my-ca ({certs}/ca.crt). Who holds which file: README, section 2.")
