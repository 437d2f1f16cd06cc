#!/usr/bin/env python3
"""Writes the named seeds of fuzz/corpus/ from proto-core/tests/vectors.txt, and
the WebSocket seeds of fuzz/corpus/ws_decoder/ from the client frames below.

Each seed is a fuzz input (see src/lib.rs): a chunk-size count, the chunk sizes,
then the stream of one vector (or of WebSocket frames). Run from anywhere:
python3 fuzz/make_seeds.py
"""
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent / "proto-core" / "tests" / "vectors.txt"

# seed file name -> (decoder, vector name, chunk sizes)
SEEDS = {
    "frame_decoder": {
        "seed_chat": ("frame", "chat hi", []),
        "seed_chat_1024": ("frame", "chat 1024 bytes, the limit", [0x40]),
        "seed_chat_too_long": ("frame", "chat too long then chat", [1, 7]),
        "seed_broadcast_v4": ("frame", "broadcast v4", []),
        "seed_broadcast_v6_largest": ("frame", "broadcast of the largest body (1052 bytes)", [3]),
        "seed_notice_welcome": ("frame", "notice welcome with peer", [1]),
        "seed_notice_error": ("frame", "notice error with peer", []),
        "seed_ping": ("frame", "ping", []),
        "seed_ack": ("frame", "ack", []),
        "seed_unknown_kind": ("frame", "unknown kind whose body looks like frames", [2]),
        "seed_every_error": ("frame", "every error recovers", [1, 2, 3]),
        "seed_stream": ("frame", "chat ping bye", [5]),
    },
    "line_decoder": {
        "seed_crlf": ("line", "crlf and empty lines", [1]),
        "seed_1024_crlf": ("line", "1024 bytes and CRLF: the CR is not counted", [0x40]),
        "seed_too_long": ("line", "1025 bytes then a line", [0xff, 3]),
        "seed_invalid_utf8": ("line", "invalid UTF-8 then a line", []),
        "seed_unterminated": ("line", "unterminated last line", []),
        "seed_controls": ("line", "controls are returned as they are", [2]),
        "seed_telnet_ctrl_c": ("telnet", "Ctrl-C: interrupt process, then do timing-mark", [3]),
        "seed_telnet_subnegotiation": ("telnet", "subnegotiation and other commands dropped", [1]),
        "seed_telnet_stray_sb": ("telnet", "stray subnegotiation ends with its line", [2]),
        "seed_telnet_sb_limit": ("telnet", "subnegotiation over 64 bytes abandoned with its line", [5]),
    },
}

# A client's frames (RFC 6455): FIN/RSV/opcode byte, then the payload, masked.
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def ws(first, payload, masked=True, length=None):
    """One client frame; `length` overrides the payload length in the header."""
    n = len(payload) if length is None else length
    out = bytearray([first])
    bit = 0x80 if masked else 0
    if n < 126:
        out.append(bit | n)
    elif n < 65536:
        out += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        out += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return bytes(out + payload)
    out += MASK
    return bytes(out + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload)))


TEXT, BINARY, CONT, CLOSE, PING, PONG, FIN = 0x01, 0x02, 0x00, 0x08, 0x09, 0x0A, 0x80
A1024 = b"a" * 1024

# seed file name -> (frames, chunk sizes)
WS_SEEDS = {
    "seed_text": (ws(FIN | TEXT, b"hello"), []),
    "seed_text_ping_close": (
        ws(FIN | TEXT, "h\u00e9llo".encode())
        + ws(FIN | PING, b"p")
        + ws(FIN | TEXT, b"")
        + ws(FIN | CLOSE, (1000).to_bytes(2, "big")),
        [1, 3],
    ),
    "seed_ping_pong": (ws(FIN | PING, b"are you there") + ws(FIN | PONG, b""), []),
    "seed_close": (ws(FIN | CLOSE, (1001).to_bytes(2, "big") + b"bye"), [2]),
    "seed_fragmented": (
        ws(TEXT, b"one ") + ws(FIN | PING, b"") + ws(CONT, b"two ") + ws(FIN | CONT, b"three"),
        [5],
    ),
    "seed_text_1024": (ws(FIN | TEXT, A1024), [0x40]),
    "seed_too_long": (ws(FIN | TEXT, A1024 + b"b") + ws(FIN | TEXT, b"after"), [0x80, 3]),
    "seed_too_long_fragments": (
        ws(TEXT, A1024) + ws(FIN | CONT, b"b") + ws(FIN | TEXT, b"after"),
        [0xFF, 7],
    ),
    "seed_binary_bad_utf8": (
        ws(FIN | BINARY, b"\x00\x01") + ws(FIN | TEXT, b"\xff\xfe") + ws(FIN | TEXT, b"fine"),
        [],
    ),
    "seed_huge_length": (ws(FIN | BINARY, b"cut short", length=1 << 40), [4]),
    "seed_unmasked": (ws(FIN | TEXT, b"a", masked=False), []),
}


def decode(field):
    out = bytearray()
    for token in field.split():
        if "*" in token:
            byte, count = token.split("*")
            out += bytes([int(byte, 16)]) * int(count)
        else:
            out += bytes.fromhex(token)
    return bytes(out)


def main():
    vectors = {}
    for line in VECTORS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            decoder, name, inp, _ = [f.strip() for f in line.split(" | ")]
            vectors[(decoder, name)] = decode(inp)
    for target, seeds in SEEDS.items():
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for seed, (decoder, name, sizes) in seeds.items():
            data = bytes([len(sizes)] + sizes) + vectors[(decoder, name)]
            (folder / seed).write_bytes(data)
    folder = HERE / "corpus" / "ws_decoder"
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (stream, sizes) in WS_SEEDS.items():
        (folder / seed).write_bytes(bytes([len(sizes)] + sizes) + stream)


if __name__ == "__main__":
    main()
