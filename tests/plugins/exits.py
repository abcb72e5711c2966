"""A plugin module that ends the interpreter when imported: discovery must skip it, not the kernel."""

raise SystemExit(3)
