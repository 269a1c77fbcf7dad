# Types of the optional C layout of written JSON (_indent.c; setup.py builds it).

def indent2(text: str, /) -> str:
    """Compact ASCII JSON laid out as json.dumps(..., indent=2) lays it out; ValueError if it is not compact JSON."""
