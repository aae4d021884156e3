"""The JSON manifest beside a record file: FILE.tfrecord.gz -> FILE.json, tile size and sources.

Kept apart from records.py so that writing and reading it needs no TensorFlow. Each source
records the scale it was cut at (extract_tiles.py's --video-scale and --image-side): a video's
`"scale"` ("fit", the whole frame shrunk to the tile, or S, tile-size crops of the frame shown at
S times its size) and an image folder's `"side"` ("fit", or N, crops of each image with its
shorter side at N pixels). A manifest written before these fields means "fit".
"""
import json
import re

FIT = "fit"


def manifest_path(record_path):
    base = record_path[:-len(".tfrecord.gz")] if record_path.endswith(".tfrecord.gz") else record_path
    return base + ".json"


def shard_base(path):
    """FILE for FILE-00000-of-00004.tfrecord.gz, else None."""
    match = re.fullmatch(r"(.*)-\d{5}-of-\d{5}\.tfrecord\.gz", path)
    return match.group(1) if match else None


def listing_path(record_file):
    """The manifest of a record file: beside it, or the one of all its shards."""
    base = shard_base(record_file)
    return manifest_path(base + ".tfrecord.gz" if base else record_file)


def write_manifest(path, width, height, sources, shards=None):
    """shards: [{"path": file name, "count": tiles}] when the records are split over several files."""
    with open(path, "w") as f:
        json.dump({"width": width, "height": height, "sources": sources, **({"shards": shards} if shards else {})},
                  f, indent=2)


def read_listing(record_file):
    """The manifest of a record file as a dict, or None when there is none readable."""
    try:
        with open(listing_path(record_file)) as f:
            listing = json.load(f)
    except (OSError, ValueError):
        return None
    return listing if isinstance(listing, dict) else None


def source_scale(entry):
    """A manifest source's scale: {"scale": ...} for a video, {"side": ...} for images."""
    key = "scale" if entry.get("kind") == "video" else "side"
    return {key: entry.get(key, FIT)}


def scales(record_files):
    """(scales, render_scale, unlisted) of the sources in these record files.

    scales: {source name: {"scale": "fit" or S} or {"side": "fit" or N}}, "mixed" where
    manifests disagree about a source; render_scale: S when every video source was cut as crops at
    that one scale S, else None (a model then renders at the frame's own size); unlisted: the files
    without a readable manifest, whose sources are not known."""
    found, unlisted = {}, []
    for path in dict.fromkeys(record_files):
        listing = read_listing(path)
        if listing is None:
            unlisted.append(path)
            continue
        for entry in listing.get("sources", []):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            scale = source_scale(entry)
            known = found.setdefault(entry["name"], scale)
            if known != scale:
                found[entry["name"]] = {key: "mixed" for key in known}
    videos = {value["scale"] for value in found.values() if "scale" in value}
    single = next(iter(videos)) if len(videos) == 1 else None
    render_scale = single if isinstance(single, (int, float)) and not isinstance(single, bool) else None
    return found, render_scale, unlisted
