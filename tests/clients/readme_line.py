"""Run one line of the README's "Which line loads which output" table against a build.

``python -m tests.clients.readme_line CLIENT OUTPUT OUT`` takes the row whose first two cells
start with CLIENT and OUTPUT, puts OUT's path in place of ``OUT`` in its line, runs the line as
written and prints ``{"count": images of the training split, "labels": their labels (sorted,
or null where the client gives folder indexes)}``.
"""

from __future__ import annotations

import glob
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def table_line(client: str, output: str) -> str:
    text = README.read_text("utf-8")
    section = text.split("## Which line loads which output", 1)[1].split("\n## ", 1)[0]
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith(client) and cells[1].startswith(f"`{output}"):
            found = re.search(r"`(ds = .*?)`(?: |$|,)", cells[2] + " ")
            if found:
                return found.group(1)
    raise SystemExit(f"no line for {client} / {output} in {README}")


def run(client: str, output: str, out: str) -> dict[str, Any]:
    line = table_line(client, output).replace('"OUT/', f'"{out}/')
    scope: dict[str, Any] = {"glob": glob}
    if client == "TensorFlow":
        import tensorflow as tf

        scope["tf"] = tf
        exec(line, scope)
        return {"count": sum(1 for _ in scope["ds"]), "labels": None}
    if client == "torchvision":
        import torchvision

        scope["torchvision"] = torchvision
        exec(line, scope)
        return {"count": len(scope["ds"]), "labels": None}
    if client == "webdataset":
        import webdataset as wds

        scope["wds"] = wds
        exec(line, scope)
        return {"labels": sorted(int(c) for _, c in scope["ds"])}
    if client == "NVIDIA DALI":
        from nvidia.dali import fn, pipeline_def

        scope["fn"] = fn

        @pipeline_def(batch_size=8, num_threads=1, device_id=None)  # type: ignore[misc]
        def pipeline() -> Any:
            exec(line, scope)
            return tuple(scope["ds"])

        pipe = pipeline()
        pipe.build()
        size = next(iter(pipe.reader_meta().values()))["epoch_size"]
        labels = []
        for _ in range(math.ceil(size / 8)):
            _jpg, cls = pipe.run()
            labels.extend(int(bytes(cls.at(i))) for i in range(len(cls)))
        return {"labels": sorted(labels[:size])}
    if client == "Hugging Face":
        import datasets

        scope["datasets"] = datasets
        exec(line, scope)
        train = scope["ds"]["train"]
        column = "cls" if "cls" in train.column_names else "label"
        return {"labels": sorted(train[column])}
    if client == "timm":
        import timm.data

        scope["timm"] = timm
        exec(line, scope)
        return {"labels": sorted(int(target) for _, target in scope["ds"])}
    raise SystemExit(f"unknown client {client}")


if __name__ == "__main__":
    result = run(*sys.argv[1:4])
    if "count" not in result:
        result["count"] = len(result["labels"])
    print(json.dumps(result))
