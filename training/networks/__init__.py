"""Networks. StyleGAN2 parts: layers.py (equalized-lr FC/conv), mapping.py, modulated_conv.py,
synthesis.py, discriminator_blocks.py, and stylegan2.py (Generator, Discriminator).
3DPortraitGAN parts: superresolution.py, symmetry.py (explicit left/right symmetry),
pose_branch.py (G pose branch, D pose predictor), dual_discriminator.py, decoder.py (tri-grid MLP),
background.py, body_warp.py and generator.py (PortraitGenerator)."""
