"""Speed and memory benchmarks (inference and training) writing JSON + Markdown results."""
