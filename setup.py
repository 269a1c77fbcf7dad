"""Build hook for the optional C extensions: the trace scanner (perfkit.trace._scan) and the JSON
layout of written documents (perfkit._indent).

Everything else is in pyproject.toml. Both are optional: where they do not compile, perfkit reads
traces with its pure-Python (msgspec) decoder and lays out JSON with msgspec.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "perfkit.trace._scan",
            ["perfkit/trace/_scan.c"],
            optional=True,
            extra_compile_args=["-O3"],
        ),
        Extension("perfkit._indent", ["perfkit/_indent.c"], optional=True, extra_compile_args=["-O3"]),
    ]
)
