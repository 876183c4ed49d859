"""The C sources of lasres's C ops (``lasres/ops/c/``), read once."""
import functools
import os
import zlib

_DIR = os.path.join(os.path.dirname(__file__), "c")


@functools.lru_cache(maxsize=None)
def c_source(*names: str) -> str:
    """The files ``names`` of ``lasres/ops/c/`` joined in order (shared
    headers first), as one op's support code."""
    parts = []
    for name in names:
        with open(os.path.join(_DIR, name)) as f:
            parts.append(f.read())
    return "\n".join(parts)


def c_source_crc(*names: str) -> int:
    """CRC-32 of :func:`c_source` ``(*names)``, for ``c_code_cache_version``."""
    return zlib.crc32(c_source(*names).encode())

