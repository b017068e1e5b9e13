#!/usr/bin/env python3
"""name-prefix: authorization by a pattern in the name, not the exact name.

An allow-list check written as `name.startswith("my-client")`, or as
`"my-client" in subject`, or a regular expression without an anchor,
passes names the CA issued to someone else: my-client-evil, my-client.old,
not-my-client. Any client our CA ever named that way gets in. The wrong
code below compares the client's identities, as text, with startswith.

Attack this wrong server by hand:
    python3 mistakes/name_prefix.py --port 3001 --allow cn:my-client
    python3 client.py --cacert certs/ca.crt --cert certs/evil-client.crt \\
        --key certs/evil-client.key https://localhost:3001/
"""

TITLE = "Authorization by a name pattern (startswith)"
FILE = "server.py"
EDITS = [
    ("    if wanted and wanted.isdisjoint(map(matching_key, ids)):\n",
     "    if allow and not any(spell_all(ids).startswith(spell(a)) for a in allow):\n"),
]
ATTACK = "client"
SERVER = ["--allow", "cn:my-client"]
ATTACKER = "a client whose certificate, from our own CA, names it my-client-evil."
CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/evil-client.crt",
          "--key", "{certs}/evil-client.key", "{url}"]
WHY = ("TLS proved the name is my-client-evil; the allow-list check then compared it "
       "loosely. Compare the whole identity, typed, with ==: a name is not a pattern.")
FIX = ("compare whole typed identities with == (a DNS name in any case, RFC 4343), as "
       "server.py --allow does")
SEEN_IN = ['zentyal/zentyal#1874 and #1923 (OpenVPN clients authorized by CN prefix)']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
