"""The optional C extension; everything else about the package is in pyproject.toml.

``imagenet_prep.loaders._jpegcrop`` decodes only a training crop of a JPEG with
libjpeg-turbo (see its source). It needs libjpeg-turbo's headers (Debian:
libjpeg62-turbo-dev). Without them the package still installs, and the loaders decode whole
images.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "imagenet_prep.loaders._jpegcrop",
            ["src/imagenet_prep/loaders/_jpegcrop.c"],
            libraries=["jpeg"],
            optional=True,
        )
    ]
)
