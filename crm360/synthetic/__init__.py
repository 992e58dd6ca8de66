"""A synthetic company's source drops, for the demo, the tests and the benchmarks: not part of the
product (nothing in the other packages imports it but the CLI's generate and demo commands)."""
