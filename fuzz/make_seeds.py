#!/usr/bin/env python3
"""Writes the committed seed corpus of each fuzz target into seeds/<target>/.

Seeds are small valid inputs plus a few near misses, so the fuzzer starts inside the
formats instead of having to discover JSON, gRPC framing or protobuf on its own. Run
from this folder; the output is deterministic.
"""

import json
import os
import struct


def write(target, name, data):
    folder = os.path.join("seeds", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    """A length-delimited protobuf field (string, bytes or message)."""
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def number(field_number, value):
    return varint(field_number << 3) + varint(value)


def timestamp(seconds):
    return number(1, seconds)


def framed(message):
    return b"\0" + struct.pack(">I", len(message)) + message


# resident IDs, region codes and prefixes
for i, text in enumerate(
    [
        "110105198001019010",
        "310115199212319026",
        "440305200002299138",
        "11010519800101901x",
        "110105198002309010",
        "990105198001019010",
        "11010519800101901",
        "440305",
        "44",
        "4403",
        "000000",
        "110105 198001019010",
        "１１０１０５１９８００１０１９０１０",
        "440305-HR-000123",
    ]
):
    write("resident_id", f"seed-{i:02}", text)

# portal filings
medical = {
    "one_thing_id": "medical-treatment-registration",
    "applicant": {"id_number": "110105198001019010", "name": "张三", "phone": "13800138000"},
    "form": {
        "treatment_region": "310115",
        "hospital_name": "复旦大学附属中山医院",
        "start_date": "2026-12-01",
        "reason": "异地长期居住",
        "contact_phone": "13800138000",
    },
}
write("portal_filing", "medical", json.dumps(medical, ensure_ascii=False))
unknown_keys = json.loads(json.dumps(medical))
unknown_keys["form"]["110105198001019010"] = "x"
unknown_keys["form"]["spouse_name"] = "李四"
write("portal_filing", "unknown-keys", json.dumps(unknown_keys, ensure_ascii=False))
bad_values = json.loads(json.dumps(medical))
bad_values["form"]["treatment_region"] = "110105198001019010"
bad_values["form"]["start_date"] = "2026-02-30"
write("portal_filing", "bad-values", json.dumps(bad_values, ensure_ascii=False))
with_materials = json.loads(json.dumps(medical))
with_materials["one_thing_id"] = "household-transfer"
with_materials["mode"] = "fully_online"
with_materials["materials"] = [
    {"material_id": "marriage_certificate", "source": "license", "reference": "440305-MC-000001"},
    {"material_id": "photo", "source": "upload", "reference": "sha256:00"},
]
write("portal_filing", "materials", json.dumps(with_materials, ensure_ascii=False))
control = json.loads(json.dumps(medical))
control["applicant"]["name"] = "张\u202e三\u0000"
write("portal_filing", "control-characters", json.dumps(control, ensure_ascii=False))
write("portal_filing", "not-an-object", "[1, 2, {\"one_thing_id\": null}]")

# gateway calls: path, metadata lines, blank line, body
def call(path, metadata, body=b""):
    head = path + "\n" + "".join(f"{k}: {v}\n" for k, v in metadata) + "\n"
    return head.encode() + body


GW = "/tongban.federation.v1.Gateway/"
deliver_md = [
    ("tongban-target-region", "440305"),
    ("tongban-origin-region", "110105"),
    ("tongban-one-thing", "medical-treatment-registration"),
    ("tongban-idempotency-key", "110000-20261201-000001"),
    ("grpc-timeout", "5S"),
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
]
write("gateway_call", "deliver", call(GW + "DeliverApplication", deliver_md, framed(field(1, "x"))))
write("gateway_call", "query", call(GW + "QueryStatus", deliver_md[:2] + [("grpc-timeout", "99999999H")]))
write(
    "gateway_call",
    "verify-identity",
    call(GW + "VerifyIdentity", [("grpc-timeout", "100m")], framed(field(1, "110105198001019010") + field(2, "张三") + number(3, 1))),
)
write(
    "gateway_call",
    "lookup-license",
    call(
        GW + "LookupLicense",
        [("traceparent", "00-00000000000000000000000000000000-0000000000000000-00")],
        framed(field(1, "440305-MC-000001") + field(2, "marriage_certificate") + field(5, "110105198001019010")),
    ),
)
write("gateway_call", "list-licenses", call(GW + "ListLicenses", [], framed(field(1, "110105198001019010") + field(2, "440000"))))
write("gateway_call", "revocation-short-frame", call(GW + "PublishRevocation", [], b"\0\0\0\0\x09abc"))
write("gateway_call", "compressed", call(GW + "VerifyIdentity", [], b"\x01\0\0\0\0"))
write("gateway_call", "unknown-method", call(GW + "Nope\x01\x1b[31m", [("tongban-idempotency-key", "k" * 200)]))
write("gateway_call", "catalog", call("/tongban.federation.v1.Catalog/GetCatalog", [("tongban-origin-region", "44")]))

# licenses and assertions: mode byte, then a SignedObject (even) or a body to sign (odd)
license = (
    field(1, "440305-MC-000001")
    + field(2, "marriage_certificate")
    + field(3, "440305")
    + field(4, b"\x01" * 32)
    + field(5, b"\x02" * 16)
    + field(6, "张*")
    + field(7, field(1, "registered_region") + field(2, "440305"))
)
write("license", "license-signed", b"\x01" + license)
write("license", "license-wrong-region", b"\x01" + license.replace(b"440305", b"310115", 1))
assertion = field(1, b"\x03" * 32) + field(2, b"\x04" * 16) + number(3, 1) + number(4, 1) + number(5, 2) + field(6, "110105") + field(7, timestamp(1_790_000_000))
write("license", "assertion-signed", b"\x03" + assertion)
write("license", "signed-object", b"\x00" + field(1, license) + field(2, "fuzz-1") + field(3, b"\x00" * 64))
write("license", "signed-object-unknown-key", b"\x00" + field(1, assertion) + field(2, "other") + field(3, b""))
write("license", "empty-body", b"\x01")

# license ids: the national format (GB/T 36904), the public samples and near misses, and
# the legacy short form
NATIONAL = "1.2.156.3005.2."
write("license_id", "hunan", NATIONAL + "11100000000013338W011.11430000006122244L.20230000403.001.U")
write("license_id", "jilin", NATIONAL + "11100000000013338W032.11220000013544541J.2430599.001.F")
write("license_id", "six-digit-issuer", NATIONAL + "11100000000013338W011.440305.77.002.0")
write("license_id", "wrong-check", NATIONAL + "11100000000013338W011.11430000006122244L.20230000403.001.V")
write("license_id", "bad-credit-code", NATIONAL + "11100000000013338W011.11430000006122244M.20230000403.001.U")
write("license_id", "legacy", "440305-HR-000123")
write("license_id", "short", NATIONAL)
