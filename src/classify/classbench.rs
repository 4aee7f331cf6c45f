//! Reader for ClassBench rule sets and traces.
