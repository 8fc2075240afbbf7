"""The consumer loop and what it runs: polling and back-pressure (app), one flush's decode, plan,
calls and settling (flush), the operations carried out against Mem0 (executor), and grouped
verification listings (scope_check)."""
