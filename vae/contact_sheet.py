"""A contact sheet of tiles: one labelled row per source."""
import cv2
import numpy as np

from vae.images import grid


def label_strip(text, width, height=22):
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def contact_sheet(samples, counts, per_row=8, gap=2):
    """samples: {source: [uint8 tiles]}, counts: {source: n} -> one RGB image."""
    blocks = []
    zoom = max(1, 128 // next(iter(samples.values()))[0].shape[1])  # tiny tiles drawn bigger
    for source in sorted(samples):
        tiles = [np.repeat(np.repeat(t, zoom, 0), zoom, 1) for t in samples[source]]
        row = grid([tiles], gap, columns=per_row)
        blocks += [label_strip(f"{source}: {counts[source]} tiles", row.shape[1]), row,
                   np.full((gap * 3, row.shape[1], 3), 255, np.uint8)]
    return np.concatenate(blocks, axis=0)
