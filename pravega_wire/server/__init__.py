"""The embedded Pravega-compatible server: segment stores (:mod:`.segmentstore`) on storage
(:mod:`.storage`, :mod:`.tables`), the controller (:mod:`.controller`), fault hooks
(:mod:`.faults`) and the cluster that runs them together (:mod:`.cluster`).

Importing this package does not import gRPC; the controller loads it when it starts.
"""

from .cluster import ChildCluster, EmbeddedCluster
from .faults import FaultPlan, FaultRule
from .segmentstore import SegmentStore
from .storage import Storage

__all__ = ["EmbeddedCluster", "ChildCluster", "SegmentStore", "Storage", "FaultPlan",
           "FaultRule"]
