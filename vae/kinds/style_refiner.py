"""The style refiner as config.json knows it ("model": "style_refiner"): its settings, without
TensorFlow; its generator, discriminator and step are vae/style.py's."""
import dataclasses

from vae.configs import setting
from vae.kinds.refiner import AgainstModels, RefinerSettings


@dataclasses.dataclass(frozen=True)
class StyleRefinerConfig(RefinerSettings):
    """The refiner trained adversarially toward a style's texture (vae/style.py)."""
    style: tuple = setting((), "train toward this source's texture (a patch discriminator on its tiles), "
                               "repeatable to mix as in mogrify_video.py; without it, the original refiner",
                           architecture=True, metavar="NAME[:WEIGHT]")
    disc_filters: int = setting(64, "feature maps of the patch discriminator's first layer", architecture=True,
                                low=1)
    disc_layers: int = setting(3, "strided layers of the patch discriminator (3: 70-pixel patches)",
                               architecture=True, low=1)
    disc_scales: int = setting(2, "scales the discriminator looks at (each half the last: larger strokes)",
                               architecture=True, low=1)
    disc_learning_rate: float = setting(2e-4, "Adam learning rate of the discriminator", low=0)
    content_weight: float = setting(1.0, "weight of the layout term (low-pass distance to the unrefined render)",
                                    low=0)
    content_pool: int = setting(4, "the layout term compares averages over squares of this side", low=1)
    style_identity_weight: float = setting(1.0, "weight of the term that keeps a painting refined the same",
                                           low=0)
    steady_weight: float = setting(1.0, "weight of the term against flicker: the refined picture of a frame "
                                        "moved by a pixel or two must move with it", low=0)
    adversarial_weight: float = setting(1.0, "scale of the adversarial term after its balance by gradient norms "
                                             "(0: no discriminator step at all)", low=0)
    max_adaptive_weight: float = setting(10.0, "cap on the gradient-norm balance of the adversarial term", low=0)
    texture_weight: float = setting(0.0, "weight of the texture term: the sliced Wasserstein distance between "
                                         "Laplacian-pyramid patches of the refined renders and of the style's "
                                         "tiles, as the texture measure takes it (0: none; with "
                                         "--adversarial-weight 0 it replaces the discriminator)", low=0)
    texture_layout_weight: float = setting(0.0, "weight of the texture term's coarsest level (the low-pass rest: "
                                                "the layout, which the content term keeps) beside the finer "
                                                "levels' 1 each", low=0)
    alpha: float = setting(0.25, "the shift's alpha during training, as mogrify_video.py --alpha", low=0)
    beta_low: float = setting(0.0, "the shift's beta is drawn per tile between --beta-low and --beta-high",
                              low=0)
    beta_high: float = setting(1.0, "see --beta-low", low=0)


class StyleRefiner(AgainstModels):
    name = "style_refiner"
    config_class = StyleRefinerConfig
    exports = ("refiner",)

    def spec(self):
        from vae import style
        return style.Spec()


KIND = StyleRefiner()
