"""The command line: one module per command; parses, calls ops, renders. The only layer
that prints. Every ``CasError`` becomes one line on stderr and its exit code."""
