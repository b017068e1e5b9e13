#!/usr/bin/env python3
"""cn-despite-san: the server reads the CN while the certificate has a subjectAltName.

The most copied line of Python TLS code is
    dict(x[0] for x in cert["subject"])["commonName"]
It ignores the subjectAltName, which is where a CA puts the identity it
checked. (For server names RFC 6125 6.4.4 says it outright: when there is
a SAN, the CN is not looked at.) A CA that vouches for SANs, as
service-mesh CAs do, may copy the CN from the signing request untouched:
whatever the requester wrote. The wrong code below forgets that a SAN
replaces the CN, as that line does.

Attack this wrong server by hand:
    python3 mistakes/cn_despite_san.py --port 3001 --allow cn:my-client
    python3 client.py --cacert certs/ca.crt --cert certs/spoofed-cn-client.crt \\
        --key certs/evil-client.key https://localhost:3001/
"""

TITLE = "Naming the client by its CN when it has a subjectAltName"
FILE = "server.py"
EDITS = [
    ("    if info[\"has_san\"]:\n"
     "        return info[\"san\"]\n", ""),
]
ATTACK = "client"
SERVER = ["--allow", "cn:my-client"]
ATTACKER = ("the workload spiffe://example.org/other-client, whose certificate from our "
            "CA carries the CN my-client that its signing request asked for.")
CLIENT = ["--cacert", "{certs}/ca.crt", "--cert", "{certs}/spoofed-cn-client.crt",
          "--key", "{certs}/evil-client.key", "{url}"]
WHY = ("The CA checked and signed the SAN URI; the CN came from the requester. Read "
       "the identities the CA vouches for: the SAN entries, and the CN only when there is "
       "no SAN at all.")
FIX = "name the client by its SAN entries; the CN only when it has no SAN (server.py does)"
SEEN_IN = ['etcd-io/etcd#10366, CVE-2018-16886 (a CN taken as the user name)']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
