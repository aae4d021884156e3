"""latent.mean_lab against CIELAB values computed by hand (sRGB, D65 white)."""
import numpy as np
import pytest

from vae import latent


def srgb_to_lab(rgb):
    """The textbook conversion, written out: sRGB gamma, the D65 matrix, then L*a*b*."""
    c = np.asarray(rgb, np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124564, 0.3575761, 0.1804375],
                    [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]]) @ linear
    xyz /= [0.950456, 1.0, 1.088754]
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16 if xyz[1] > 0.008856 else 903.3 * xyz[1], 500 * (f[0] - f[1]),
                     200 * (f[1] - f[2])])


KNOWN = {  # published values for the sRGB primaries, white, black and mid grey
    (255, 255, 255): (100.0, 0.0, 0.0),
    (0, 0, 0): (0.0, 0.0, 0.0),
    (255, 0, 0): (53.24, 80.09, 67.20),
    (0, 255, 0): (87.73, -86.18, 83.18),
    (0, 0, 255): (32.30, 79.19, -107.86),
    (128, 128, 128): (53.59, 0.0, 0.0),
}


@pytest.mark.parametrize("rgb", list(KNOWN))
def test_mean_lab_of_known_colours(rgb):
    np.testing.assert_allclose(srgb_to_lab(rgb), KNOWN[rgb], atol=0.05)  # the hand computation itself
    tiles = np.broadcast_to(np.array(rgb, np.uint8), (2, 6, 10, 3))
    # float input in 0..1 is converted exactly; uint8 goes through OpenCV's 8-bit path (steps of 100/255 in L)
    np.testing.assert_allclose(latent.mean_lab(tiles.astype(np.float32) / 255), KNOWN[rgb], atol=0.1)
    np.testing.assert_allclose(latent.mean_lab(tiles), KNOWN[rgb], atol=0.6)


def test_mean_lab_averages_lab_not_rgb():
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, :4] = (255, 0, 0)
    image[:, 4:] = (0, 0, 255)
    expected = (np.array(KNOWN[(255, 0, 0)]) + KNOWN[(0, 0, 255)]) / 2
    np.testing.assert_allclose(latent.mean_lab(image.astype(np.float32) / 255), expected, atol=0.1)
    np.testing.assert_allclose(latent.mean_lab(image), expected, atol=0.6)
    # and not the colour of the mean RGB (127, 0, 127), which is far darker
    assert abs(srgb_to_lab((127, 0, 127))[0] - expected[0]) > 10
