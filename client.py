#!/usr/bin/env python3
"""client.py: an HTTPS client that presents a certificate (mutual TLS).

In a TLS handshake the server shows its certificate and we check it: signed
by a certificate authority (CA) we trust, for the host we asked for. In
mutual TLS the server asks for our certificate too (a CertificateRequest).
curl's option names; the walkthrough's curl command, in Python:

    python3 client.py --cacert certs/ca.crt --cert certs/client.crt \\
                      --key certs/client.key https://localhost:3000/

Prints the response body. A failure is one line on stderr, "error: <label>:
<what happened, and why> -- <the fix>", and an exit code: 2 usage or files,
3 cannot connect, 4 server not trusted, 5 the server refused our
certificate (or its lack), 6 an HTTP error (e.g. 403), 7 other TLS failure.
"""

import sys

if sys.version_info < (3, 9):       # one line, not a traceback (3.5 and older: SyntaxError)
    sys.stderr.write("error: unsupported Python: client.py needs Python 3.9+ (this is %d.%d) "
                     "-- run it with python3.9 or newer\n" % sys.version_info[:2])
    sys.exit(2)

import http.client
import re
import ssl
import urllib.error
import urllib.request

try:
    from armour.client_errors import (  # noqa: F401  (all the exit codes: client.py's)
        EXIT_OK, EXIT_USAGE, EXIT_CONNECT, EXIT_SERVER_UNTRUSTED, EXIT_CLIENT_REJECTED, EXIT_HTTP,
        EXIT_TLS, Failure, checking_cacert, classify, clip, read_pem_text, refuse_passphrase, shown,
        check_url, describe_plain_http, checking_identity, open_client_keylog, warn_if_key_exposed)
    from armour.command_line import ArgumentParser, seconds
    from armour.refusals import for_terminal
except ModuleNotFoundError:         # client.py copied without its folder armour/
    sys.stderr.write("error: missing file: client.py needs its folder armour/ beside it "
                     "-- copy armour/ too\n")
    sys.exit(2)


# --- the TLS context: whom we trust, and what we present -----------------

def make_client_context(cacert=None, cert=None, key=None, keylog=None):
    """Build the TLS settings of an mTLS client: which CA may vouch for the
    server, and (optionally) our own certificate and key."""
    # PROTOCOL_TLS_CLIENT turns on both checks a client must make:
    # verify_mode = CERT_REQUIRED (the server's certificate must chain to a
    # CA we trust) and check_hostname (it must name the host in the URL).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT   # strict X.509, as 3.13's default context
    # The host must be in the subjectAltName; the CN is never consulted (RFC 6125 6.4.4).
    context.hostname_checks_common_name = False
    if cacert:                                       # whom we trust: our CA...
        with checking_cacert(context, cacert):       # (text we read: a pipe works too)
            context.load_verify_locations(cadata=read_pem_text(cacert, "CA certificate",
                                                               "--cacert", "CERTIFICATE"))
    else:
        context.load_default_certs()                 # ...or the system's CAs, as curl does
    chain = ""
    if cert:
        # Sent only if the server asks (CertificateRequest); the key signs the
        # handshake transcript (CertificateVerify) to prove we hold it.
        with checking_identity(cert, key) as files:  # (a pipe works too; one line if not)
            # No passphrase prompt: a script must never stop to ask the terminal.
            context.load_cert_chain(files.cert, files.key,
                                    password=lambda: refuse_passphrase(key or cert, "client"))
        chain = files.chain
    if keylog:
        open_client_keylog(context, keylog)          # TLS secrets, for Wireshark: debug only
    context.mtls_sent = {"cacert": cacert, "cert": cert, "chain": chain}   # for error messages
    return context


# --- the request, and what failure looks like ----------------------------

