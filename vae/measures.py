"""What a render changed, in numbers taken on a sample of frames (see the contract):

- `structure`: SSIM of the luminance of output and input frames at the output's full size;
- `palette_before`, `palette_after`: distance of the mean CIELAB colour of input and output
  frames to that of the style's tiles;
- `texture_before`, `texture_after`: the multi-scale sliced Wasserstein distance (Karras et al.
  2018) between 7x7 patches of Laplacian pyramids of the frames and of the style's tiles, times
  1000; each level's patches are normalised by their own mean and spread per channel, so it
  tells texture apart from colour and contrast;
- `sharpness`: variance of the Laplacian of the output's luminance over the input's;
- `flicker`: the mean squared difference of each output frame to the previous output frame
  warped along the input's optical flow, on pixels where the flow is reliable, divided by the
  same for the input (1: as steady as the input).

All but `structure` are taken on analysis-size frames (ANALYSIS_WIDTH wide) made from the
full-size input and output, so they mean the same for every --detail and model kind. The meter
is fed every frame and keeps only what it samples; OpenCV releases the GIL, so it costs the
render little.
"""
import os

import cv2
import numpy as np

from vae import safety
from vae.latent import mean_lab

ANALYSIS_WIDTH = 320  # the one size the measures are taken at (aspect kept)
RELIABLE_PIXELS = 0.5  # forward-backward disagreement (pixels) beyond which a flow vector is not trusted
PATCH = 7  # side of the texture patches
PATCHES_PER_LEVEL = 128  # random patches per image and pyramid level (as Karras et al.)
DIRECTIONS = 512  # random projections of the sliced Wasserstein distance
SMALLEST_LEVEL = 16  # the pyramid goes down while the smaller side is at least this
SEED = 2018
TILES_FILE = "tiles.npz"
REFERENCE_TILES = 64  # tiles of the style mix a texture reference is made of


