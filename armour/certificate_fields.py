"""certificate_fields.py: the fields of a certificate or CRL, read from its DER bytes.

Prevents: checks we could not make because Python's ssl will not read the
certificate for us. It gives the fields of the peer's certificate
(getpeercert) and the dates of trusted CAs (get_ca_certs), but nothing
for our own certificate, a CRL, or a certificate that arrives in a
header. Rather than call private functions or the openssl binary, we read
the few fields we need from the DER bytes ourselves (X.509 is ASN.1 DER,
RFC 5280 4.1 and 5.1): names, dates, basicConstraints, extendedKeyUsage,
subjectAltName, key identifiers, serial numbers, a CRL's revoked serials
and whether it is a delta or indirect CRL.
It only reads; OpenSSL verifies every signature (and every direct client:
forwarded.py repeats its checks for a certificate in a header).

The one certificate reader of the project: read_certificate(der),
read_crl(der), same_name(a, b), read_pem(path), pem_to_ders(text), pem_labels(path),
pem_blocks(data), leaf_out_of_place(ders); and, for the demo's --check, the same fields in the
words `openssl x509 -text` prints them: describe_certificate(der).
"""

import base64
import binascii
import calendar
import ipaddress
import re
import shlex
import time

from armour import ConfigError

OID_CN = bytes.fromhex("550403")                    # 2.5.4.3 commonName
OID_SAN = bytes.fromhex("551d11")                   # 2.5.29.17 subjectAltName
OID_RSA = bytes.fromhex("2a864886f70d010101")       # 1.2.840.113549.1.1.1 rsaEncryption
OID_EC = bytes.fromhex("2a8648ce3d0201")            # 1.2.840.10045.2.1 id-ecPublicKey
OID_BASIC_CONSTRAINTS = bytes.fromhex("551d13")     # 2.5.29.19
OID_EKU = bytes.fromhex("551d25")                   # 2.5.29.37 extendedKeyUsage
OID_SERVER_AUTH = bytes.fromhex("2b06010505070301")  # 1.3.6.1.5.5.7.3.1
OID_CLIENT_AUTH = bytes.fromhex("2b06010505070302")  # 1.3.6.1.5.5.7.3.2
OID_SKI = bytes.fromhex("551d0e")                   # 2.5.29.14 subjectKeyIdentifier
OID_AKI = bytes.fromhex("551d23")                   # 2.5.29.35 authorityKeyIdentifier
OID_ANY_EKU = bytes.fromhex("551d2500")             # 2.5.29.37.0
OID_KEY_USAGE = bytes.fromhex("551d0f")             # 2.5.29.15 keyUsage
OID_NS_CERT_TYPE = bytes.fromhex("6086480186f8420101")  # 2.16.840.1.113730.1.1 (Netscape)
OID_DELTA_CRL = bytes.fromhex("551d1b")             # 2.5.29.27 deltaCRLIndicator
OID_ISSUING_DP = bytes.fromhex("551d1c")            # 2.5.29.28 issuingDistributionPoint
SAN_TYPES = {0x81: "email", 0x82: "dns", 0x86: "uri", 0x87: "ip"}   # GeneralName tags
KEY_USAGES = ("digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
              "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly")
NS_CERT_TYPES = ("client", "server", "email", "objsign", "reserved", "sslCA", "emailCA", "objCA")


def der_items(data, start=0, end=None):
    """The DER elements in data[start:end], as (tag, content start, content end)."""
    end = len(data) if end is None else end
    items, pos = [], start
    while pos < end:
        if pos + 2 > end:
            raise ValueError("truncated DER")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:                               # long form: length in n bytes
            n = length & 0x7F
            if not 1 <= n <= 4 or pos + n > end:
                raise ValueError("bad DER length")
            length, pos = int.from_bytes(data[pos:pos + n], "big"), pos + n
        if pos + length > end:
            raise ValueError("DER element runs past its end")
        items.append((tag, pos, pos + length))
        pos += length
    return items


def der_inside(data, item):
    """The elements inside a constructed DER element."""
    return der_items(data, item[1], item[2])


