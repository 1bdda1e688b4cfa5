#!/usr/bin/env python3
"""Independent check of the TSSP v1 container and manifest (docs/TSSP_SPEC.md)
with the Python standard library only: canonical USTAR headers, member order,
padding and end blocks, canonical manifest JSON, member sizes and SHA-256.
(Signature and decryption need ML-DSA-65 and X-Wing HPKE, which the
standard library lacks; tssp's TestVector covers them.)

    python3 check_vector.py package.tssp
"""
import hashlib, json, sys

ORDER = ["manifest.json", "manifest.sig", "adapter_config.json",
         "dp_certificate.json", "evidence.json", "weights.bin.enc"]

def header(name, size):
    """The one USTAR header docs/TSSP_SPEC.md allows for a member."""
    h = bytearray(512)
    def put(off, b):
        h[off:off + len(b)] = b
    put(0, name.encode())
    put(100, b"0000644\0")
    put(108, b"0000000\0")
    put(116, b"0000000\0")
    put(124, b"%011o\0" % size)
    put(136, b"00000000000\0")
    put(148, b" " * 8)
    put(156, b"0")
    put(257, b"ustar\0" + b"00")
    put(329, b"0000000\0" + b"0000000\0")
    put(148, b"%06o\0 " % sum(h))
    return bytes(h)

def main(path):
    data = open(path, "rb").read()
    members, off = [], 0
    while True:
        hdr = data[off:off + 512]
        assert len(hdr) == 512, "archive ends without end blocks"
        if hdr == bytes(512):
            assert data[off:] == bytes(1024), "end blocks must close the archive"
            break
        name = hdr[:100].split(b"\0", 1)[0].decode()
        size = int(hdr[124:135], 8)
        assert hdr == header(name, size), f"{name}: header not canonical"
        body = data[off + 512: off + 512 + size]
        pad = (512 - size % 512) % 512
        assert data[off + 512 + size: off + 512 + size + pad] == bytes(pad), "nonzero padding"
        members.append((name, body))
        off += 512 + size + pad
    names = [n for n, _ in members]
    assert names == sorted(names, key=ORDER.index), f"members out of order: {names}"
    m = dict(members)
    raw = m["manifest.json"]
    man = json.loads(raw)
    assert man["format"] == "tensafe-tssp/v1"
    assert json.dumps(man, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == raw, "manifest not canonical"
    assert [x["name"] for x in man["members"]] == names[2:], "manifest members differ from the archive"
    for x in man["members"]:
        body = m[x["name"]]
        assert x["size"] == len(body), x["name"]
        assert x["sha256"] == "sha256:" + hashlib.sha256(body).hexdigest(), x["name"]
    assert len(m["manifest.sig"]) == 3374
    print("ok:", path, man["package_id"], "signer", man["signer"], "members", names)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "package.tssp")
