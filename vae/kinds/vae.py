"""The VAE as config.json knows it ("model": "vae"): its settings and defaults, without
TensorFlow; its builders, losses and preview are vae/model.py's."""
import dataclasses

from vae import configs
from vae.cli import UserError
from vae.configs import fixed, setting

FILTERS = (64, 64, 128, 128, 192, 256)
KERNELS = (7, 5, 5, 3, 3, 3)
LATENTS = ("global", "spatial")
DOWNSAMPLE = 8
# A spatial VAE's own defaults where they differ from the fields' (the global model's), chosen by
# the README's runs: a map has far fewer numbers per pixel to pay KL on, and trains well faster.
SPATIAL_DEFAULTS = dict(codes=16, kl_weight=0.05)
UPSAMPLES = ("resize", "shuffle")  # how a spatial decoder doubles its size; absent from config.json: resize
RESIZE_BORDERS = ("zeros", "mirror")  # absent from config.json (runs before 2026-12-07): zeros
LEARNING_RATES = {"global": 2e-4, "spatial": 1e-3}


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Everything that builds the VAE; saved as LOGDIR/config.json, which export_graphs.py rebuilds it from."""
    width: int = fixed()
    height: int = fixed()
    codes: int = setting(512, "latent codes: numbers per tile (global), channels of the map (spatial) "
                              "(default: 512 global, 16 spatial)", architecture=True, low=1)
    latent: str = setting("global", "global: one code of --codes numbers per tile (the original); spatial: a map "
                                    "of --codes channels at 1/--downsample of the tile's size, fully convolutional "
                                    "(runs at any size)", architecture=True, choices=LATENTS)
    downsample: int = setting(DOWNSAMPLE, "spatial only: the code map's size is the tile's divided by this, a "
                                          "power of two", architecture=True, low=2)
    kl_weight: float = setting(1.0, "weight of the KL term; small tiles have few pixels to outweigh it, so try "
                                    "(W*H)/(320*180) there if every global reconstruction looks alike "
                                    "(default: 1 global, 0.05 spatial)", low=0)
    filters: tuple = fixed(FILTERS)
    kernels: tuple = fixed(KERNELS)
    upsample: str = setting("resize", "spatial only: how the decoder doubles its size; resize: bilinear, then a "
                                      "convolution at the doubled size; shuffle: its inner stages by sub-pixel "
                                      "convolution (each 2x2 block's pixels from a convolution at the lower size) and "
                                      "a 3x3 last stage",
                            architecture=True, choices=UPSAMPLES)
    # How a spatial decoder's resize-then-convolve stages treat the border: a new run continues
    # the resized map by mirroring, which lets the stage run at the lower size (vae/model.py).
    resize_border: str = fixed("zeros")

    def __post_init__(self):
        if self.latent not in LATENTS:
            raise UserError(f"latent must be one of {', '.join(LATENTS)}, not {self.latent!r}")
        if self.upsample not in UPSAMPLES:
            raise UserError(f"upsample must be one of {', '.join(UPSAMPLES)}, not {self.upsample!r}")
        if self.resize_border not in RESIZE_BORDERS:
            raise UserError(f"resize_border must be one of {', '.join(RESIZE_BORDERS)}, not {self.resize_border!r}")
        if not is_power_of_two(self.downsample) or self.downsample < 2:
            raise UserError(f"downsample must be a power of two of at least 2, not {self.downsample}")


def is_power_of_two(n):
    return type(n) is int and n > 0 and n & (n - 1) == 0


def spatial_layers(downsample):
    """Filters and kernels of a spatial VAE's log2(downsample) strided convolutions (and, in
    reverse, of its decoder): chosen by measurement (see vae/model.py)."""
    depth = downsample.bit_length() - 1
    filters = tuple(min(32 * 2 ** i, 128) for i in range(depth))
    kernels = (5,) + (3,) * (depth - 1)
    return filters, kernels


class VAE(configs.Kind):
    name = "vae"
    config_class = VAEConfig
    exports = ("encoder", "decoder")

    learning_rate_help = "2e-4 global, 1e-3 spatial"

    def configure(self, given, config, plan):
        """A new spatial run starts from the spatial defaults (16 channels, the layers for its
        downsample factor) before the options given apply."""
        latent, downsample = given.get("latent"), given.get("downsample")
        if downsample is not None and not is_power_of_two(downsample):
            raise UserError(f"--downsample {downsample}: must be a power of two of at least 2 (2, 4, 8, 16, ...)")
        if latent == "spatial" and config.latent != "spatial":
            filters, kernels = spatial_layers(downsample or config.downsample)
            config = dataclasses.replace(config, latent="spatial", filters=filters, kernels=kernels,
                                         resize_border="mirror", **SPATIAL_DEFAULTS)
        config = super().configure(given, config, plan)
        for name in ("downsample", "upsample"):
            if given.get(name) is not None and config.latent != "spatial":
                raise UserError(f"--{name} is for --latent spatial only")
        return config

    def default_learning_rate(self, given, stored):
        return LEARNING_RATES[stored.latent if stored is not None else given.get("latent", "global")]

    def spec(self):
        from vae import model
        return model.Spec()


KIND = VAE()
