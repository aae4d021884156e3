"""What a render changed, in numbers taken on a sample of frames (see the contract):

- `structure`: SSIM of the luminance of output and input frames at the output's full size;
- `palette_before`, `palette_after`: distance of the mean CIELAB colour of input and output
  frames to that of the style's tiles;
- `texture_before`, `texture_after`: the multi-scale sliced Wasserstein distance (Karras et al.
  2018) between 7x7 patches of Laplacian pyramids of the frames and of the style's tiles, times
  1000; each level's patches are normalised by their own mean and spread per channel, so it
  tells texture apart from colour and contrast. `texture_levels_before`/`_after` give it per
  level, finest first (the coarsest is the layout, the finer ones the marks), the `texture_luma_`
  fields the same on the luminance channel alone, and the `_floor` fields the style against a
  second draw of its own tiles: how close footage could get;
- `sharpness`: variance of the Laplacian of the output's luminance over the input's;
- `flicker`: the mean squared difference of each output frame to the previous output frame
  warped along the input's optical flow, on pixels where the flow is reliable, divided by the
  same for the input (1: as steady as the input); the mean is over the reliable pixels of all
  sampled pairs together, so a cut, where almost no pixel is reliable, counts for little.

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


def patch_positions(shape, rng, count=PATCHES_PER_LEVEL):
    """Row and column indices of `count` random PATCHxPATCH windows of an image of `shape`."""
    h, w = shape[:2]
    ys = rng.integers(0, h - PATCH + 1, count)
    xs = rng.integers(0, w - PATCH + 1, count)
    offsets = np.arange(PATCH)
    return (ys[:, None] + offsets)[:, :, None], (xs[:, None] + offsets)[:, None, :]


def image_patches(rgb, rng, levels=None):
    """(colour, luminance): the patches of each pyramid level of one uint8 RGB image, flattened,
    [count, PATCH*PATCH*3] and [count, PATCH*PATCH], taken at the same positions in both, so
    that the luminance figure is the colour one without the chroma."""
    colour, luma = [], []
    for level, grey in zip(laplacian_pyramid(rgb, levels), laplacian_pyramid(luminance(rgb), levels)):
        rows, cols = patch_positions(level.shape, rng)
        colour.append(level[rows, cols].reshape(len(rows), -1))
        luma.append(grey[rows, cols].reshape(len(rows), -1))
    return colour, luma


def normalised(patches):
    """A level's patch set with each channel at mean 0, spread 1 over the whole set."""
    x = np.concatenate(patches).astype(np.float64)
    x = x.reshape(len(x), PATCH * PATCH, -1)
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


def texture_levels(levels_a, levels_b):
    """Karras et al.'s sliced Wasserstein distance (x 1000) per pyramid level, finest first,
    between two lists of per-level patch lists, over the levels both have; seeded, so the same
    patches give the same numbers."""
    rng = np.random.default_rng(SEED)
    common = min(len(levels_a), len(levels_b))
    return [1000 * sliced_wasserstein(normalised(levels_a[k]), normalised(levels_b[k]), rng) for k in range(common)]


def texture_distance(levels_a, levels_b):
    """The multi-scale figure: the mean of texture_levels (None without a common level)."""
    levels = texture_levels(levels_a, levels_b)
    return float(np.mean(levels)) if levels else None


def fine_texture(levels):
    """How far the marks are: the mean over all levels but the coarsest (the layout); None for
    a pyramid of one level."""
    return float(np.mean(levels[:-1])) if levels and len(levels) > 1 else None


def share_of_the_way(before, after, floor):
    """How far a distance went from `before` toward `floor` (1: all the way, below 0: away);
    None when the input is at the floor already."""
    if before is None or after is None or floor is None or before - floor <= 1e-9:
        return None
    return (before - after) / (before - floor)


class PatchSet:
    """Patches per pyramid level, colour and luminance, gathered image by image (lists of
    arrays per level)."""

    def __init__(self):
        self.levels, self.luma_levels = [], []

    def add(self, patches):
        """`patches`: (colour, luminance) per level, as image_patches gives them."""
        colour, luma = patches
        if self.levels and len(colour) != len(self.levels):  # a frame of another size: keep the common levels
            n = min(len(colour), len(self.levels))
            self.levels, self.luma_levels, colour, luma = self.levels[:n], self.luma_levels[:n], colour[:n], luma[:n]
        if not self.levels:
            self.levels, self.luma_levels = [[] for _ in colour], [[] for _ in luma]
        for buckets, new in ((self.levels, colour), (self.luma_levels, luma)):
            for bucket, p in zip(buckets, new):
                bucket.append(p)


