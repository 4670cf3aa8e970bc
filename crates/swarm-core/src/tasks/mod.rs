//! Per-task execution queues.
