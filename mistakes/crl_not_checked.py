#!/usr/bin/env python3
"""crl-not-checked: the CRL is loaded, but OpenSSL is never told to consult it.

load_verify_locations() accepts a CRL file without complaint and puts it
in the trust store, where it sits unused: OpenSSL looks a certificate up
in a CRL only when a VERIFY_CRL_CHECK_* flag asks it to. The revoked
client passes, and no log line says anything was skipped.

Attack this wrong server by hand:
    python3 mistakes/crl_not_checked.py --port 3001 --crl certs/ca.crl
    python3 client.py --cacert certs/ca.crt --cert certs/revoked-client.crt \\
        --key certs/revoked-client.key https://localhost:3001/
"""

TITLE = "A CRL loaded but never consulted (no VERIFY_CRL_CHECK_LEAF)"
FILE = "server.py"
EDITS = [
    ("    if crls:\n"
     "        # Loading a CRL is not enough: this flag tells OpenSSL to look the client's\n"
     "        # certificate up in the CRL of the CA that issued it. --crl-chain: every\n"
     "        # certificate of the chain (a revoked intermediate too); then every CA in\n"
     "        # the chain, the root included, must have a current CRL here.\n"
     "        check = ssl.VERIFY_CRL_CHECK_CHAIN if crl_chain else ssl.VERIFY_CRL_CHECK_LEAF\n"
     "        context.verify_flags |= check\n",
     ""),
]
ATTACK = "client"
SERVER = ["--crl", "{certs}/ca.crl"]
ATTACKER = "whoever holds the key of a revoked certificate (certs/revoked-client.crt)."
CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/revoked-client.crt",
          "--key", "{certs}/revoked-client.key", "{url}"]
WHY = ("A loaded CRL is data, not a check. Without VERIFY_CRL_CHECK_LEAF the verifier "
       "never opens it, so the certificate that the CA revoked (its key leaked) still "
       "passes: signature and dates are fine.")
FIX = "context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF after loading the CRL"
SEEN_IN = []

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
