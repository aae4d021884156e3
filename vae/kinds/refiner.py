"""The refiner as config.json knows it ("model": "refiner"): its settings, without TensorFlow;
its builder, losses and preview are vae/refiner.py's."""
import dataclasses

from vae import configs
from vae.configs import fixed, setting


@dataclasses.dataclass(frozen=True)
class RefinerSettings:
    """What both refiners share (this one and vae/kinds/style_refiner.py's), declared once."""
    width: int = fixed()
    height: int = fixed()
    filters: int = setting(32, "feature maps at full resolution", architecture=True, low=1)
    blocks: int = setting(4, "residual blocks", architecture=True, low=1)
    identity_steps: int = setting(500, "first steps spent learning to return the VAE output unchanged", low=0)
    latent: str = fixed("global")  # the VAE's kind (model.json): a spatial VAE's refiner runs at any size


@dataclasses.dataclass(frozen=True)
class RefinerConfig(RefinerSettings):
    """Everything that builds the refiner and weighs its losses; saved as LOGDIR/config.json."""
    tile_weight: float = setting(1.0, "weight of the pull toward the tile", low=0)
    away_weight: float = setting(0.001, "weight of the push away from the VAE output", low=0)
    away_margin: float = setting(0.01, "distance at which the push away is half its weight (keeps it finite)",
                                 low=0)


class AgainstModels(configs.Kind):
    """A kind trained against an exported VAE (--models): it takes the VAE's kind of code from
    model.json, since a spatial VAE's refiner runs at any size."""

    def configure(self, given, config, plan):
        latent = plan.models_meta.get("latent", "global") if plan.models_meta else config.latent
        return super().configure(given, dataclasses.replace(config, latent=latent), plan)


class Refiner(AgainstModels):
    name = "refiner"
    config_class = RefinerConfig
    exports = ("refiner",)

    def spec(self):
        from vae import refiner
        return refiner.Spec()


KIND = Refiner()
