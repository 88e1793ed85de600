"""Sequential reader for dlib's binary serialization primitives.

dlib writes integers as one control byte (low 4 bits: byte count, bit 0x80: negative) followed by the
magnitude little-endian; floats as an integer mantissa and an integer exponent; bools as ASCII '0'/'1';
strings and vectors as a length followed by the items; tensors as raw little-endian float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# dlib marks non-finite floats with reserved exponents.
_INF, _NINF, _NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization format where the reader expected them to."""


@dataclass
class Stream:
    data: bytes
    pos: int = 0

    @classmethod
    def open(cls, path) -> "Stream":
        with open(path, "rb") as f:
            return cls(f.read())

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} more)")

    def byte(self) -> int:
        self._need(1)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int(self) -> int:
        ctrl = self.byte()
        size = ctrl & 0x0F
        if ctrl & 0x70 or size > 8:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at byte {self.pos - 1}")
        self._need(size)
        value = int.from_bytes(self.data[self.pos:self.pos + size], "little")
        self.pos += size
        return -value if ctrl & 0x80 else value

    def peek_int(self) -> int:
        start = self.pos
        try:
            return self.int()
        finally:
            self.pos = start

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent == _INF:
            return float("inf")
        if exponent == _NINF:
            return float("-inf")
        if exponent == _NAN:
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self) -> bool:
        b = self.byte()
        if b not in (0x30, 0x31):
            raise DlibFormatError(f"bad bool byte 0x{b:02x} at byte {self.pos - 1}")
        return b == 0x31

    def string(self) -> str:
        n = self.int()
        self._need(n)
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def looks_like_name(self) -> bool:
        """True when a short identifier string (a layer name such as "con_4") starts here."""
        start = self.pos
        try:
            n = self.int()
            if not 2 <= n <= 64 or self.pos + n > len(self.data):
                return False
            text = self.data[self.pos:self.pos + n]
            return all(c == 0x5F or 0x30 <= c <= 0x39 or 0x61 <= c <= 0x7A for c in text)
        except DlibFormatError:
            return False
        finally:
            self.pos = start

    def tensor(self) -> np.ndarray:
        """A dlib resizable_tensor: version 2, (num_samples, k, nr, nc), raw float32."""
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"unknown tensor version {version} at byte {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        self._need(4 * count)
        arr = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos += 4 * count
        return arr.astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """A dlib alias_tensor: only a shape (a view into a layer's params tensor)."""
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version} at byte {self.pos}")
        return tuple(self.int() for _ in range(4))
