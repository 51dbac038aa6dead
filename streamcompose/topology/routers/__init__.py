"""The router kinds, each declared once in a module of this package.

>>> sorted(ROUTERS)
['fallback', 'route', 'shadow', 'split', 'switch']
"""

from streamcompose.topology.routers.base import RouterKind
from streamcompose.topology.routers.fallback import Fallback
from streamcompose.topology.routers.moe import MixtureOfExperts
from streamcompose.topology.routers.shadow import Shadow
from streamcompose.topology.routers.split import Split
from streamcompose.topology.routers.switch import Switch

ROUTERS: dict[str, RouterKind] = {k.name: k for k in (
    MixtureOfExperts(), Switch(), Split(), Shadow(), Fallback())}

__all__ = ["ROUTERS", "RouterKind"]
