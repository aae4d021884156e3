"""VAE style transfer for video: the library behind the command-line scripts."""