def der_time(data, item):
    """A UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime as seconds since the epoch."""
    tag, start, end = item
    text = data[start:end].decode("ascii")
    if tag == 0x17:
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    elif tag != 0x18:
        raise ValueError("not a time")
    # YYYYMMDDHHMMSS, read by hand: time.strptime costs ~20 us a call.
    numbers = [int(text[:4])] + [int(text[i:i + 2]) for i in range(4, 14, 2)]
    return calendar.timegm(numbers)


def der_string(data, item):
    """A DirectoryString as text (BMPString is UTF-16, UniversalString UTF-32)."""
    tag, start, end = item
    raw = data[start:end]
    codec = {0x1E: "utf-16-be", 0x1C: "utf-32-be"}.get(tag, "utf-8")
    return raw.decode(codec, "replace")


def common_names(data, name):
    """Every CN of a Name (a subject may hold several)."""
    names = []
    for rdn in der_inside(data, name):
        for attribute in der_inside(data, rdn):
            oid, value = der_inside(data, attribute)[:2]
            if data[oid[1]:oid[2]] == OID_CN:
                names.append(der_string(data, value))
    return names


def common_name(data, name):
    """The CN of a Name, or None (the last one, if there are several)."""
    names = common_names(data, name)
    return names[-1] if names else None