def fetch(url, context, timeout=10.0):
    """GET `url` over TLS with `context`; return (status, body text), or
    raise a Failure that says why the connection or the handshake failed."""
    parts = check_url(url)
    if parts.scheme == "http":
        raise describe_plain_http(parts, context, timeout)
    # ProxyHandler({}): straight to the server, even if https_proxy is set.
    # RefuseRedirects: like curl without -L (a redirect could lead to http://).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), RefuseRedirects(),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:     # a real HTTP answer, e.g. 403
        with exc:
            return exc.code, exc.read().decode("utf-8", "replace")
    except urllib.error.URLError as exc:
        # urllib wraps what fails while connecting, shaking hands and sending:
        # e.g. our check of the server's certificate (a verify error).
        raise classify(exc.reason, parts, context, answered=False) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # Unwrapped: it failed while we waited for the answer, after the
        # handshake. TLS 1.3 reports a server's refusal of our certificate
        # here, at our first read: its alert arrives after our side finished.
        raise classify(exc, parts, context, answered=True) from None


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Return 3xx responses as they are, instead of following them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None          # urllib then reports the 3xx as an HTTPError


# --- main ----------------------------------------------------------------

def parse_args(argv):
    """Read the command line (curl's names for the same options)."""
    p = ArgumentParser(
        description="HTTPS client that presents a client certificate (mutual TLS).",
        epilog="example: python3 client.py --cacert certs/ca.crt --cert certs/client.crt "
               "--key certs/client.key https://localhost:3000/")
    p.add_argument("url", nargs="?", default="https://localhost:3000/",
                   help="https:// URL to GET (default https://localhost:3000/)")
    p.add_argument("--cacert", metavar="FILE", help="CA that signed the server's certificate")
    p.add_argument("--cert", metavar="FILE", help="our client certificate, or chain (PEM)")
    p.add_argument("--key", metavar="FILE", help="our private key (PEM; default: inside --cert)")
    p.add_argument("--keylog", metavar="FILE", help="write TLS secrets for Wireshark (debug only)")
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="S",
                   help="seconds to wait for each step: connect, handshake, response (default 10)")
    args = p.parse_args(argv)
    if args.key and not args.cert:
        p.error("--key needs --cert (a key alone proves nothing): pass both, e.g. "
                "--cert certs/client.crt --key certs/client.key")
    return args


def http_error(status, body):
    """The one line for an HTTP answer that is not a success."""
    label = f"HTTP {status} {http.client.responses.get(status, '')}".rstrip()
    title = re.search(r"<title>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
    said = shown(clip((title.group(1) if title else body).strip(), 200))   # an HTML page: its title
    answer = f'the server answered "{said}"' if said else "the server answered with no text"
    if 300 <= status < 400:
        fix = "a redirect, which client.py does not follow (like curl without -L)"
    elif status == 403:
        fix = "ask the server's operator to allow our identity (server.py --allow)"
    elif status == 404:
        fix = "check the path in the URL"
    elif "No required SSL certificate" in said:     # nginx checks client certificates itself
        fix = ("pass --cert and --key, with a certificate the proxy's CA signed (make "
               "proxy logs why only with NGINX_LOG=info)")
    elif "SSL certificate error" in said:           # ...and refused ours
        fix = ("the proxy refused our certificate: revoked, expired, or not from a CA it "
               "trusts (python3 mtls_demo.py --check says which; make proxy logs why with "
               "NGINX_LOG=info)")
    else:
        fix = "see the server's log"
    return f"error: {label}: {answer} -- {fix}"


def main(argv=None):
    """Make one request; print the body, or one line saying what went wrong."""
    # Never crash on a character the terminal cannot show: escape it.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = parse_args(argv)
    try:
        context = make_client_context(args.cacert, args.cert, args.key, args.keylog)
        # A key others can read lets them be us. ssh refuses such a key, curl
        # says nothing; we say so, on stderr, and go on (server.py does the same).
        exposed = warn_if_key_exposed(args.key or args.cert) if args.cert else None
        if exposed:
            print(for_terminal(exposed), file=sys.stderr)
        status, body = fetch(args.url, context, args.timeout)
    except Failure as failure:
        print(for_terminal(f"error: {failure.label}: {failure.message}"), file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        print("error: interrupted: stopped by Ctrl-C -- run it again to retry", file=sys.stderr)
        return 130                                # the shell's code for SIGINT
    if not 200 <= status < 300:                   # 3xx too: we do not follow redirects
        print(for_terminal(http_error(status, body)), file=sys.stderr)
        return EXIT_HTTP
    sys.stdout.write(body)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
