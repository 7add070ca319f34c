//! cairn checkpoints: incremental, hash-chained snapshots of the projections, bound to the log.
