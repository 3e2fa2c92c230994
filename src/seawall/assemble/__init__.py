"""The one place that turns configuration into backends and pipelines.

Every backend kind and policy kind named in config is resolved here, once, at start-up; the
rest of seawall receives built objects and never switches on strings.
"""

from seawall.assemble.llm import open_database
from seawall.assemble.parts import Assembly
from seawall.assemble.pipelines import assemble, build_backend

__all__ = ["Assembly", "assemble", "build_backend", "open_database"]
