"""Lark grammars: `spec.lark` (the .spec file) and `block.lark` (block strings inside it)."""
