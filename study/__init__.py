"""SiamMAE Study: reproduce and extend the ablations of Siamese Masked Autoencoders."""

__version__ = "0.1.0"
