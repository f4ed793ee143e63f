#!/usr/bin/env python3
"""Tiny CQL native-protocol (v4) client used as a readiness check.

Speaks just enough of the protocol, with the standard library only:
STARTUP -> READY, then QUERY -> RESULT. By default it runs
`SELECT release_version FROM system.local` and prints the version.

    cqlping.py [--host 127.0.0.1] [--port 9042] [--timeout 5] [-e QUERY]

Exit status: 0 on success, 1 on a CQL error or an unexpected answer,
2 when the server cannot be reached. With -e, each row is printed as the
column values separated by " | " (text/numbers/uuids decoded, blobs in hex).
"""

import argparse
import ipaddress
import socket
import struct
import sys
import uuid

VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT = 0x07, 0x08
RESULT_VOID, RESULT_ROWS, RESULT_SET_KEYSPACE, RESULT_SCHEMA_CHANGE = 1, 2, 3, 5
CONSISTENCY_ONE = 0x0001

OPCODE_NAMES = {0x00: "ERROR", 0x02: "READY", 0x03: "AUTHENTICATE",
                0x06: "SUPPORTED", 0x08: "RESULT", 0x0C: "EVENT"}


class CQLError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise CQLError("truncated frame body")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self):
        return self.take(1)[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        return self.take(self.short()).decode("utf-8", "replace")

    def bytes(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def type_option(self):
        """Returns a readable type name; consumes nested options."""
        tid = self.short()
        simple = {0x01: "ascii", 0x02: "bigint", 0x03: "blob", 0x04: "boolean",
                  0x05: "counter", 0x06: "decimal", 0x07: "double", 0x08: "float",
                  0x09: "int", 0x0B: "timestamp", 0x0C: "uuid", 0x0D: "varchar",
                  0x0E: "varint", 0x0F: "timeuuid", 0x10: "inet", 0x11: "date",
                  0x12: "time", 0x13: "smallint", 0x14: "tinyint", 0x15: "duration"}
        if tid in simple:
            return simple[tid]
        if tid == 0x00:
            return "custom(%s)" % self.string()
        if tid in (0x20, 0x22):  # list, set
            return ("list" if tid == 0x20 else "set", self.type_option())
        if tid == 0x21:
            return ("map", self.type_option(), self.type_option())
        if tid == 0x30:  # UDT
            self.string()
            name = self.string()
            for _ in range(self.short()):
                self.string()
                self.type_option()
            return "udt(%s)" % name
        if tid == 0x31:
            return "tuple<%s>" % ",".join(self.type_option() for _ in range(self.short()))
        raise CQLError("unknown type id 0x%04x" % tid)


def decode(typ, raw):
    if raw is None:
        return "null"
    if isinstance(typ, tuple):  # list/set/map: [int n] then n [bytes] (or n pairs)
        reader = Reader(raw)
        n = reader.int()
        if typ[0] == "map":
            items = ["%s: %s" % (decode(typ[1], reader.bytes()), decode(typ[2], reader.bytes()))
                     for _ in range(n)]
            return "{%s}" % ", ".join(items)
        items = [decode(typ[1], reader.bytes()) for _ in range(n)]
        return ("[%s]" if typ[0] == "list" else "{%s}") % ", ".join(items)
    if typ in ("ascii", "varchar"):
        return raw.decode("utf-8", "replace")
    if typ in ("bigint", "counter", "int", "smallint", "tinyint", "varint", "timestamp"):
        return str(int.from_bytes(raw, "big", signed=True))
    if typ in ("uuid", "timeuuid") and len(raw) == 16:
        return str(uuid.UUID(bytes=raw))
    if typ == "boolean" and len(raw) == 1:
        return "true" if raw[0] else "false"
    if typ == "double" and len(raw) == 8:
        return repr(struct.unpack(">d", raw)[0])
    if typ == "float" and len(raw) == 4:
        return repr(struct.unpack(">f", raw)[0])
    if typ == "inet" and len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return "0x" + raw.hex()


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise CQLError("connection closed by server")
        buf += chunk
    return bytes(buf)


def request(sock, stream, opcode, body):
    sock.sendall(struct.pack(">BBhBi", VERSION, 0, stream, opcode, len(body)) + body)
    while True:
        version, flags, rstream, ropcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
        rbody = recv_exact(sock, length)
        if version & 0x7F != VERSION:
            raise CQLError("server answered with protocol version %d" % (version & 0x7F))
        if rstream != stream:  # e.g. an EVENT on stream -1: ignore it
            continue
        reader = Reader(rbody)
        if flags & 0x02:  # tracing id
            reader.take(16)
        if flags & 0x08:  # warnings: [string list]
            for _ in range(reader.short()):
                print("cqlping: server warning: %s" % reader.string(), file=sys.stderr)
        if flags & 0x04:  # custom payload: [bytes map]
            for _ in range(reader.short()):
                reader.string()
                reader.bytes()
        if ropcode == OP_ERROR:
            code = reader.int()
            raise CQLError("server error 0x%04x: %s" % (code, reader.string()))
        return ropcode, reader


def string_map(pairs):
    out = struct.pack(">H", len(pairs))
    for key, value in pairs.items():
        for s in (key, value):
            raw = s.encode()
            out += struct.pack(">H", len(raw)) + raw
    return out


def run(host, port, timeout, query):
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        print("cqlping: cannot connect to %s:%d: %s" % (host, port, exc), file=sys.stderr)
        return 2, []
    with sock:
        sock.settimeout(timeout)
        opcode, _ = request(sock, 1, OP_STARTUP, string_map({"CQL_VERSION": "3.0.0"}))
        if opcode == OP_AUTHENTICATE:
            raise CQLError("server requires authentication (cqlping supports none)")
        if opcode != OP_READY:
            raise CQLError("expected READY, got %s" % OPCODE_NAMES.get(opcode, hex(opcode)))

        q = query.encode()
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", CONSISTENCY_ONE, 0)
        opcode, reader = request(sock, 2, OP_QUERY, body)
        if opcode != OP_RESULT:
            raise CQLError("expected RESULT, got %s" % OPCODE_NAMES.get(opcode, hex(opcode)))
        kind = reader.int()
        if kind != RESULT_ROWS:
            names = {RESULT_VOID: "void", RESULT_SET_KEYSPACE: "set_keyspace",
                     RESULT_SCHEMA_CHANGE: "schema_change"}
            return 0, [["(%s)" % names.get(kind, "result kind %d" % kind)]]

        flags, ncols = reader.int(), reader.int()
        if flags & 0x0002:  # has_more_pages
            reader.bytes()
        types = []
        if not flags & 0x0004:  # metadata present
            if flags & 0x0001:  # global table spec
                reader.string()
                reader.string()
            for _ in range(ncols):
                if not flags & 0x0001:
                    reader.string()
                    reader.string()
                reader.string()  # column name
                types.append(reader.type_option())
        else:
            types = ["blob"] * ncols
        rows = []
        for _ in range(reader.int()):
            rows.append([decode(types[i], reader.bytes()) for i in range(ncols)])
        return 0, rows


def main():
    ap = argparse.ArgumentParser(description="CQL readiness check (protocol v4, stdlib only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per socket operation")
    ap.add_argument("-e", "--execute", metavar="QUERY",
                    help="run this CQL statement instead and print its rows")
    args = ap.parse_args()

    query = args.execute or "SELECT release_version FROM system.local"
    try:
        status, rows = run(args.host, args.port, args.timeout, query)
    except (CQLError, OSError) as exc:  # socket.timeout is an OSError
        print("cqlping: %s:%d: %s" % (args.host, args.port, exc), file=sys.stderr)
        return 1
    if status != 0:
        return status
    if args.execute is None:
        if not rows or rows[0][0] == "null":
            print("cqlping: system.local returned no release_version", file=sys.stderr)
            return 1
        print(rows[0][0])
    else:
        for row in rows:
            print(" | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
