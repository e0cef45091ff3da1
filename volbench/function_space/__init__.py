"""Volume in function space and the flatness measures of Zhang, Reid, Valle-Perez & Louis (ICML
2021): the NNGP prior probability of a function by expectation propagation (``nngp``), direct
sampling of Boolean functions (``boolean``), and Keskar sharpness (``sharpness``; the Hessian
measures are ``volbench.curvature.spectrum``).
"""
