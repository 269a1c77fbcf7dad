# Types of the optional C scanner (_scan.c; setup.py builds it).
from _typeshed import ReadableBuffer

def scan(buffer: ReadableBuffer, bare: int = -1, /) -> dict[str, bytes]:
    """The columns of a run of events (bare=1) or a JSON array (bare=0; -1: by the first byte), each as bytes.

    Raises ValueError(kind, message, offset, event_offset) on malformed or unsupported input.
    """

def close_bracket(buffer: ReadableBuffer, lo: int, hi: int, /) -> tuple[int, int] | None:
    """``(start, end)`` of the first ``}`` followed by optional whitespace and ``]`` in ``buffer[lo:hi]``,
    or None: the next match of ``re.compile(rb"\\}\\s*\\]")``."""
