"""Stage 2: stage 1's server, plus who the client is and whether it may come in.

Stage 1 lets in any client whose certificate our CA signed. That is
authentication (the client proved a name). This stage adds authorization (is
that name allowed here?) and one log line per connection, so a refusal leaves
a trace. Run it after `make certs`:

    python3 stages/allowlist_server.py
    python3 client.py --cacert certs/ca.crt --cert certs/client.crt \
        --key certs/client.key https://localhost:3000/        -> Hello, my-client

server.py does the same with --allow, and adds the armour of section 3's table.
"""

import http.server
import pathlib
import ssl

ALLOW = {"cn:my-client"}        # who may come in, by typed name (see identities)

CERTS = pathlib.Path(__file__).resolve().parent.parent / "certs"   # made by `make certs`
if not (CERTS / "server.crt").exists():
    raise SystemExit(f"error: {CERTS / 'server.crt'} not found -- run 'make certs' first")

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.minimum_version = ssl.TLSVersion.TLSv1_2
context.set_ecdh_curve("prime256v1")           # one group: no costly finite-field DH
context.load_cert_chain(CERTS / "server.crt", CERTS / "server.key")  # who we are
context.verify_mode = ssl.CERT_REQUIRED        # demand a client certificate...
context.load_verify_locations(CERTS / "ca.crt")  # ...signed by our CA

# getpeercert() names the kinds of subjectAltName like this; we write them as
# a type and a value, so that a DNS name "x" and a CN "x" are not the same.
SAN_TYPES = {"DNS": "dns", "URI": "uri", "IP Address": "ip", "email": "email"}


def identities(cert):
    """The client's names: its subjectAltNames, or its CN when it has none.

    Where a certificate has SANs, its CN is not a name (RFC 6125 6.4.4): a CA
    that checked the SANs may not have checked the CN.
    """
    sans = [f"{SAN_TYPES[kind]}:{value}" for kind, value in cert.get("subjectAltName", ())
            if kind in SAN_TYPES]
    cns = [f"cn:{value}" for rdn in cert["subject"] for key, value in rdn if key == "commonName"]
    return sans or cns


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        names = identities(self.request.getpeercert())
        if ALLOW.isdisjoint(names):             # authenticated, but not authorized
            print("forbidden", self.client_address[0], " ".join(names), "is not allowed")
            self.reply(403, "Forbidden: your certificate is good, but not allowed here\n")
        else:
            print("accepted", self.client_address[0], "as", names[0])
            self.reply(200, f"Hello, {names[0].split(':', 1)[1]}\n")

    def reply(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):      # our own line above says it all
        pass


class MTLSServer(http.server.ThreadingHTTPServer):
    def finish_request(self, sock, address):   # in this connection's own thread
        sock.settimeout(10)                     # per read: a silent client is let go
        try:
            with context.wrap_socket(sock, server_side=True) as tls:   # the handshake
                super().finish_request(tls, address)
        except (ssl.SSLError, OSError) as exc:
            print("rejected", address[0], exc)


try:
    MTLSServer(("localhost", 3000), Hello).serve_forever()
except KeyboardInterrupt:                       # Ctrl-C stops it
    pass
except OSError as exc:                          # e.g. make run holds port 3000
    raise SystemExit(f"error: cannot listen on localhost:3000 ({exc.strerror}) -- "
                     f"stop the server that holds it")
