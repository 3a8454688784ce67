"""Segmentation networks on (image, mask) pairs: MONAI UNet training and lesion Dice / HD95 scores."""
