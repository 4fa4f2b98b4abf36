"""Deterministic vectors, their wire encodings, a bounded memo, and the server's token count.

A text's vector depends only on ``(model, dim, text)``: ``blake2b`` of the three seeds a
SHAKE-128 stream whose first ``2 * dim`` bytes are ``dim`` little-endian int16 components;
the row is those components divided by their L2 norm, rounded once to float32. The sum of
squares is exact in float64 (each square < 2**30, at most 2**23 of them), so a row comes out
bit-identical whether it is computed alone or in a batch of any size.
"""

from __future__ import annotations

import binascii
import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DEFAULT_MODEL = "BAAI/bge-m3"
DEFAULT_DIM = 1024
#: Largest vector length served; keeps the exact-sum argument above true.
MAX_DIM = 1 << 16

Matrix = npt.NDArray[np.float32]


def _check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise ValueError(f"dim must be an integer in 1..{MAX_DIM}, got {dim!r}")
    return dim


def _component_bytes(model: str, dim: int, texts: Sequence[str]) -> bytes:
    """``2 * dim`` pseudo-random bytes per text, concatenated."""
    prefix = f"{model}\0{dim}\0".encode()
    size = 2 * dim
    return b"".join(
        [
            hashlib.shake_128(
                hashlib.blake2b(
                    prefix + text.encode("utf-8", "surrogatepass"), digest_size=16
                ).digest()
            ).digest(size)
            for text in texts
        ]
    )


def compute_rows(model: str, dim: int, texts: Sequence[str]) -> Matrix:
    """The ``(len(texts), dim)`` float32 unit rows of ``texts`` (no memo)."""
    _check_dim(dim)
    raw = np.frombuffer(_component_bytes(model, dim, texts), dtype="<i2")
    rows = raw.reshape(len(texts), dim).astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    # An all-zero draw has probability 2**(-16 * dim); guard anyway rather than divide by 0.
    norms[norms == 0] = 1.0
    rows /= norms[:, None]
    return rows.astype(np.float32)


def expected_vector(text: str, model: str = DEFAULT_MODEL, dim: int = DEFAULT_DIM) -> Matrix:
    """The float32 vector of shape ``(dim,)`` and unit L2 norm the simulator serves for ``text``.

    Deterministic: seeded from ``blake2b(model, dim, text)``; equal bit for bit to what a
    client decodes from the simulator's answer (base64 or float lists).
    """
    row: Matrix = compute_rows(model, dim, [text])[0]
    return row


def expected_matrix(
    texts: Sequence[str], model: str = DEFAULT_MODEL, dim: int = DEFAULT_DIM
) -> Matrix:
    """The ``(len(texts), dim)`` float32 matrix whose row ``i`` is ``expected_vector(texts[i])``."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    return compute_rows(model, dim, list(texts))


def count_tokens(text: str) -> int:
    """The simulator's own token count: CJK (wide) characters 1 each, others 1 per 4, plus 1.

    Never above :func:`embedsdk.estimate_tokens`, so a client budgeting with that estimate
    stays under a server TPM limit equal to its own. Wide characters are found from the UTF-8
    length (three bytes each) without a Python loop over characters.
    """
    n = len(text)
    wide = (len(text.encode("utf-8", "surrogatepass")) - n) // 2
    return wide + (n - wide + 3) // 4 + 1


def b64_row(row: Matrix) -> bytes:
    """Base64 (ASCII bytes) of a row as little-endian float32, as OpenAI's API sends it."""
    if row.dtype.byteorder == ">":  # pragma: no cover - big-endian hosts only
        row = row.astype("<f4")
    return binascii.b2a_base64(row.data, newline=False)


def _pack(chars: str) -> int:
    """Four ASCII characters as one little-endian uint32."""
    b = chars.encode()
    return b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24


