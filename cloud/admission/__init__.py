"""The cloud side's mutating admission webhook: edge pods survive their node's offline spells (see review.py)."""
