"""`--match`: each neighbourhood of a spatial model's code map replaced by the style's own codes.

The mean shift moves every position of the code map by the same vector, which is a colour
grade. Matching (a style swap in the VAE's latent, after Chen & Schmidt 2016) gives the decoder
the paintings' own local codes to paint with instead:

- The bank (`bank.npz` beside embeddings.json, written by evaluate_embeddings.py): every
  NEIGHBOURHOOD x NEIGHBOURHOOD neighbourhood of the code maps of a source's tiles (the spread
  tiles that tiles.npz also holds), at most BANK_SIZE per source, drawn seeded. The tiles are
  cut at the scale the model learned (extract_tiles.py --image-side), so the bank is at the
  scale the model renders.
- Both sides are compared standardised per channel (the frame's map by its own mean and spread,
  the bank by its own), so a frame darker or flatter than the paintings still finds their codes.
- Each neighbourhood of the shifted code map is compared with every bank neighbourhood by cosine
  similarity, one matrix product per frame.
- A position keeps its previous frame's match unless a new one is better by more than STAY, so
  that a still scene keeps its marks from frame to frame.
- The replacement is the softmax blend (TEMPERATURE: nearly the best match alone) of the bank
  neighbourhoods' centres: one code per position, no averaging of overlapping neighbourhoods,
  which blurs.
- `z' = (1 - match) * z + match * matched`, with z the shifted map (the contract's formula).
"""
import os

import numpy as np

BANK_FILE = "bank.npz"
NEIGHBOURHOOD = 3
BANK_SIZE = 2048  # neighbourhoods per source: each frame position is compared with all of them
TEMPERATURE = 0.02  # of cosine similarity: the blend is nearly the best match alone
STAY = 0.05  # cosine similarity a new match must gain over the previous frame's to replace it
SEED = 2016


def bank_path(models_dir):
    return os.path.join(models_dir, BANK_FILE)


def neighbourhoods(maps, size=NEIGHBOURHOOD):
    """Every size x size neighbourhood of code maps [N,h,w,C]: [M,size,size,C]."""
    maps = np.asarray(maps, np.float32)
    n, h, w, c = maps.shape
    if h < size or w < size:
        return np.zeros((0, size, size, c), np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(maps, (size, size), axis=(1, 2))  # [N,h',w',C,s,s]
    return np.ascontiguousarray(windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size, size, c))


def build_bank(maps, size=BANK_SIZE, seed=SEED):
    """At most `size` neighbourhoods of one source's code maps, drawn seeded without replacement."""
    found = neighbourhoods(maps)
    if len(found) > size:
        found = found[np.sort(np.random.default_rng(seed).choice(len(found), size, replace=False))]
    return found


def source_banks(models, tiles, batch=16):
    """{source: its bank} from {source: uint8 tiles [N,h,w,3]}, encoded by a spatial model."""
    banks = {}
    for name, source_tiles in tiles.items():
        maps = [models.encode(np.asarray(source_tiles[i:i + batch], np.float32) / 255.0)[0].numpy()
                for i in range(0, len(source_tiles), batch)]
        bank = build_bank(np.concatenate(maps))
        if len(bank):  # tiles smaller than a neighbourhood of codes give none
            banks[name] = bank
    return banks


def save_bank(path, banks):
    """{source: float32 [P,k,k,C]} into an .npz, atomically (nothing pickled: safety.check_bank)."""
    from vae.cli import atomic_path
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{name: np.asarray(bank, np.float32) for name, bank in banks.items()})


def style_bank(models_dir, style_weights, names, codes, seed=SEED):
    """The bank of a style mix (`style_weights` as vae.latent.style_weights gives them): each
    source's neighbourhoods drawn in proportion to its weight, BANK_SIZE in all."""
    from vae import safety
    from vae.cli import UserError
    path = bank_path(models_dir)
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; --match needs the style's own codes: run evaluate_embeddings.py "
                        f"--data ... --models {models_dir} again")
    banks = safety.check_bank(path, names, codes)
    rng = np.random.default_rng(seed)
    chosen = []
    for name, weight in style_weights.items():
        if weight <= 0:
            continue
        if name not in banks:
            raise UserError(f"{path}: has no codes of {name!r}; run evaluate_embeddings.py again")
        pool = banks[name]
        want = min(len(pool), max(1, round(weight * BANK_SIZE)))
        chosen.append(pool[np.sort(rng.choice(len(pool), want, replace=False))])
    return np.concatenate(chosen)


def apply(z, strength, bank, previous):
    """The contract's `(1 - match) * z + match * matched(z)` on shifted code maps, in TensorFlow.

    z: [N,h,w,C]; strength: [N], each frame's --match; bank: [P,k,k,C]; previous: [h,w] int32,
    the bank entry each position chose in the frame before these (-1: none). Frames are matched
    in order, each keeping the choices of the one before. Returns (z', the last frame's choices)."""
    import tensorflow as tf
    channels = z.shape[-1]
    size = bank.shape[1]
    count = tf.shape(bank)[0]

    def standardised(x, axes):
        mean, variance = tf.nn.moments(x, axes, keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + 1e-6)

    keys = tf.math.l2_normalize(tf.reshape(standardised(bank, [0, 1, 2]), [count, -1]), 1)
    centres = bank[:, size // 2, size // 2, :]
    query = standardised(z, [1, 2])
    pad = size // 2
    query = tf.pad(query, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
    patches = tf.image.extract_patches(query, [1, size, size, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID")
    height, width = tf.shape(z)[1], tf.shape(z)[2]

    def one_frame(carried, frame_patches):
        choice, _ = carried
        similarity = tf.matmul(tf.math.l2_normalize(tf.reshape(frame_patches, [height * width, -1]), 1), keys,
                               transpose_b=True)
        similarity += STAY * tf.one_hot(tf.reshape(choice, [-1]), count)  # -1 (no previous frame): no bonus
        weights = tf.nn.softmax(similarity / TEMPERATURE)
        matched = tf.reshape(tf.matmul(weights, centres), [height, width, channels])
        return tf.reshape(tf.argmax(similarity, 1, output_type=tf.int32), [height, width]), matched

    choices, matched = tf.scan(one_frame, patches, initializer=(previous, tf.zeros_like(z[0])))
    share = tf.reshape(strength, [-1, 1, 1, 1])
    return (1 - share) * z + share * matched, choices[-1]
