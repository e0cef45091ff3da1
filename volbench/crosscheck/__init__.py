"""Answers computed another way, to check the volume estimator against: analytic basins with exact
volumes (``oracles``), direct sampling of the Gaussian measure of a star domain (``sampling``,
claim E4), and the local learning coefficient (``llc``: Aoyagi's exact lambda of deep linear
networks, the volume-scaling fit, and devinterp's SGLD estimate, claim E5).
"""
