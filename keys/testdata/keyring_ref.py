# Reads a raw-master-key keyring file (docs/KEYS.md) with pyca/cryptography,
# written from the document alone: python3 keyring_ref.py KEYRING MASTER_KEY_FILE
import sys, base64, json, struct
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
raw = open(sys.argv[1], "rb").read()
mk = open(sys.argv[2]).read().strip().split(":", 1)[1]
mk = base64.urlsafe_b64decode(mk + "=" * (-len(mk) % 4))
assert raw[:4] == b"TSKR" and raw[4] == 1 and raw[5] == 2
salt = raw[6:22]; nonce = raw[31:43]
fk = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"tensafe keyring v1 file key").derive(mk)
body = AESGCM(fk).decrypt(nonce, raw[43:], raw[:43])
st = json.loads(body)
print(sorted(st.keys()), {t: [(v["version"], "key" in v) for v in s["versions"]] for t, s in st["tenants"].items()})