# Each value prints as 16 bytes, four little-endian uint32 words looked up in these tables:
# "[sign]d.d" "dddd" "ddde" "[+-]dd," -- e.g. " 1.20994903e-03," (JSON allows the space).
_HEAD = np.array([_pack(f"\0{k // 10}.{k % 10}") for k in range(100)], np.uint32)
_MID = np.array([_pack(f"{k:04d}") for k in range(10_000)], np.uint32)
_TAIL = np.array([_pack(f"{k:03d}e") for k in range(1000)], np.uint32)
_EXP = np.array([_pack(f"{k:+03d},") for k in range(-99, 100)], np.uint32)
_POW10 = 10.0 ** np.arange(-80, 81)  # _POW10[k + 80] == 10**k
_LOG10_2 = float(np.log10(2.0))


def float_rows_json(rows: Matrix) -> list[bytes]:
    """Each row as a JSON list of its float32 values with 9 significant digits.

    Nine digits put the decimal within 5e-9 (relative) of the float32, while its neighbours
    are at least 6e-8 away: a client that parses the number to float64 and casts to float32
    gets the very same bits (checked over millions of float32 bit patterns in the tests).
    Vectorised with numpy: about 20 times faster than ``json.dumps`` of the floats.
    """
    n, dim = rows.shape
    x = rows.astype(np.float64).ravel()
    ax = np.abs(x)
    # Decimal exponent from the binary one: the true one is e or e + 1, fixed just below.
    e = np.floor((np.frexp(ax)[1] - 1) * _LOG10_2).astype(np.intp)
    e[ax == 0] = 0
    m = np.rint(ax * _POW10[88 - e])  # the nine digits, as an integer-valued float
    over = m >= 1e9
    if over.any():
        e[over] += 1
        m[over] = np.rint(ax[over] * _POW10[88 - e[over]])
    digits = m.astype(np.int64)
    words = np.empty((x.size, 4), np.uint32)
    sign = np.where(np.signbit(x), ord("-"), ord(" ")).astype(np.uint32)
    words[:, 0] = _HEAD.take(digits // 10_000_000) | sign
    words[:, 1] = _MID.take(digits // 1000 % 10_000)
    words[:, 2] = _TAIL.take(digits % 1000)
    words[:, 3] = _EXP.take(e + 99)
    text = words.view(np.uint8).reshape(n, dim * 16)
    return [b"[" + row[:-1].tobytes() + b"]" for row in text]  # [:-1]: the last comma


class VectorMemo:
    """A bounded LRU of served vectors as base64, keyed by ``(model, dim, text)``.

    Base64 is what most answers need; a float answer decodes it back (bit-exact, and cheap
    next to printing the floats). ``max_bytes`` bounds the memory of the stored base64
    (about 5.5 KB per 1024-d vector). Single-threaded: use it from the server's loop only.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def b64(self, model: str, dim: int, texts: Sequence[str]) -> list[bytes]:
        """The base64 of each text's vector, in order; the missing ones computed in one batch."""
        entries = self._entries
        found: list[bytes | None] = []
        missing: list[int] = []
        for i, text in enumerate(texts):
            key = (model, dim, text)
            value = entries.get(key)
            if value is None:
                missing.append(i)
            else:
                entries.move_to_end(key)
            found.append(value)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            rows = compute_rows(model, dim, [texts[i] for i in missing])
            for i, row in zip(missing, rows):
                found[i] = value = b64_row(row)
                self._put((model, dim, texts[i]), value)
        return found  # type: ignore[return-value]  # every None was filled above

    def rows(self, model: str, dim: int, texts: Sequence[str]) -> Matrix:
        """The ``(len(texts), dim)`` float32 rows, through the memo."""
        raw = b"".join([binascii.a2b_base64(b) for b in self.b64(model, dim, texts)])
        return np.frombuffer(raw, dtype="<f4").reshape(len(texts), dim)

    def _put(self, key: tuple[str, int, str], value: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._entries[key] = value
        self._bytes += len(value)
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            self._bytes -= len(self._entries.popitem(last=False)[1])

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
