"""The texture measure of vae/measures.py as a differentiable TensorFlow loss: the multi-scale
sliced Wasserstein distance (Karras et al. 2018) between PATCH x PATCH patches of Laplacian
pyramid levels of two batches of images, finest level first.

The same pyramid as OpenCV's pyrDown/pyrUp (the 5-tap binomial kernel, the same borders), the
same patch side and stopping size (measures.PATCH, measures.SMALLEST_LEVEL), the same per-channel
normalisation of each level's patch set. Made to train on: random patch positions and random
directions come from stateless seeds (fresh every step), the projections are sorted, so the
gradient flows to each patch through its rank, and everything is batched in one graph.

One difference from the measure, chosen for the gradient: both sides are normalised with the
*reference's* statistics (the style's mean and spread per channel and level), not each side its
own. Own statistics make the loss blind to how much detail a level holds (a blur's faint band,
scaled up, looks like any other) and give it a gradient of 1/spread that explodes on a blur;
the style's statistics ask for the painting's contrast at each scale as well, with a bounded
gradient, and a distance of zero still means a measure of zero.
"""
import numpy as np
import tensorflow as tf

from vae.measures import DIRECTIONS, PATCH, SMALLEST_LEVEL

PATCHES = 512  # random patches per level and batch, on each side

_BINOMIAL = np.array([1, 4, 6, 4, 1], np.float32) / 16


def pyramid_levels(height, width):
    """How many levels measures.laplacian_pyramid cuts an image of this size into (the last
    one the low-pass rest: the layout)."""
    levels = 1
    while min(height, width) // 2 >= max(SMALLEST_LEVEL, PATCH):
        height, width = (height + 1) // 2, (width + 1) // 2
        levels += 1
    return levels


def _blur_axis(images, axis):
    """The binomial kernel along one spatial axis (1: rows, 2: columns), borders reflected
    without repeating the edge (OpenCV's default, BORDER_REFLECT_101)."""
    pad = [[0, 0]] * 4
    pad[axis] = [2, 2]
    padded = tf.pad(images, pad, mode="REFLECT")
    n = tf.shape(images)[axis]
    return tf.add_n([w * tf.gather(padded, tf.range(i, i + n), axis=axis) for i, w in enumerate(_BINOMIAL)])


def _down(images):
    """cv2.pyrDown: blur, keep the even rows and columns."""
    return _blur_axis(_blur_axis(images, 1), 2)[:, ::2, ::2]


def _up_axis(images, axis, size):
    """cv2.pyrUp along one axis to `size`: even outputs (x[i-1] + 6 x[i] + x[i+1]) / 8, odd ones
    (x[i] + x[i+1]) / 2, with x[-1] = x[1] and x[n] = x[n-1] (OpenCV's own borders for it)."""
    n = tf.shape(images)[axis]
    before = tf.gather(images, [1], axis=axis)
    after = tf.gather(images, [n - 1], axis=axis)  # a tensor index: n is known only at run time
    padded = tf.concat([before, images, after], axis)
    left, mid, right = (tf.gather(padded, tf.range(i, i + n), axis=axis) for i in range(3))
    even, odd = (left + 6 * mid + right) / 8, (mid + right) / 2
    both = tf.stack([even, odd], axis + 1)  # interleaved: even, odd, even, ...
    shape = tf.concat([tf.shape(images)[:axis], [2 * n], tf.shape(images)[axis + 1:]], 0)
    return tf.gather(tf.reshape(both, shape), tf.range(size), axis=axis)


def laplacian_pyramid(images, levels):
    """[N,H,W,C] images to `levels` levels, finest first, as measures.laplacian_pyramid: band-pass
    levels, then the low-pass rest."""
    out = []
    for _ in range(levels - 1):
        down = _down(images)
        up = _up_axis(_up_axis(down, 1, tf.shape(images)[1]), 2, tf.shape(images)[2])
        out.append(images - up)
        images = down
    return out + [images]


def random_patches(level, count, seed):
    """`count` PATCH x PATCH patches at random images and positions of a level [N,H,W,3]:
    [count, PATCH*PATCH, 3], gathered at once."""
    shape = tf.shape(level)
    picks = [tf.random.stateless_uniform([count], seed + [0, i], 0, limit, tf.int32)
             for i, limit in enumerate((shape[0], shape[1] - PATCH + 1, shape[2] - PATCH + 1))]
    offsets = tf.range(PATCH)
    rows = picks[1][:, None, None] + offsets[None, :, None]
    cols = picks[2][:, None, None] + offsets[None, None, :]
    index = tf.stack([tf.broadcast_to(i, [count, PATCH, PATCH]) for i in (picks[0][:, None, None], rows, cols)], -1)
    return tf.reshape(tf.gather_nd(level, index), [count, PATCH * PATCH, level.shape[-1]])


def sliced_wasserstein(a, b, seed):
    """Mean over DIRECTIONS random unit directions of the 1-D Wasserstein distance between the
    projections of the point sets a and b [count, dims] (of one size: sorted, they pair up at
    common quantiles), as measures.sliced_wasserstein."""
    directions = tf.random.stateless_normal([a.shape[1], DIRECTIONS], seed)
    directions /= tf.norm(directions, axis=0, keepdims=True)
    pa, pb = tf.sort(a @ directions, axis=0), tf.sort(b @ directions, axis=0)
    return tf.reduce_mean(tf.abs(pa - pb))


def texture_distances(images, reference, seed, count=PATCHES):
    """Per level, finest first: the sliced Wasserstein distance between patches of `images` and
    of `reference` (batches [N,H,W,3] of one size, 0..1), each level's patches normalised by
    the reference's per-channel mean and spread (see the module's note). `seed`: a stateless
    seed [2] of int64; patches and directions are drawn from it."""
    levels = pyramid_levels(images.shape[1], images.shape[2])
    seed = tf.cast(seed, tf.int64)
    out = []
    # 255: the measure's pyramids are of 0..255 pixels; the normalisation makes it matter only for its floor.
    for k, (mine, theirs) in enumerate(zip(laplacian_pyramid(255 * images, levels),
                                           laplacian_pyramid(255 * reference, levels))):
        a = random_patches(mine, count, seed + [0, 16 * k])
        b = random_patches(theirs, count, seed + [0, 16 * k + 4])
        mean, variance = tf.nn.moments(b, axes=[0, 1])
        scale = tf.maximum(tf.sqrt(variance), 1e-8)
        a, b = [tf.reshape((p - mean) / scale, [count, -1]) for p in (a, b)]
        out.append(sliced_wasserstein(a, b, seed + [0, 16 * k + 8]))
    return out