def read_bits(data, item):
    """The numbers of the bits set in a DER BIT STRING, bit 0 first."""
    start, end = item[1] + 1, item[2]                  # the first byte counts unused bits
    return [i for i in range((end - start) * 8) if data[start + i // 8] & (0x80 >> i % 8)]


def read_certificate(der):
    """The fields of an X.509 certificate this server uses, as a dict:
    cn, cns (all CNs), issuer_cn, not_before, not_after (epoch seconds), ca (bool),
    eku (list of OIDs, or None when absent), has_san, san [(type, value)];
    to find its issuer and its CRL entry: serial, issuer and subject
    (the Names' DER bytes), ski and aki (key identifiers, or None); and for
    the rules VERIFY_X509_STRICT adds (forwarded.py): version (1 or 3),
    has_aki, key_usage (names, or None when absent), path_len (or None),
    san_critical, san_count (every GeneralName, of any type); and
    ns_cert_type (names, or None), which OpenSSL's purpose check reads too;
    and for describe_certificate: signature (the algorithm's OID), spki (the
    SubjectPublicKeyInfo's DER), has_basic (basicConstraints present),
    san_der (the subjectAltName's GeneralNames, every type)."""
    try:
        certificate = der_inside(der, der_items(der)[0])
        tbs = der_inside(der, certificate[0])
        version = 1
        if tbs[0][0] == 0xA0:                           # [0] version, absent in v1
            version = der[der_inside(der, tbs[0])[0][2] - 1] + 1
            tbs = tbs[1:]
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
        validity = der_inside(der, tbs[3])
        spki_oid = der_inside(der, der_inside(der, tbs[5])[0])[0]
        signature = der_inside(der, tbs[1])[0]
        key = {OID_RSA: "rsa", OID_EC: "ec"}.get(der[spki_oid[1]:spki_oid[2]], "other")
        info = {"key": key, "cn": common_name(der, tbs[4]), "cns": common_names(der, tbs[4]),
                "issuer_cn": common_name(der, tbs[2]),
                "not_before": der_time(der, validity[0]), "not_after": der_time(der, validity[1]),
                "ca": False, "eku": None, "has_san": False, "san": [],
                "serial": int.from_bytes(der[tbs[0][1]:tbs[0][2]], "big", signed=True),
                "issuer": der[tbs[2][1]:tbs[2][2]], "subject": der[tbs[4][1]:tbs[4][2]],
                "ski": None, "aki": None, "version": version, "has_aki": False,
                "key_usage": None, "path_len": None, "san_critical": False, "san_count": 0,
                "ns_cert_type": None, "has_basic": False, "san_der": b"",
                "signature": der[signature[1]:signature[2]],
                "spki": der[tbs[4][2]:tbs[5][2]]}        # elements are contiguous
        for tag, start, end in tbs[6:]:
            if tag != 0xA3:                              # [3] extensions
                continue
            for extension in der_inside(der, der_items(der, start, end)[0]):
                parts = der_inside(der, extension)       # id, [critical], OCTET STRING
                oid, value = der[parts[0][1]:parts[0][2]], der_items(der, parts[-1][1], parts[-1][2])[0]
                critical = len(parts) == 3 and der[parts[1][1]] != 0
                if oid == OID_BASIC_CONSTRAINTS:             # cA BOOLEAN, pathLen INTEGER
                    info["has_basic"] = True
                    inner = der_inside(der, value)
                    info["ca"] = bool(inner) and inner[0][0] == 0x01 and der[inner[0][1]] != 0
                    lengths = [der[s:e] for t, s, e in inner if t == 0x02]
                    info["path_len"] = int.from_bytes(lengths[0], "big") if lengths else None
                elif oid == OID_KEY_USAGE:
                    info["key_usage"] = [KEY_USAGES[i] for i in read_bits(der, value)
                                         if i < len(KEY_USAGES)]
                elif oid == OID_NS_CERT_TYPE:
                    info["ns_cert_type"] = [NS_CERT_TYPES[i] for i in read_bits(der, value)
                                            if i < len(NS_CERT_TYPES)]
                elif oid == OID_EKU:
                    info["eku"] = [der[s:e] for _, s, e in der_inside(der, value)]
                elif oid == OID_SKI:
                    info["ski"] = der[value[1]:value[2]]
                elif oid == OID_AKI:                     # [0] keyIdentifier, if present
                    ids = [der[s:e] for t, s, e in der_inside(der, value) if t == 0x80]
                    info["aki"], info["has_aki"] = (ids[0] if ids else None), True
                elif oid == OID_SAN:
                    names = der_inside(der, value)
                    info["has_san"], info["san_critical"] = True, critical
                    info["san_der"] = der[value[1]:value[2]]    # every name, for --check
                    info["san_count"] = len(names)
                    for name_tag, s, e in names:
                        if name_tag in SAN_TYPES:
                            raw = der[s:e]
                            text = (str(ipaddress.ip_address(raw)) if name_tag == 0x87
                                    else raw.decode("utf-8", "replace"))
                            info["san"].append((SAN_TYPES[name_tag], text))
        return info
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a well-formed X.509 certificate: {exc}") from None


def read_crl(der):
    """The issuer (its CN, and its Name's DER bytes), the thisUpdate/nextUpdate
    dates and the revoked serial numbers of a CRL (RFC 5280 5.1); and
    whether it is a delta CRL (deltaCRLIndicator, 5.2.4) or an indirect CRL
    (issuingDistributionPoint with indirectCRL TRUE, 5.2.5): kinds that
    list only part of the revocations of the CA that signed it; and aki, its
    authorityKeyIdentifier's keyIdentifier (5.2.1: the signing CA's
    subjectKeyIdentifier), or None when absent."""
    try:
        tbs = der_inside(der, der_inside(der, der_items(der)[0])[0])
        if tbs[0][0] == 0x02:                            # version, absent in v1 CRLs
            tbs = tbs[1:]
        # signature, issuer, thisUpdate, nextUpdate (optional),
        # revokedCertificates (optional), [0] crlExtensions (optional)
        rest = tbs[3:]
        next_update = None
        if rest and rest[0][0] in (0x17, 0x18):
            next_update, rest = der_time(der, rest[0]), rest[1:]
        revoked = set()
        if rest and rest[0][0] == 0x30:                  # each: serial, date, [extensions]
            for entry in der_inside(der, rest[0]):
                serial = der_inside(der, entry)[0]
                revoked.add(int.from_bytes(der[serial[1]:serial[2]], "big", signed=True))
            rest = rest[1:]
        delta = indirect = False
        aki = None
        if rest and rest[0][0] == 0xA0:                  # [0] crlExtensions
            for extension in der_inside(der, der_inside(der, rest[0])[0]):
                parts = der_inside(der, extension)       # id, [critical], OCTET STRING
                oid = der[parts[0][1]:parts[0][2]]
                if oid == OID_DELTA_CRL:
                    delta = True
                elif oid == OID_AKI:                     # [0] keyIdentifier, if present
                    value = der_items(der, parts[-1][1], parts[-1][2])[0]
                    ids = [der[s:e] for t, s, e in der_inside(der, value) if t == 0x80]
                    aki = ids[0] if ids else None
                elif oid == OID_ISSUING_DP:              # indirectCRL is [4] BOOLEAN
                    value = der_items(der, parts[-1][1], parts[-1][2])[0]
                    indirect = any(t == 0x84 and der[s:e] != b"\x00"
                                   for t, s, e in der_inside(der, value))
        return {"issuer_cn": common_name(der, tbs[1]), "issuer": der[tbs[1][1]:tbs[1][2]],
                "this_update": der_time(der, tbs[2]), "next_update": next_update,
                "revoked": revoked, "delta": delta, "indirect": indirect, "aki": aki}
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a well-formed CRL: {exc}") from None


def same_name(a, b):
    """Do two Names (their DER content bytes: read_certificate's subject, a
    CRL's issuer) name the same CA? The same bytes, or the same text once
    case and runs of spaces are ignored (RFC 5280 7.1, simplified)."""
    if a == b:
        return True
    try:
        a, b = (" ".join(name_text(n).casefold().split()) for n in (a, b))
    except (IndexError, ValueError, UnicodeDecodeError):
        return False
    return a == b


# A PEM block: its body may hold a "-" (an encrypted key's DEK-Info: AES-256-CBC),
# never "-----". So a BEGIN without its END costs one scan to the next
# "-----", not one to the end of the text (quadratic: a 60 KB header of BEGIN
# lines took a second).
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----((?:[^-]|-(?!----))*)-----END \1-----")


def pem_labels(path):
    """The labels of the PEM blocks in a file: ["CERTIFICATE", "X509 CRL", ...]."""
    return [label for label, _ in read_pem(path)]


def read_pem(path, want=None):
    """The PEM blocks in a file, as (label, DER bytes), optionally only `want`."""
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 22)
    except OSError as exc:
        raise ConfigError("unreadable file", f"cannot read {path!r} ({exc.strerror})",
                          "check its permissions") from None
    blocks = []
    for label, body in PEM_BLOCK.findall(text):
        if want is None or label.decode() == want:
            try:
                blocks.append((label.decode(), base64.b64decode(b"".join(body.split()))))
            except binascii.Error:
                blocks.append((label.decode(), b""))
    return blocks


def pem_to_ders(text):
    """The certificates in a PEM text (bytes), as DER."""
    return [base64.b64decode(b"".join(body.split()))
            for label, body in PEM_BLOCK.findall(text) if label == b"CERTIFICATE"]


def leaf_out_of_place(ders):
    """The index of the one certificate that is not a CA's, when a chain
    (as DER, in file order) starts with a CA certificate: a chain written
    root or intermediate first, which OpenSSL would take for our own
    certificate (it takes the first one). None when the order is right."""
    try:
        infos = [read_certificate(der) for der in ders]
    except ValueError:
        return None                     # OpenSSL will say what is wrong with it
    if len(infos) < 2 or not infos[0]["ca"]:
        return None
    leaves = [i for i, info in enumerate(infos) if not info["ca"]]
    return leaves[0] if len(leaves) == 1 else None


def leaf_first_command(path, index, out):
    """The shell command that writes the certificates of `path` to `out`,
    the one at `index` (the leaf) first, then the others last to first (a
    chain written root first becomes leaf, intermediates, root)."""
    k = index + 1
    return (f"awk '/BEGIN CERTIFICATE/{{n++; p=1}} p{{b[n]=b[n] $0 \"\\n\"}} "
            f"/END CERTIFICATE/{{p=0}} END{{printf \"%s\", b[{k}]; "
            f"for (i = n; i > 0; i--) if (i != {k}) printf \"%s\", b[i]}}' "
            f"{shlex.quote(path)} > {shlex.quote(out)}")


def der_hint(path, kind="x509"):
    """If `path` looks like DER rather than PEM, the command that converts it."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return ""
    if head[:1] == b"\x30" and len(head) == 2 and head[1] >= 0x80:
        return (f"; it looks like DER (binary): convert it with "
                f"'openssl {kind} -inform DER -in {path} -out {path}.pem'")
    return ""


def out_of_date(info, now):
    """"expired on DATE" or "not valid until DATE" for a certificate, or None."""
    if now > info["not_after"]:
        return f"expired on {format_date(info['not_after'])}"
    if now < info["not_before"]:
        return f"is not valid until {format_date(info['not_before'])}"
    return None


def format_date(seconds):
    """A date as the log writes it: 2026-01-31 12:00 UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def pem_blocks(data):
    """The PEM blocks in a file's bytes, as (label, text of the block) pairs."""
    return [(m.group(1).decode(), m.group(0).decode("ascii", "replace") + "\n")
            for m in PEM_BLOCK.finditer(data)]


def pem_to_der(block):
    """The DER bytes of one PEM block's text (empty if its base64 is broken)."""
    try:
        return base64.b64decode("".join(block.strip().splitlines()[1:-1]))
    except binascii.Error:
        return b""


# --- the same fields in openssl's words, for the demo's --check -------------
# `python3 mtls_demo.py --check` prints what it finds as `openssl x509 -text
# -nameopt RFC2253` would, so that a user can compare its lines with openssl's:
# names, algorithms and extension values are spelled here as OpenSSL 3.0 does.

NAME_ATTRIBUTES = {     # a Name's attribute types, as openssl's short names
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN",
    "2.5.4.43": "initials", "2.5.4.44": "generationQualifier", "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym", "2.5.4.41": "name", "2.5.4.12": "title", "2.5.4.9": "street",
    "2.5.4.17": "postalCode", "2.5.4.13": "description", "2.5.4.15": "businessCategory",
    "2.5.4.97": "organizationIdentifier", "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL", "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC"}
ALGORITHMS = {          # signature and key algorithms, as openssl's long names
    "1.2.840.113549.1.1.1": "rsaEncryption", "1.2.840.113549.1.1.2": "md2WithRSAEncryption",
    "1.2.840.113549.1.1.3": "md4WithRSAEncryption", "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption", "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.14": "sha224WithRSAEncryption",
    "1.2.840.10045.2.1": "id-ecPublicKey", "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.1": "ecdsa-with-SHA224", "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384", "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.3.101.112": "ED25519", "1.3.101.113": "ED448", "1.2.840.10040.4.1": "dsaEncryption",
    "1.2.840.10040.4.3": "dsaWithSHA1", "2.16.840.1.101.3.4.3.1": "dsa_with_SHA224",
    "2.16.840.1.101.3.4.3.2": "dsa_with_SHA256"}
CURVE_BITS = {"1.2.840.10045.3.1.7": 256, "1.3.132.0.34": 384, "1.3.132.0.35": 521,
              "1.3.132.0.10": 256, "1.2.840.10045.3.1.1": 192, "1.3.132.0.33": 224,
              "1.3.36.3.3.2.8.1.1.7": 256, "1.3.36.3.3.2.8.1.1.11": 384,
              "1.3.36.3.3.2.8.1.1.13": 512}
KEY_USAGE_TEXT = ("Digital Signature", "Non Repudiation", "Key Encipherment",
                  "Data Encipherment", "Key Agreement", "Certificate Sign", "CRL Sign",
                  "Encipher Only", "Decipher Only")
EKU_TEXT = {"1.3.6.1.5.5.7.3.1": "TLS Web Server Authentication",
            "1.3.6.1.5.5.7.3.2": "TLS Web Client Authentication",
            "1.3.6.1.5.5.7.3.3": "Code Signing", "1.3.6.1.5.5.7.3.4": "E-mail Protection",
            "1.3.6.1.5.5.7.3.8": "Time Stamping", "1.3.6.1.5.5.7.3.9": "OCSP Signing",
            "2.5.29.37.0": "Any Extended Key Usage", "1.3.6.1.5.5.7.3.5": "IPSec End System",
            "1.3.6.1.5.5.7.3.6": "IPSec Tunnel", "1.3.6.1.5.5.7.3.7": "IPSec User",
            "1.3.6.1.5.5.7.3.10": "dvcs", "1.3.6.1.5.5.7.3.17": "ipsec Internet Key Exchange",
            "1.3.6.1.5.5.7.3.21": "SSH Client", "1.3.6.1.5.5.7.3.22": "SSH Server",
            "1.3.6.1.5.2.3.4": "PKINIT Client Auth", "1.3.6.1.5.2.3.5": "Signing KDC Response",
            "1.3.6.1.4.1.311.10.3.4": "Microsoft Encrypted File System",
            "1.3.6.1.4.1.311.20.2.2": "Microsoft Smartcard Login",
            "1.3.6.1.4.1.311.10.3.3": "Microsoft Server Gated Crypto",
            "2.16.840.1.113730.4.1": "Netscape Server Gated Crypto",
            "1.3.6.1.4.1.311.2.1.21": "Microsoft Individual Code Signing",
            "1.3.6.1.4.1.311.2.1.22": "Microsoft Commercial Code Signing",
            "1.3.6.1.4.1.311.10.3.1": "Microsoft Trust List Signing"}
SAN_TEXT = {"email": "email", "dns": "DNS", "uri": "URI", "ip": "IP Address"}
OTHER_NAMES = {"1.3.6.1.4.1.311.20.2.3": "UPN", "1.3.6.1.5.5.7.8.9": "SmtpUTF8Mailbox",
               "1.3.6.1.5.5.7.8.5": "XmppAddr", "1.3.6.1.5.5.7.8.7": "SRVName",
               "1.3.6.1.5.5.7.8.8": "NAIRealm"}


def oid_text(raw):
    """An OBJECT IDENTIFIER's content bytes in dotted form: 1.2.840.10045.2.1."""
    numbers, value = [], 0
    for byte in raw:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    if not numbers:
        return ""
    first = min(numbers[0] // 40, 2)
    return ".".join(str(n) for n in [first, numbers[0] - 40 * first] + numbers[1:])


def escape_rfc2253(text):
    """A name's value escaped as openssl -nameopt RFC2253 does: ,+"\\<>; with a
    backslash, a leading # or space and a trailing space too, and every byte of
    a control or non-ASCII character as \\XX (UTF-8)."""
    out = []
    for i, char in enumerate(text):
        if char in ',+"\\<>;' or (char == "#" and i == 0) or (
                char == " " and i in (0, len(text) - 1)):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) >= 0x7F:
            out.extend(f"\\{b:02X}" for b in char.encode("utf-8"))
        else:
            out.append(char)
    return "".join(out)


def name_text(name):
    """A Name's content bytes (read_certificate's subject or issuer) as
    openssl -nameopt RFC2253 prints it: CN=my-client,O=Example (last RDN first)."""
    parts = []
    for rdn in der_items(name):
        attributes = []
        for attribute in der_inside(name, rdn):
            oid, value = der_inside(name, attribute)[:2]
            dotted = oid_text(name[oid[1]:oid[2]])
            if dotted in NAME_ATTRIBUTES:
                attributes.append(f"{NAME_ATTRIBUTES[dotted]}="
                                  f"{escape_rfc2253(der_string(name, value))}")
            else:                                   # unknown: its DER, in hex
                attributes.append(f"{dotted}=#{name[value[1] - 2:value[2]].hex().upper()}")
        parts.append("+".join(reversed(attributes)))
    return ",".join(reversed(parts))


def key_bits(spki):
    """The size openssl gives a public key ('Public-Key: (N bit)'), or None:
    the modulus of RSA, the prime of DSA, the named curve's of EC."""
    algorithm, key = der_items(spki, *der_items(spki)[0][1:])[:2]
    oid, *params = der_inside(spki, algorithm)
    kind = oid_text(spki[oid[1]:oid[2]])
    if kind in ("1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"):    # RSA, RSA-PSS
        modulus = der_items(spki, *der_items(spki, key[1] + 1, key[2])[0][1:])[0]
        return int.from_bytes(spki[modulus[1]:modulus[2]], "big").bit_length()
    if kind == "1.2.840.10040.4.1" and params and params[0][0] == 0x30:  # DSA: p, q, g
        prime = der_inside(spki, params[0])[0]
        return int.from_bytes(spki[prime[1]:prime[2]], "big").bit_length()
    if kind == "1.2.840.10045.2.1" and params and params[0][0] == 0x06:  # EC, named curve
        return CURVE_BITS.get(oid_text(spki[params[0][1]:params[0][2]]))
    return None


def ip_text(raw):
    """An IP address as openssl prints it in a subjectAltName (IPv6 unabridged)."""
    if len(raw) == 16:
        return ":".join(f"{int.from_bytes(raw[i:i + 2], 'big'):X}" for i in range(0, 16, 2))
    return str(ipaddress.ip_address(raw)) if len(raw) == 4 else "<invalid>"


def oneline_text(name):
    """A Name's content bytes as openssl writes a DirName: /CN=a/O=b, first RDN
    first, bytes outside printable ASCII as \\xHH."""
    text = ""
    for rdn in der_items(name):
        for attribute in der_inside(name, rdn):
            oid, value = der_inside(name, attribute)[:2]
            dotted = oid_text(name[oid[1]:oid[2]])
            raw = name[value[1]:value[2]]
            text += f"/{NAME_ATTRIBUTES.get(dotted, dotted)}=" + "".join(
                chr(b) if 32 <= b <= 126 else f"\\x{b:02X}" for b in raw)
    return text


def general_names_text(data):
    """subjectAltName's GeneralNames as openssl lists them: DNS:a, IP Address:...,
    email:, URI:, DirName:/CN=..., Registered ID:, othername: OID::value."""
    entries = []
    for tag, start, end in der_items(data):
        raw = data[start:end]
        if tag in SAN_TYPES:
            kind = SAN_TYPES[tag]
            entries.append(f"{SAN_TEXT[kind]}:" + (ip_text(raw) if kind == "ip"
                                                    else raw.decode("utf-8", "replace")))
        elif tag == 0xA4:                               # [4] directoryName, a Name
            entries.append("DirName:" + oneline_text(data[der_items(data, start, end)[0][1]:end]))
        elif tag == 0x88:                               # [8] registeredID
            entries.append("Registered ID:" + oid_text(raw))
        elif tag == 0xA0:                               # [0] otherName: type-id, [0] value
            oid, value = der_items(data, start, end)[:2]
            dotted = oid_text(data[oid[1]:oid[2]])
            kind = OTHER_NAMES.get(dotted, dotted)
            inner = der_items(data, value[1], value[2])[0]
            shown = (data[inner[1]:inner[2]].decode("utf-8", "replace")
                     if inner[0] in (0x0C, 0x13, 0x16) else "<unsupported>")
            entries.append(f"othername: {kind}::{shown}")
        else:                                           # x400Address, ediPartyName
            entries.append({0xA3: "X400Name", 0xA5: "EdiPartyName"}.get(tag, "?")
                           + ":<unsupported>")
    return entries


def describe_certificate(der):
    """A certificate's fields in openssl's words (a dict): subject and issuer
    (RFC 2253 text), signature and key_type (algorithm names), key_bits,
    public_key (PEM), and extensions {openssl's name: [values]} for
    subjectAltName, extendedKeyUsage, basicConstraints, keyUsage and the key
    identifiers. Raises ValueError for a certificate it cannot read."""
    info = read_certificate(der)
    try:
        spki = info["spki"]
        key_oid = der_inside(spki, der_inside(spki, der_items(spki)[0])[0])[0]
        key_type = oid_text(spki[key_oid[1]:key_oid[2]])
        extensions = {}
        if info["ski"] is not None:
            extensions["Subject Key Identifier"] = [info["ski"].hex(":").upper()]
        if info["aki"] is not None:
            extensions["Authority Key Identifier"] = [info["aki"].hex(":").upper()]
        if info["has_san"]:
            extensions["Subject Alternative Name"] = general_names_text(info["san_der"])
        if info["eku"] is not None:
            extensions["Extended Key Usage"] = [EKU_TEXT.get(oid_text(o), oid_text(o))
                                                for o in info["eku"]]
        if info["key_usage"] is not None:
            extensions["Key Usage"] = [KEY_USAGE_TEXT[KEY_USAGES.index(u)]
                                       for u in info["key_usage"]]
        if info["has_basic"]:
            extensions["Basic Constraints"] = [f"CA:{'TRUE' if info['ca'] else 'FALSE'}"] + (
                [f"pathlen:{info['path_len']}"] if info["path_len"] is not None else [])
        body = base64.b64encode(spki).decode()
        public_key = "\n".join(["-----BEGIN PUBLIC KEY-----"]
                               + [body[i:i + 64] for i in range(0, len(body), 64)]
                               + ["-----END PUBLIC KEY-----"])
        signature = oid_text(info["signature"])
        return {"subject": name_text(info["subject"]), "issuer": name_text(info["issuer"]),
                "not_before": info["not_before"], "not_after": info["not_after"],
                "version": info["version"], "key_type": ALGORITHMS.get(key_type, key_type),
                "key_bits": key_bits(spki), "extensions": extensions, "public_key": public_key,
                "signature": ALGORITHMS.get(signature, signature)}
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a well-formed X.509 certificate: {exc}") from None
