import http.server
import pathlib
import ssl

CERTS = pathlib.Path(__file__).resolve().parent.parent / "certs"   # made by `make certs`
if not (CERTS / "server.crt").exists():
    raise SystemExit(f"error: {CERTS / 'server.crt'} not found -- run 'make certs' first")

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.minimum_version = ssl.TLSVersion.TLSv1_2
context.set_ecdh_curve("prime256v1")           # key exchange on P-256 only (README section 3)
context.load_cert_chain(CERTS / "server.crt", CERTS / "server.key")  # who we are
context.verify_mode = ssl.CERT_REQUIRED        # demand a client certificate...
context.load_verify_locations(CERTS / "ca.crt")  # ...signed by our CA


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):                           # the client's name: its SAN, else its CN
        cert = self.request.getpeercert()
        names = [v for k, v in cert.get("subjectAltName", ())] or \
            [v for rdn in cert["subject"] for k, v in rdn if k == "commonName"]
        body = f"Hello, {names[0] if names else '(no name)'}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class MTLSServer(http.server.ThreadingHTTPServer):
    def finish_request(self, sock, address):   # in this connection's own thread
        sock.settimeout(10)                     # per read: a silent client is let go
        try:
            with context.wrap_socket(sock, server_side=True) as tls:   # the handshake
                super().finish_request(tls, address)
        except (ssl.SSLError, OSError) as exc:
            print("refused", address, exc)


try:
    MTLSServer(("localhost", 3000), Hello).serve_forever()
except KeyboardInterrupt:                       # Ctrl-C stops it
    pass
except OSError as exc:                          # e.g. make run holds port 3000
    raise SystemExit(f"error: cannot listen on localhost:3000 ({exc.strerror}) -- "
                     f"stop the server that holds it")
