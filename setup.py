"""Build the optional native media relay; the gateway runs without it (see gateway/nativerelay.py)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway._mediarelay",
            sources=["gateway/_mediarelay.c", "gateway/_rtcp.c", "gateway/_mixer.c"],
            depends=["gateway/_rtcp.h", "gateway/_mixer.h", "gateway/_opus.h"],
            extra_compile_args=["-std=gnu99", "-O2", "-Wall"],
            libraries=["dl"],
            optional=True,  # a failed compile is a warning: the Python media path remains
        )
    ]
)
