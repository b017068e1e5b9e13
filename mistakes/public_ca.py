#!/usr/bin/env python3
"""public-ca: the server trusts the system's public CAs to vouch for its clients.

A client certificate proves only what its issuer checked, and no public CA
knows who "my-client" is in *your* system. Trusting the system store for
clients (load_default_certs(Purpose.CLIENT_AUTH), or nginx's
ssl_client_certificate pointed at ca-certificates.crt) lets anyone with a
certificate from any of those CAs through the handshake, and a check by
name alone then lets them in.

Here public-ca stands in for those CAs: the gallery starts both servers
with SSL_CERT_FILE=certs/public-ca.crt, which is where OpenSSL looks for
"the system's CAs". Attack this wrong server by hand:
    SSL_CERT_FILE=certs/public-ca.crt \
        python3 mistakes/public_ca.py --port 3001 --allow cn:my-client
    python3 client.py --cacert certs/ca.crt --cert certs/public-client.crt \
        --key certs/public-client.key https://localhost:3001/
"""

TITLE = "Trusting public CAs for client certificates (the system store)"
FILE = "server.py"
EDITS = [
    ("        context.load_verify_locations(cafile=ca)\n",
     "        context.load_verify_locations(cafile=ca)\n"
     "        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)   # and the system's CAs\n"),
]
ATTACK = "client"
SERVER = ["--allow", "cn:my-client"]
ENV = {"SSL_CERT_FILE": "{certs}/public-ca.crt"}
ATTACKER = ("anyone with a certificate from a public CA naming them my-client "
            "(certs/public-client.crt, issued by public-ca).")
CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/public-client.crt",
          "--key", "{certs}/public-client.key", "{url}"]
WHY = ("The handshake checks that *some* trusted CA signed the certificate, nothing about "
       "which one. With public CAs in the client trust store, the name inside means only "
       "what a stranger's CA let someone write there. A client CA must be yours alone.")
FIX = "trust only your own CA for clients: context.load_verify_locations(cafile='certs/ca.crt')"
SEEN_IN = ['luraproject/lura#596 (the client CA pool started from the system pool)',
           "rmqtt/rmqtt#362 (a public CA's chain used as the client trust store)"]

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
