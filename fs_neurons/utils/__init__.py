"""Utilities the two packages share, none of them about neurons: atomic writes
(:mod:`.files`), figures without pyplot state (:mod:`.figures`), named seed streams
(:mod:`.seeds`) and lazily imported package attributes (:mod:`.lazy`). Torch-free on import."""
