"""imagenet-prep: the raw ILSVRC2012 download to training-ready data in one streaming pass.

The public API::

    from imagenet_prep import BuildConfig, build, verify
    result = build(BuildConfig(source="download", output="out", formats=("tfrecord",)))
    assert verify("out").ok
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from .lazy import lazy_getattr

if TYPE_CHECKING:
    from .config import BuildConfig
    from .errors import DataError, ImagenetPrepError, UsageError
    from .pipeline import BuildResult, build
    from .verification import VerifyResult, verify

# Imported on first use, so that `import imagenet_prep.labels` (or the CLI's start-up)
# does not pay for the whole pipeline.
_LAZY = {
    "BuildConfig": "config",
    "BuildResult": "pipeline",
    "DataError": "errors",
    "ImagenetPrepError": "errors",
    "UsageError": "errors",
    "VerifyResult": "verification",
    "build": "pipeline",
    "verify": "verification",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "BuildConfig",
    "BuildResult",
    "DataError",
    "ImagenetPrepError",
    "UsageError",
    "VerifyResult",
    "__version__",
    "build",
    "verify",
]