def luminance(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def ssim(a, b):
    """Mean SSIM of two single-channel images in 0..255 (Gaussian window of 11, sigma 1.5)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a * mu_a, blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def analysis_size(rgb):
    """The frame at ANALYSIS_WIDTH wide, aspect kept (INTER_AREA); narrower frames stay as they are."""
    h, w = rgb.shape[:2]
    if w <= ANALYSIS_WIDTH:
        return rgb
    return cv2.resize(rgb, (ANALYSIS_WIDTH, max(2, round(h * ANALYSIS_WIDTH / w))), interpolation=cv2.INTER_AREA)


def sharpness_of(rgb):
    return float(cv2.Laplacian(luminance(rgb), cv2.CV_32F).var())


class FlowWarp:
    """Optical flow between two input frames (DIS) and the pixels where it can be trusted."""

    def __init__(self):
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, previous, current):
        """(warp, mask): warp(image) moves `previous`-aligned pixels onto `current`'s grid."""
        a, b = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY), cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
        back = self.dis.calc(b, a, None)  # where each pixel of `current` was in `previous`
        forth = self.dis.calc(a, b, None)
        h, w = a.shape
        grid = np.mgrid[0:h, 0:w][::-1].transpose(1, 2, 0).astype(np.float32)
        where = grid + back
        # Follow the flow back and then forth again: reliable pixels return where they started.
        return_trip = cv2.remap(forth, where[..., 0], where[..., 1], cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        error = np.linalg.norm(back + return_trip, axis=-1)
        inside = (where[..., 0] >= 0) & (where[..., 0] <= w - 1) & (where[..., 1] >= 0) & (where[..., 1] <= h - 1)
        mask = (error < RELIABLE_PIXELS) & inside

        def warp(image):
            return cv2.remap(image, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        return warp, mask


# -- texture: the sliced Wasserstein distance of Laplacian-pyramid patches ---------------------

def laplacian_pyramid(rgb, levels=None):
    """Band-pass levels of an RGB image as float, finest first, down to the level whose smaller
    side is still at least SMALLEST_LEVEL (or `levels` levels, if the image is large enough);
    the last level is the low-pass rest."""
    image = np.asarray(rgb, np.float32)
    out = []
    while True:
        h, w = image.shape[:2]
        if min(h, w) // 2 < max(SMALLEST_LEVEL, PATCH) or (levels is not None and len(out) == levels - 1):
            out.append(image)
            return out
        down = cv2.pyrDown(image)
        out.append(image - cv2.pyrUp(down, dstsize=(w, h)))
        image = down


def random_patches(level, rng, count=PATCHES_PER_LEVEL):
    """`count` random PATCHxPATCHx3 patches of one level, flattened: [count, PATCH*PATCH*3]."""
    h, w = level.shape[:2]
    ys = rng.integers(0, h - PATCH + 1, count)
    xs = rng.integers(0, w - PATCH + 1, count)
    offsets = np.arange(PATCH)
    rows = (ys[:, None] + offsets)[:, :, None]
    cols = (xs[:, None] + offsets)[:, None, :]
    return level[rows, cols].reshape(count, -1)


def image_patches(rgb, rng, levels=None):
    """[patches of level 0, of level 1, ...] of one uint8 RGB image."""
    return [random_patches(level, rng) for level in laplacian_pyramid(rgb, levels)]


def normalised(patches):
    """A level's patch set with each colour channel at mean 0, spread 1 over the whole set."""
    x = np.concatenate(patches).reshape(-1, PATCH * PATCH, 3).astype(np.float64)
    mean, std = x.mean((0, 1)), x.std((0, 1))
    return ((x - mean) / np.maximum(std, 1e-8)).reshape(len(x), -1).astype(np.float32)


def sliced_wasserstein(a, b, rng):
    """Mean over DIRECTIONS random unit directions of the 1-D Wasserstein distance between the
    projections of the point sets a and b (compared at common quantiles when their sizes differ)."""
    directions = rng.standard_normal((a.shape[1], DIRECTIONS)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    pa, pb = np.sort(a @ directions, axis=0), np.sort(b @ directions, axis=0)
    n = min(len(pa), len(pb))
    quantiles = (np.arange(n) + 0.5) / n

    def at_quantiles(p):
        if len(p) == n:
            return p
        return p[np.minimum((quantiles * len(p)).astype(int), len(p) - 1)]

    return float(np.abs(at_quantiles(pa) - at_quantiles(pb)).mean())


def texture_distance(levels_a, levels_b):
    """Karras et al.'s multi-scale SWD (x 1000) between two lists of per-level patch lists,
    over the levels both have; seeded, so the same patches give the same number."""
    rng = np.random.default_rng(SEED)
    common = min(len(levels_a), len(levels_b))
    if common == 0:
        return None
    distances = [sliced_wasserstein(normalised(levels_a[k]), normalised(levels_b[k]), rng) for k in range(common)]
    return 1000 * float(np.mean(distances))


class PatchSet:
    """Patches per pyramid level, gathered image by image (lists of arrays per level)."""

    def __init__(self):
        self.levels = []

    def add(self, patches):
        if self.levels and len(patches) != len(self.levels):  # a frame of another size: keep the common levels
            n = min(len(patches), len(self.levels))
            self.levels, patches = self.levels[:n], patches[:n]
        if not self.levels:
            self.levels = [[] for _ in patches]
        for bucket, p in zip(self.levels, patches):
            bucket.append(p)


class TextureReference:
    """The style's tiles as pyramid patches, computed once: what frames' textures are compared with.

    Frames are cut into as many levels as the tiles have (`levels`), so that each level is of
    the same kind on both sides (band-pass, and the low-pass rest last) whatever their sizes."""

    def __init__(self, tiles, seed=SEED):
        rng = np.random.default_rng(seed)
        self.patches = PatchSet()
        self.count = 0
        for tile in tiles:
            self.patches.add(image_patches(np.asarray(tile), rng))
            self.count += 1
        if not self.count:
            raise ValueError("a texture reference needs at least one tile")
        self.levels = len(self.patches.levels)

    def patches_of(self, rgb, rng):
        return image_patches(rgb, rng, self.levels)

    def distance(self, patches):
        return texture_distance(patches.levels, self.patches.levels)


# -- the style's tiles, written by evaluate_embeddings.py beside embeddings.json ----------------

def tiles_path(models_dir):
    return os.path.join(models_dir, TILES_FILE)


def style_reference(models_dir, style_weights, seed=SEED):
    """A TextureReference of REFERENCE_TILES tiles of the style mix (`style_weights`, as
    vae.latent.style_weights gives them), drawn from each source in proportion to its weight;
    None when the folder has no tiles.npz (written by older versions of evaluate_embeddings.py)."""
    path = tiles_path(models_dir)
    if not os.path.isfile(path):
        return None
    tiles = safety.check_tiles(path, safety.embedding_names(os.path.join(models_dir, "embeddings.json")))
    rng = np.random.default_rng(seed)
    chosen = []
    for name, weight in style_weights.items():
        if weight <= 0 or name not in tiles:  # a source without tiles: the others stand for the style
            continue
        pool = tiles[name]
        want = max(1, round(weight * REFERENCE_TILES))
        picks = rng.choice(len(pool), want, replace=want > len(pool))
        chosen += [pool[i] for i in sorted(picks)]
    return TextureReference(chosen, seed) if chosen else None


# -- the meter -------------------------------------------------------------------------------

def _full_size_pair(input_full, output):
    """The input and output at one full size: a tile-size output scaled up as ffmpeg's bicubic
    scale would, the even crop of a written frame matched on the input."""
    ih, iw = input_full.shape[:2]
    oh, ow = output.shape[:2]
    if (oh, ow) != (ih, iw):
        if abs(oh - ih) <= 1 and abs(ow - iw) <= 1:  # the writer's even crop
            h, w = min(oh, ih), min(ow, iw)
            return input_full[:h, :w], output[:h, :w]
        output = cv2.resize(output, (iw - iw % 2, ih - ih % 2), interpolation=cv2.INTER_CUBIC)
        return input_full[:ih - ih % 2, :iw - iw % 2], output
    return input_full, output


class Measures:
    """Accumulates the measures over sampled frames; `summary()` gives the contract's dict.

    Call `add(index, input_full, output)` for every frame in order (the meter keeps every
    `every`-th frame and the one before it, for flicker, and returns at once for the others).
    `style_lab`: the style's mean Lab colour (palette); `texture_reference`: a TextureReference
    (texture). Either may be None: its measures are then left out."""

    def __init__(self, style_lab=None, texture_reference=None, every=8, seed=SEED):
        self.style_lab = None if style_lab is None else np.asarray(style_lab, np.float64)
        self.reference = texture_reference
        self.every = max(1, int(every))
        self.seed = seed
        self.flow = FlowWarp()
        self.sums = {"structure": 0.0, "palette_before": 0.0, "palette_after": 0.0, "sharpness": 0.0}
        self.counts = {"structure": 0, "palette": 0, "sharpness": 0}
        self.flicker_input = self.flicker_output = 0.0
        self.input_patches, self.output_patches = PatchSet(), PatchSet()
        self.previous = None  # (index, input, output) at analysis size, of the frame before a sampled one

    def wanted(self, index):
        return index % self.every == 0 or (index + 1) % self.every == 0

    def add(self, index, input_full, output):
        """One frame: its number, the input as shown (uint8 RGB, full size) and the output as
        written (uint8 RGB, full size or tile size)."""
        if not self.wanted(index):
            return
        input_full, output = _full_size_pair(input_full, output)
        sampled = index % self.every == 0
        if sampled:
            self.sums["structure"] += ssim(luminance(input_full), luminance(output))
            self.counts["structure"] += 1
        before, after = analysis_size(input_full), analysis_size(output)
        if sampled:
            self._sample(index, before, after)
        self.previous = (index, before, after)

    def _sample(self, index, before, after):
        if self.previous is not None and self.previous[0] == index - 1:
            warp, mask = self.flow(self.previous[1], before)
            if mask.any():
                for attribute, (earlier, now) in (("flicker_input", (self.previous[1], before)),
                                                  ("flicker_output", (self.previous[2], after))):
                    difference = now.astype(np.float32) - warp(earlier).astype(np.float32)
                    setattr(self, attribute, getattr(self, attribute) + float((difference[mask] ** 2).mean()))
        if self.style_lab is not None:
            self.sums["palette_before"] += float(np.linalg.norm(mean_lab(before) - self.style_lab))
            self.sums["palette_after"] += float(np.linalg.norm(mean_lab(after) - self.style_lab))
            self.counts["palette"] += 1
        reference_sharpness = sharpness_of(before)
        if reference_sharpness > 1e-6:  # a flat frame has no sharpness to compare with
            self.sums["sharpness"] += sharpness_of(after) / reference_sharpness
            self.counts["sharpness"] += 1
        if self.reference is not None:
            # The same patch positions in input and output (a seed per frame): an unchanged
            # frame gives the same distance, and a run gives the same numbers again.
            self.input_patches.add(self.reference.patches_of(before, np.random.default_rng([self.seed, index])))
            self.output_patches.add(self.reference.patches_of(after, np.random.default_rng([self.seed, index])))

    def summary(self):
        out = {}
        if self.counts["structure"]:
            out["structure"] = self.sums["structure"] / self.counts["structure"]
        if self.counts["palette"]:
            out["palette_before"] = self.sums["palette_before"] / self.counts["palette"]
            out["palette_after"] = self.sums["palette_after"] / self.counts["palette"]
        if self.reference is not None and self.input_patches.levels:
            out["texture_before"] = self.reference.distance(self.input_patches)
            out["texture_after"] = self.reference.distance(self.output_patches)
        if self.counts["sharpness"]:
            out["sharpness"] = self.sums["sharpness"] / self.counts["sharpness"]
        if self.flicker_input > 0:
            out["flicker"] = self.flicker_output / self.flicker_input
        return out


def measure_files(input_path, output_path, style_tiles=None, style_lab=None, every=8, crop=None):
    """The measures of an output video against its input, decoded independently of any render
    (both at full size, as shown): for doc scripts and tests. `style_tiles`: uint8 tiles of the
    style or a TextureReference (texture), `style_lab`: its mean Lab colour (palette; by default that of the tiles).
    `crop` (a vae.video.Crop) is applied to the input, as the render applied it."""
    from vae import video
    source, rendered = video.probe(str(input_path)), video.probe(str(output_path))
    crop = crop or video.Crop()
    reference = None
    if isinstance(style_tiles, TextureReference):  # as style_reference gives it
        reference = style_tiles
    elif style_tiles is not None and len(style_tiles):
        reference = TextureReference(style_tiles)
        if style_lab is None:
            style_lab = mean_lab(np.asarray(style_tiles))
    meter = Measures(style_lab, reference, every)
    inputs = video.read_frames(source, crop.size_of(source.width, source.height), crop)
    outputs = video.read_frames(rendered, (rendered.width, rendered.height))
    frames = 0
    for a, b in zip(inputs, outputs):
        meter.add(a.index, a.image, b.image)
        frames += 1
    return {"frames": frames, **meter.summary()}
