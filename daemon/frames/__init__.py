"""Frame sequences: dense optical flow, warping, occlusion masks, scene cuts, the flicker
measure and synthetic test sequences with known motion.

Pure NumPy/SciPy functions on float RGB frames in [0, 1] (H, W, 3); only the flow estimate
itself needs OpenCV (``pip install 'neural-style-gimp[frames]'``).
"""
