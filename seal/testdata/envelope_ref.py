# Independent implementation of docs/ENVELOPE.md v1 with pyca/cryptography.
import hashlib, hmac, struct
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

def info(label, tenant, artifact):
    t, a = tenant.encode(), artifact.encode()
    return label.encode() + b"\x00" + struct.pack(">H", len(t)) + t + struct.pack(">H", len(a)) + a

def hk(dek, salt, inf):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=inf).derive(dek)

def envelope(dek, salt, prefix, key_id, kek_version, wrap_alg, wrapped, tenant, artifact, plain):
    body = b"TSEV" + bytes([1, 1]) + salt + prefix + bytes([len(key_id)]) + key_id.encode() \
        + struct.pack(">I", kek_version) + bytes([wrap_alg]) + struct.pack(">H", len(wrapped)) + wrapped
    kp = hk(dek, salt, info("tensafe envelope v1 payload key", tenant, artifact))
    kh = hk(dek, salt, info("tensafe envelope v1 header key", tenant, artifact))
    out = body + hmac.new(kh, body, hashlib.sha256).digest()
    g = AESGCM(kp)
    S = 65536
    segs = [plain[i:i+S] for i in range(0, len(plain), S)] or [b""]
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        nonce = prefix + struct.pack(">I", i) + bytes([1 if last else 0])
        out += g.encrypt(nonce, seg, None)
    return out

dek = bytes(range(32))
salt = bytes(0x10 + i for i in range(32))
prefix = bytes([0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6])
args = (dek, salt, prefix, "kek:tenant-a", 1, 1, b"\xaa" * 40, "tenant-a", "artifact-1")
print(envelope(*args, b"hello, tensafe").hex())
big = bytes(i % 251 for i in range(65537))
print(hashlib.sha256(envelope(*args, big)).hexdigest())
print("sha256:" + hashlib.sha256(b"hello, tensafe").hexdigest())
