# Types of the stack sampler's frame walk (_frames.c; setup.py builds it).
from types import CodeType
from typing import Optional, Sequence

def sample(idents: Optional[Sequence[int]], max_depth: int, /) -> tuple[tuple[int, tuple[CodeType | int, ...]], ...]:
    """(ident, (code, lasti, code, lasti, ...)) innermost first, for each of these threads (None: all) that
    has a Python frame now, read without giving the GIL up."""
