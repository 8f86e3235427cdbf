"""Side-by-side benchmarks: langgraph-sqlalchemy against langgraph-checkpoint-postgres.

Run ``python -m benchmarks.run`` from the repository root (see ``benchmarks/README.md``).
"""
