"""The JSON manifest beside a record file: FILE.tfrecord.gz -> FILE.json, tile size and sources.

Kept apart from records.py so that writing it needs no TensorFlow.
"""
import json


def manifest_path(record_path):
    base = record_path[:-len(".tfrecord.gz")] if record_path.endswith(".tfrecord.gz") else record_path
    return base + ".json"


def write_manifest(path, width, height, sources, shards=None):
    """shards: [{"path": file name, "count": tiles}] when the records are split over several files."""
    with open(path, "w") as f:
        json.dump({"width": width, "height": height, "sources": sources, **({"shards": shards} if shards else {})},
                  f, indent=2)
