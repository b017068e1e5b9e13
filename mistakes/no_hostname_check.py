#!/usr/bin/env python3
"""no-hostname-check: the client checks the server's CA, but not the server's name.

`check_hostname = False` is the usual answer to "hostname mismatch". The
client still demands a certificate from our CA, so it feels safe; but our
CA signs many servers, and any of them can now pose as any other. Here a
server with a valid certificate for www.example.com answers for localhost,
and the client hands it the request (and would hand it any token in it).

Try it by hand: this file runs client.py with the mistake, and openssl
s_server makes a fine impostor (it answers with a page of its own):
    openssl s_server -accept 3002 -www -cert certs/impostor-server.crt \\
        -key certs/impostor-server.key &
    python3 mistakes/no_hostname_check.py --cacert certs/ca.crt \\
        --cert certs/client.crt --key certs/client.key https://localhost:3002/
"""

TITLE = "Hostname checking off on the client (check_hostname = False)"
FILE = "client.py"
EDITS = [
    ("    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n",
     "    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
     "    context.check_hostname = False\n"),
]
ATTACK = "impostor"
IMPOSTOR_FILES = ["impostor-server.crt", "impostor-server.key"]
ATTACKER = ("a server holding a valid certificate from our own CA for www.example.com "
            "(certs/impostor-server.crt), listening where the client expects localhost.")
CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/client.crt",
          "--key", "{certs}/client.key", "{url}"]
WHY = ("A CA signature says who a certificate belongs to; only the name check says it "
       "belongs to the server you meant. Without it, every server our CA ever certified "
       "can receive this client's requests.")
FIX = "leave check_hostname on (PROTOCOL_TLS_CLIENT's default), as client.py does"
SEEN_IN = ['NVIDIA/ai-cloud-validation#538 (review: check_hostname = False with a CA)']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
