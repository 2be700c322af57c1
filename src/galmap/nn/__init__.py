"""The neural-network toolbox every learned stage shares: the U-Net, diffusion, the training loop, losses,
gradient reversal, augmentation, network inputs and image metrics. Reads and writes nothing of its own.
"""
