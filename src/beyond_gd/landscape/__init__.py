"""The loss landscape of the book's MLP: interpolation paths (Fig 6-3), symmetries
(Fig 6-2) and Hessian spectra from Hessian-vector products.

The submodules are pure: tensors in, tensors or records out.
"""
