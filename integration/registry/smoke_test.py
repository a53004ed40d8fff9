#!/usr/bin/env python3
"""Smoke test of a running schema registry, speaking to it exactly as our Rust client
(schema_registry_converter) does: same paths, query strings and headers.

Usage: integration/registry/smoke_test.py [BASE_URL]
       (default: the URL printed by `integration/registry/run status`)

Checks, against the Confluent REST contract:
  * POST /subjects/{s}/versions -> {"id": N}; same schema again -> same N;
    same schema under another subject -> same N (ids are global, per schema content)
  * GET /schemas/ids/{id}?deleted=true -> {"schema": ...} equal to what was registered
  * GET /subjects/{s}/versions/latest -> subject, version, id, schema
  * POST /subjects/{s}?deleted=false (lookup) -> the registered version
  * a compatible evolution gets a new id and version 2; an incompatible one is refused (409)
  * 404s carry Confluent's error shape and codes (40401, 40402, 40403)
  * the id fits the wire format: magic byte 0 + 4-byte big-endian id

Python stdlib only. Prints one line per check and a closing "N passed, N failed" line;
exits non-zero if anything failed.
"""

import json
import struct
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

CT = "application/vnd.schemaregistry.v1+json"


def call(method, url, body=None):
    """Return (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", CT)
        req.add_header("Accept", CT)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


def main():
    if len(sys.argv) > 1:
        base = sys.argv[1].rstrip("/")
    else:
        run = Path(__file__).with_name("run")
        out = subprocess.run([str(run), "status"], capture_output=True, text=True).stdout.split()
        if len(out) < 2 or out[0] != "running":
            print("registry is not running; start it with integration/registry/run up", file=sys.stderr)
            return 2
        base = out[1]

    passed = failed = 0

    def check(name, cond, detail=""):
        nonlocal passed, failed
        if cond:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name} {detail}")

    # Unique names so the test can run repeatedly against the same (long-lived) registry.
    tag = uuid.uuid4().hex[:10]
    subject = f"smoke-{tag}-value"
    other = f"smoke-{tag}-other-value"
    quoted = urllib.parse.quote(subject, safe="")
    v1 = json.dumps({
        "type": "record", "name": f"Smoke{tag}", "namespace": "paystream.smoke",
        "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "long"}],
    }, separators=(",", ":"))
    v2 = json.dumps({
        "type": "record", "name": f"Smoke{tag}", "namespace": "paystream.smoke",
        "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "long"},
                   {"name": "currency", "type": "string", "default": "EUR"}],
    }, separators=(",", ":"))
    bad = json.dumps({
        "type": "record", "name": f"Smoke{tag}", "namespace": "paystream.smoke",
        "fields": [{"name": "id", "type": "int"}],
    }, separators=(",", ":"))
    body = lambda s: {"schema": s, "schemaType": "AVRO"}  # noqa: E731  (the client sends schemaType)

    st, r1 = call("POST", f"{base}/subjects/{quoted}/versions", body(v1))
    check("register v1 -> 200 {id}", st == 200 and isinstance(r1, dict) and isinstance(r1.get("id"), int), f"{st} {r1}")
    sid = r1.get("id") if isinstance(r1, dict) else None

    st, r = call("POST", f"{base}/subjects/{quoted}/versions", body(v1))
    check("register v1 again -> same id", st == 200 and r == {"id": sid}, f"{st} {r}")

    st, r = call("POST", f"{base}/subjects/{urllib.parse.quote(other, safe='')}/versions", body(v1))
    check("same schema, other subject -> same id", st == 200 and isinstance(r, dict) and r.get("id") == sid, f"{st} {r}")

    st, r = call("GET", f"{base}/schemas/ids/{sid}?deleted=true")
    check("GET /schemas/ids/{id}?deleted=true -> schema", st == 200 and isinstance(r, dict) and r.get("schema") == v1, f"{st} {r}")

    st, r = call("GET", f"{base}/subjects/{quoted}/versions/latest")
    check("GET latest -> subject/version/id/schema",
          st == 200 and isinstance(r, dict) and r.get("subject") == subject and r.get("version") == 1
          and r.get("id") == sid and r.get("schema") == v1, f"{st} {r}")

    st, r = call("POST", f"{base}/subjects/{quoted}?deleted=false", body(v1))
    check("lookup POST /subjects/{s} -> version 1", st == 200 and isinstance(r, dict) and r.get("id") == sid and r.get("version") == 1, f"{st} {r}")

    st, r = call("POST", f"{base}/subjects/{quoted}/versions", body(v2))
    sid2 = r.get("id") if isinstance(r, dict) else None
    check("compatible v2 -> new id", st == 200 and isinstance(sid2, int) and sid2 != sid, f"{st} {r}")
    st, r = call("GET", f"{base}/subjects/{quoted}/versions/latest")
    check("latest is now version 2", st == 200 and isinstance(r, dict) and r.get("version") == 2 and r.get("id") == sid2, f"{st} {r}")
    st, r = call("GET", f"{base}/subjects/{quoted}/versions")
    check("GET /subjects/{s}/versions -> [1, 2]", st == 200 and r == [1, 2], f"{st} {r}")
    st, r = call("GET", f"{base}/subjects")
    check("GET /subjects lists the subject", st == 200 and isinstance(r, list) and subject in r, f"{st}")

    st, r = call("POST", f"{base}/subjects/{quoted}/versions", body(bad))
    check("incompatible schema -> 409", st == 409 and isinstance(r, dict) and r.get("error_code") == 409, f"{st} {r}")

    st, r = call("GET", f"{base}/subjects/no-such-{tag}/versions/latest")
    check("unknown subject -> 404 / 40401", st == 404 and isinstance(r, dict) and r.get("error_code") == 40401, f"{st} {r}")
    st, r = call("GET", f"{base}/subjects/{quoted}/versions/99")
    check("unknown version -> 404 / 40402", st == 404 and isinstance(r, dict) and r.get("error_code") == 40402, f"{st} {r}")
    st, r = call("GET", f"{base}/schemas/ids/2000000000")
    check("unknown id -> 404 / 40403", st == 404 and isinstance(r, dict) and r.get("error_code") == 40403, f"{st} {r}")

    # Wire format: magic 0 + 4-byte big-endian id, as the client builds it; decode and resolve.
    if isinstance(sid, int) and 0 <= sid < 2**32:
        frame = b"\x00" + struct.pack(">I", sid) + b"payload"
        magic, got = frame[0], struct.unpack(">I", frame[1:5])[0]
        st, r = call("GET", f"{base}/schemas/ids/{got}?deleted=true")
        check("wire-format id resolves to the schema", magic == 0 and st == 200 and r.get("schema") == v1, f"{st} {r}")
    else:
        check("wire-format id fits in u32", False, repr(sid))

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
