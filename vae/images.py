"""Still images: loading any common format as 8-bit RGB, and cutting tiles from them."""
import os

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def find_images(folder):
    """Every image file under `folder`, recursively, in a stable order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.join(root, name))
    return found


def to_rgb8(image):
    """OpenCV's decoded array (gray, BGR, BGRA; 8 or 16 bit) as 8-bit RGB."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = to_uint8(image)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        # Transparent parts become white, like paper under a cut-out.
        alpha = image[:, :, 3:4].astype(np.float32) / 255
        blended = image[:, :, :3].astype(np.float32) * alpha + 255 * (1 - alpha)
        image = (blended + 0.5).astype(np.uint8)
    return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)


def load_rgb(path):
    """An image file as uint8 RGB, or None when it cannot be decoded."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    # JPEGs are read in colour so that their EXIF orientation is applied; other formats
    # unchanged so that 16-bit depth and alpha survive until to_rgb8 handles them.
    jpeg = path.lower().endswith((".jpg", ".jpeg"))
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if jpeg else cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    return to_rgb8(image)


def aspect_crop_box(width, height, tile_width, tile_height):
    """The largest (w, h) inside width x height with the tile's aspect ratio."""
    target = tile_width / tile_height
    if width / height > target:
        return max(1, round(height * target)), height
    return width, max(1, round(width / target))


def cut_tiles(image, size, crops=1, rng=None):
    """`crops` tiles of `size` (w, h) from an image, aspect kept, area-interpolated.

    The first tile is the centred crop of the whole picture; further ones are random
    crops of 40-100% of that area, so a few paintings still give a varied style set.
    """
    tile_w, tile_h = size
    height, width = image.shape[:2]
    full_w, full_h = aspect_crop_box(width, height, tile_w, tile_h)
    tiles = []
    for k in range(crops):
        if k == 0:
            w, h = full_w, full_h
            x, y = (width - w) // 2, (height - h) // 2
        else:
            scale = np.sqrt(rng.uniform(0.4, 1.0))
            w, h = max(1, round(full_w * scale)), max(1, round(full_h * scale))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        crop = image[y:y + h, x:x + w]
        interpolation = cv2.INTER_AREA if w >= tile_w else cv2.INTER_CUBIC
        tiles.append(cv2.resize(crop, (tile_w, tile_h), interpolation=interpolation))
    return tiles


def at_side(image, side):
    """The image resized, aspect kept, so that its shorter side is `side` pixels: area
    interpolation down, cubic up."""
    height, width = image.shape[:2]
    scale = side / min(width, height)
    if scale == 1:
        return image
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def crops_at_scale(image, size, crops, rng, centred=False):
    """`crops` tiles of `size` (w, h) cut from an image as it is, no resizing: at random places,
    the first one in the middle when `centred`. The image must be at least the tile each way."""
    tile_w, tile_h = size
    height, width = image.shape[:2]
    tiles = []
    for k in range(crops):
        if centred and k == 0:
            x, y = (width - tile_w) // 2, (height - tile_h) // 2
        else:
            x, y = int(rng.integers(0, width - tile_w + 1)), int(rng.integers(0, height - tile_h + 1))
        tiles.append(np.ascontiguousarray(image[y:y + tile_h, x:x + tile_w]))
    return tiles


def to_uint8(images):
    """Float images in 0..1 (any shape) as uint8, rounded; values outside are clipped."""
    return (np.clip(np.asarray(images, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def grid(rows, gap=2, columns=None, fill=255):
    """Rows of equally sized images (uint8, or float in 0..1) as one uint8 picture.

    Images sit `gap` pixels apart on `fill`; every row has `columns` places (default: the
    longest row's), so short or empty rows leave blank places.
    """
    rows = [[img if np.asarray(img).dtype == np.uint8 else to_uint8(img) for img in row] for row in rows]
    h, w = next(img for row in rows for img in row).shape[:2]
    columns = columns or max(len(row) for row in rows)
    picture = np.full((len(rows) * (h + gap) - gap, columns * (w + gap) - gap, 3), fill, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row[:columns]):
            picture[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return picture


def save_png(path, rgb):
    """Write an RGB array as PNG."""
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
