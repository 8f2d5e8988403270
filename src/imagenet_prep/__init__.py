"""imagenet-prep: the raw ILSVRC2012 download to training-ready data in one streaming pass."""

from __future__ import annotations

__version__ = "0.1.0"