class TextureReference:
    """The style's tiles as pyramid patches, computed once: what frames' textures are compared with.

    Frames are cut into as many levels as the tiles have (`levels`), so that each level is of
    the same kind on both sides (band-pass, and the low-pass rest last) whatever their sizes.
    The floor is the style against itself: patches of `floor_tiles` (a second draw of the
    style's tiles; by default the same tiles) at other random positions, compared with the
    reference as frames are, so "how close to the paintings" has a number to aim at."""

    def __init__(self, tiles, seed=SEED, floor_tiles=None):
        self.seed = seed
        self.patches = self._patch_set(tiles, np.random.default_rng(seed))
        self.count = len(tiles)
        if not self.count:
            raise ValueError("a texture reference needs at least one tile")
        self.levels = len(self.patches.levels)
        self.floor_tiles = tiles if floor_tiles is None or not len(floor_tiles) else floor_tiles
        self._floor = None

    def _patch_set(self, tiles, rng, levels=None):
        patches = PatchSet()
        for tile in tiles:
            patches.add(image_patches(np.asarray(tile), rng, levels))
        return patches

    def patches_of(self, rgb, rng):
        return image_patches(rgb, rng, self.levels)

    def compare(self, patches):
        """{"levels": colour distance per level, "luma_levels": luminance distance per level},
        finest first, of a PatchSet against the reference."""
        return {"levels": texture_levels(patches.levels, self.patches.levels),
                "luma_levels": texture_levels(patches.luma_levels, self.patches.luma_levels)}

    def distance(self, patches):
        """The contract's texture figure: the colour distance, the mean over levels."""
        return texture_distance(patches.levels, self.patches.levels)

    def floor(self):
        """compare() of the floor draw (computed once)."""
        if self._floor is None:
            self._floor = self.compare(self._patch_set(self.floor_tiles, np.random.default_rng([self.seed, 1]),
                                                       self.levels))
        return self._floor


# -- the style's tiles, written by evaluate_embeddings.py beside embeddings.json ----------------

def tiles_path(models_dir):
    return os.path.join(models_dir, TILES_FILE)


def style_reference(models_dir, style_weights, seed=SEED):
    """A TextureReference of REFERENCE_TILES tiles of the style mix (`style_weights`, as
    vae.latent.style_weights gives them), drawn from each source in proportion to its weight,
    and a second such draw for its floor; None when the folder has no tiles.npz (written by
    older versions of evaluate_embeddings.py)."""
    path = tiles_path(models_dir)
    if not os.path.isfile(path):
        return None
    tiles = safety.check_tiles(path, safety.embedding_names(os.path.join(models_dir, "embeddings.json")))
    rng = np.random.default_rng(seed)

    def draw():
        chosen = []
        for name, weight in style_weights.items():
            if weight <= 0 or name not in tiles:  # a source without tiles: the others stand for the style
                continue
            pool = tiles[name]
            want = max(1, round(weight * REFERENCE_TILES))
            picks = rng.choice(len(pool), want, replace=want > len(pool))
            chosen += [pool[i] for i in sorted(picks)]
        return chosen

    chosen = draw()
    return TextureReference(chosen, seed, floor_tiles=draw()) if chosen else None


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


def texture_summary(reference, before, after):
    """The texture fields of the measures: of PatchSets `before` and `after` (input and output)
    against a TextureReference, in colour and on luminance, per level (finest first) and their
    mean, and the reference's own floor."""
    out = {}
    for name, patches in (("before", before), ("after", after), ("floor", None)):
        found = reference.floor() if patches is None else reference.compare(patches)
        out[f"texture_{name}"] = float(np.mean(found["levels"]))
        out[f"texture_levels_{name}"] = found["levels"]
        out[f"texture_luma_{name}"] = float(np.mean(found["luma_levels"]))
        out[f"texture_luma_levels_{name}"] = found["luma_levels"]
    return out


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
            # Squared differences summed over the reliable pixels of every pair, so that the ratio
            # is the mean over all of them: a pair where the flow holds almost nowhere (a cut, with
            # a few chance pixels differing by thousands) weighs by the few pixels it has. A mean
            # per pair would let a handful of cuts outweigh the rest of the clip.
            for attribute, (earlier, now) in (("flicker_input", (self.previous[1], before)),
                                              ("flicker_output", (self.previous[2], after))):
                difference = now.astype(np.float32) - warp(earlier).astype(np.float32)
                setattr(self, attribute, getattr(self, attribute) + float((difference[mask] ** 2).sum()))
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
            out.update(texture_summary(self.reference, self.input_patches, self.output_patches))
        if self.counts["sharpness"]:
            out["sharpness"] = self.sums["sharpness"] / self.counts["sharpness"]
        if self.flicker_input > 0:
            out["flicker"] = self.flicker_output / self.flicker_input
        return out


def measure_files(input_path, output_path, style_tiles=None, style_lab=None, every=8, crop=None):
    """The measures of an output video against its input, decoded independently of any render
    (both at full size, as shown): for doc scripts and tests. `style_tiles`: uint8 tiles of the
    style or a TextureReference (texture), `style_lab`: its mean Lab colour (palette; by default that of the tiles).
    `crop` (a vae.probe.Crop) is applied to the input, as the render applied it."""
    from vae import decode, probe
    source, rendered = probe.probe(str(input_path)), probe.probe(str(output_path))
    crop = crop or probe.Crop()
    reference = None
    if isinstance(style_tiles, TextureReference):  # as style_reference gives it
        reference = style_tiles
    elif style_tiles is not None and len(style_tiles):
        reference = TextureReference(style_tiles)
        if style_lab is None:
            style_lab = mean_lab(np.asarray(style_tiles))
    meter = Measures(style_lab, reference, every)
    inputs = decode.read_frames(source, crop.size_of(source.width, source.height), crop)
    outputs = decode.read_frames(rendered, (rendered.width, rendered.height))
    frames = 0
    for a, b in zip(inputs, outputs):
        meter.add(a.index, a.image, b.image)
        frames += 1
    return {"frames": frames, **meter.summary()}
