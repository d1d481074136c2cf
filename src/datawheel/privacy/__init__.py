"""Privacy: the PII detectors, the gate that applies the workspace policy, and the policy itself."""
