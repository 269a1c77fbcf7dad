"""Build hook for the optional C extensions: the trace scanner (perfkit.trace._scan), the JSON
layout of written documents (perfkit._indent) and the stack sampler's frame walk
(perfkit.collect._frames).

Everything else is in pyproject.toml. All are optional: where they do not compile, perfkit reads
traces with its pure-Python (msgspec) decoder, lays out JSON with msgspec, and takes no stack
samples (the sampler's walk is safe only in C: perfkit/collect/_frames.c says why).
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
        Extension("perfkit.collect._frames", ["perfkit/collect/_frames.c"], optional=True, extra_compile_args=["-O2"]),
    ]
)
