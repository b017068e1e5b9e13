#!/usr/bin/env python3
"""cert-none: the client checks nothing about the server (CERT_NONE).

The other usual answer to a certificate error: `verify=False`, `curl -k`,
`rejectUnauthorized: false`, or in Python check_hostname = False and
verify_mode = ssl.CERT_NONE. The connection is still encrypted, to
whoever answers: a self-signed certificate for localhost is enough.

Try it by hand: this file runs client.py with the mistake, and openssl
s_server makes a fine impostor (it answers with a page of its own):
    openssl s_server -accept 3002 -www -cert certs/selfsigned-server.crt \\
        -key certs/impostor-server.key &
    python3 mistakes/cert_none.py --cacert certs/ca.crt \\
        --cert certs/client.crt --key certs/client.key https://localhost:3002/
"""

TITLE = "No server verification at all on the client (CERT_NONE)"
FILE = "client.py"
EDITS = [
    ("    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n",
     "    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
     "    context.check_hostname = False\n"
     "    context.verify_mode = ssl.CERT_NONE\n"),
]
ATTACK = "impostor"
IMPOSTOR_FILES = ["selfsigned-server.crt", "impostor-server.key"]
ATTACKER = ("a server with a self-signed certificate naming localhost "
            "(certs/selfsigned-server.crt), which anyone makes with one openssl command.")
CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/client.crt",
          "--key", "{certs}/client.key", "{url}"]
WHY = ("Encryption to an unauthenticated peer protects nothing: the attacker is the "
       "peer. --cacert was given and ignored, which is what makes this mistake hard "
       "to spot in a review.")
FIX = "keep verify_mode = ssl.CERT_REQUIRED and check_hostname = True, as client.py does"
SEEN_IN = ['infamousjoeg/pyaim#35 (ssl._create_unverified_context())']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
