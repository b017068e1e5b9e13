#!/usr/bin/env python3
"""cert-optional: the server asks for a client certificate, but lets a client without one in.

The usual "make it work" edit. A client fails with "certificate required",
so someone relaxes CERT_REQUIRED to CERT_OPTIONAL. The handshake now
succeeds without a certificate and getpeercert() returns None. In
server.py the next line then fails, so a second "make it work" edit
copes with "no certificate", and nothing is left that checks. Node's
`requestCert: true, rejectUnauthorized: false` and Go's
tls.RequestClientCert are worse cousins: they do not even verify a
certificate that does come.

Attack this wrong server by hand (it takes server.py's options):
    python3 mistakes/cert_optional.py --port 3001
    python3 client.py --cacert certs/ca.crt https://localhost:3001/
"""

TITLE = "Optional client certificates, never checked (CERT_OPTIONAL)"
FILE = "server.py"
EDITS = [
    ("    context.verify_mode = ssl.CERT_REQUIRED\n",
     "    context.verify_mode = ssl.CERT_OPTIONAL\n"),
    ("        info = read_certificate(tls.getpeercert(binary_form=True))\n",
     "        der = tls.getpeercert(binary_form=True)         # None: no certificate\n"
     "        info = read_certificate(der) if der else {\"cns\": [], \"has_san\": False, "
     "\"ca\": False}\n"),
]
ATTACK = "client"
SERVER = []
ATTACKER = "a client that shows no certificate at all."
CLIENT = ["--cacert", "{certs}/ca.crt", "{url}"]
WHY = ("CERT_OPTIONAL asks for a certificate and checks one if it comes, but lets the "
       "handshake finish without one. The server then serves an anonymous client, as if it "
       "had authenticated it. CERT_REQUIRED makes the handshake itself fail.")
FIX = "context.verify_mode = ssl.CERT_REQUIRED (as server.py does)"
SEEN_IN = ['UnivaCorporation/tortuga#268 "Change from ssl.CERT_REQUIRED to ssl.CERT_OPTIONAL"',
           'enablebanking/open_banking_eidas_broker#67 "Security: ssl_verify_client is optional"']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
