"""A module that a result payload names but that no decoder may ever import.

Importing it fails loudly, so a decoder that follows a payload's ``__module__`` is caught.
"""

raise RuntimeError("a decoder imported a module named by a result payload")
