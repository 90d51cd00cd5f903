"""Read an agent's answer within bounds: bytes received and bytes inflated both stop at a cap.

Neither HTTP client's own decompression is used: both inflate a whole received chunk at once,
so a 64 KiB gzip chunk could become 64 MiB in memory before any check. Here zlib inflates at
most one byte past the cap.
"""

from __future__ import annotations

import zlib

from models.errors import BadReport

#: Content encodings the product asks for and inflates itself.
ACCEPT_ENCODING = "gzip, deflate"
DEFAULT_MAX_BYTES = 1024 * 1024


class BoundedBody:
    """Collect a body chunk by chunk, inflating gzip or deflate, refusing it past ``max_bytes``."""

    def __init__(self, encoding: str | None, max_bytes: int, declared_length: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.received = 0
        self._parts: list[bytes] = []
        self._size = 0
        name = (encoding or "identity").strip().lower()
        if name in ("", "identity"):
            self._inflater = None
        elif name in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header
        else:
            raise BadReport("body", f"has Content-Encoding {name[:40]!r}; only gzip and deflate are read")
        if declared_length is not None and declared_length > max_bytes:
            raise BadReport("body", f"is {declared_length} bytes, over the {max_bytes}-byte limit")

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk as received.

        Raises:
            BadReport: the body is over the limit as received or once inflated, or is not valid
                gzip/deflate.
        """
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise BadReport("body", f"is over the {self.max_bytes}-byte limit")
        if self._inflater is None:
            self._parts.append(chunk)
            return
        try:
            out = self._inflater.decompress(chunk, self.max_bytes - self._size + 1)
        except zlib.error as exc:
            raise BadReport("body", f"is not valid gzip/deflate ({exc})") from None
        self._size += len(out)
        self._parts.append(out)
        if self._size > self.max_bytes or self._inflater.unconsumed_tail:
            raise BadReport(
                "body", f"inflates past the {self.max_bytes}-byte limit (received {self.received} bytes)"
            )

    def content(self) -> bytes:
        """The whole body, inflated.

        Raises:
            BadReport: the compressed stream is cut short.
        """
        if self._inflater is not None and not self._inflater.eof:
            raise BadReport("body", "ends inside its gzip/deflate stream")
        return b"".join(self._parts)
