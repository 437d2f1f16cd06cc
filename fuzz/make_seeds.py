#!/usr/bin/env python3
"""Writes the named seeds of fuzz/corpus/ from proto-core/tests/vectors.txt.

Each seed is a fuzz input (see src/lib.rs): a chunk-size count, the chunk sizes,
then the stream of one vector. Run from anywhere: python3 fuzz/make_seeds.py
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


if __name__ == "__main__":
    main()
