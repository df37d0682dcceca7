"""The messages the interop tests exchange, generated exactly as
`interop_websockets.rs` generates them (keep the two in step)."""

SIZES = [0, 1, 64 << 10, 4 << 20]

_TEXT_UNIT = "κόσμε-dialtone "
_BINARY_FILLER = b"dialtone-binary!" * 64  # 1 KiB, compressible
_MASK64 = (1 << 64) - 1


def text(n: int) -> str:
    """`n` bytes of UTF-8 (cut down to a char boundary); "x" for 1 byte."""
    if n == 1:
        return "x"
    unit = _TEXT_UNIT.encode()
    raw = (unit * (n // len(unit) + 1))[:n]
    return raw.decode("utf-8", errors="ignore")


def binary(n: int) -> bytes:
    """`n` bytes: 1 KiB blocks, alternately LCG output (incompressible) and a
    repeated filler (compressible)."""
    state = 0x0123_4567_89AB_CDEF
    out = bytearray()
    block = 0
    while len(out) < n:
        if block % 2 == 0:
            for _ in range(256):
                state = (state * 6364136223846793005 + 1442695040888963407) & _MASK64
                out += (state >> 32).to_bytes(4, "little")
        else:
            out += _BINARY_FILLER
        block += 1
    return bytes(out[:n])


def all_messages():
    """The 8 messages, in order: for each size, text then binary."""
    for n in SIZES:
        yield text(n)
        yield binary(n)
