"""How a render looks, in four numbers taken on a sample of frames (see the contract):

- `structure`: SSIM of the luminance of output and input frames at the output size;
- `palette_before`, `palette_after`: distance of the mean CIELAB colour of input and output
  frames to that of the style's tiles;
- `flicker`: the mean squared difference of each output frame to the previous output frame
  warped along the input's optical flow, on pixels where the flow is reliable, divided by the
  same for the input (1: as steady as the input).

Everything runs on the writer's thread in OpenCV, which releases the GIL, and only on sampled
frames, so measuring costs the render little.
"""
import cv2
import numpy as np

from vae.latent import mean_lab

FLOW_WIDTH = 160  # optical flow at a small size: enough for motion, cheap to compute
RELIABLE_PIXELS = 0.5  # forward-backward disagreement (pixels) beyond which a flow vector is not trusted


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


def small(rgb):
    h, w = rgb.shape[:2]
    width = min(FLOW_WIDTH, w)
    return cv2.resize(rgb, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)


class FlowWarp:
    """Optical flow between two input frames (DIS) and the pixels where it can be trusted."""

    def __init__(self):
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

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


class Measures:
    """Accumulates the four measures over sampled frames; `summary()` gives the contract's dict.

    Feed it every frame's small pictures (`add_pair`, for flicker and palette) and, for sampled
    frames, the full-size input and output (`add_structure`)."""

    def __init__(self, style_lab=None, every=8):
        self.every = every
        self.style_lab = None if style_lab is None else np.asarray(style_lab, np.float64)
        self.flow = FlowWarp()
        self.palette_before = self.palette_after = self.structure = 0.0
        self.palette_count = self.structure_count = 0
        self.flicker_input = self.flicker_output = 0.0
        self.previous = None

    def add_frame(self, input_small, output_small, sampled):
        """Every frame in order: small uint8 RGB input and output at the same size. Palette and
        flicker are measured when `sampled` (flicker on this frame and the one before it)."""
        input_small, output_small = small(input_small), small(output_small)
        if sampled and self.previous is not None:
            warp, mask = self.flow(self.previous[0], input_small)
            if mask.any():
                for attribute, (before, now) in (("flicker_input", (self.previous[0], input_small)),
                                                 ("flicker_output", (self.previous[1], output_small))):
                    difference = now.astype(np.float32) - warp(before).astype(np.float32)
                    setattr(self, attribute, getattr(self, attribute) + float((difference[mask] ** 2).mean()))
        if sampled and self.style_lab is not None:
            self.palette_before += float(np.linalg.norm(mean_lab(input_small) - self.style_lab))
            self.palette_after += float(np.linalg.norm(mean_lab(output_small) - self.style_lab))
            self.palette_count += 1
        self.previous = (input_small, output_small)

    def add(self, index, input_full, output):
        """Every frame in order: the shown input and the output as written (at tile size, it
        is first brought to the input's size)."""
        sampled = index % self.every == 0
        if output.shape[:2] != input_full.shape[:2]:
            output = cv2.resize(output, input_full.shape[1::-1], interpolation=cv2.INTER_CUBIC)
        self.add_frame(input_full, output, sampled)
        if sampled:
            self.add_structure(input_full, output)

    def add_structure(self, input_full, output_full):
        self.structure += ssim(luminance(input_full), luminance(output_full))
        self.structure_count += 1

    def summary(self):
        out = {}
        if self.structure_count:
            out["structure"] = self.structure / self.structure_count
        if self.palette_count:
            out["palette_before"] = self.palette_before / self.palette_count
            out["palette_after"] = self.palette_after / self.palette_count
        if self.flicker_input > 0:
            out["flicker"] = self.flicker_output / self.flicker_input
        return out
