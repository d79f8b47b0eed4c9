"""Networks, rendering and training of the 3DPortraitGAN re-implementation."""
