#!/usr/bin/env python3
"""trusted-header: the server takes the client's identity from a header, sent by anyone.

Behind a TLS-terminating proxy (nginx, an ingress) the backend learns who
the client is from a header the proxy sets: X-Client-Cert, X-SSL-Client-S-DN,
RFC 9440's Client-Cert. The header is just text. A backend that reads it
on every connection, not only on the proxy's, believes anyone who types it:
and a client certificate is no secret (every server it was shown to has it).

Attack this wrong server by hand (see the gallery's output for the header):
    python3 mistakes/trusted_header.py --port 3001 --trust-proxy cn:my-proxy --allow cn:my-client
"""

TITLE = "A client-identity header trusted from anyone (X-Client-Cert)"
FILE = "server.py"
EDITS = [
    ("    tls.proxy = (server.trust_proxy is not None and len(tls.ids) == 1 and\n"
     "                 matching_key(tls.ids[0]) == matching_key(server.trust_proxy)\n"
     "                 and refusal_for(tls.ids, (), info) is None)\n",
     "    tls.proxy = server.trust_proxy is not None          # any client may forward one\n"),
]
ATTACK = "forged-header"
SERVER = ["--trust-proxy", "cn:my-proxy", "--allow", "cn:my-client"]
ATTACKER_FILES = ["other-client.crt", "other-client.key"]
PROXY_FILES = ["my-proxy.crt", "my-proxy.key"]
ATTACKER = ("other-client, a valid client of our CA that is not on the allow-list, "
            "sending my-client's certificate in X-Client-Cert.")
WHY = ("A header says whatever its sender wants. Believe it only on a connection that "
       "TLS authenticated as your proxy, and make the proxy overwrite it.")
FIX = "read X-Client-Cert only from the authenticated proxy: server.py --trust-proxy cn:my-proxy"
SEEN_IN = ['traefik/traefik#5061 (X-Forwarded-Ssl-Client-Cert-Infos passed from clients)',
           'webmin/webmin#2782 (X-SSL-Client-* headers honoured from any peer)']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
