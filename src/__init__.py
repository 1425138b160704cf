"""Lipschitz GAN lab: compare Lipschitz regularizers of GAN discriminators."""
