"""Build hook for the optional C scanner (perfkit.trace._scan).

Everything else is in pyproject.toml. The extension is optional: where it does
not compile, perfkit reads traces with its pure-Python (msgspec) decoder.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "perfkit.trace._scan",
            ["perfkit/trace/_scan.c"],
            optional=True,
            extra_compile_args=["-O3"],
        )
    ]
)
