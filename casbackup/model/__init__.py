"""Plain data: Tree, Node, Snapshot and their canonical msgpack encoding. Pure: no I/O."""
