"""Networks. StyleGAN2 parts: layers.py (equalized-lr FC/conv), mapping.py, modulated_conv.py,
synthesis.py, discriminator_blocks.py, and stylegan2.py (Generator, Discriminator)."""
