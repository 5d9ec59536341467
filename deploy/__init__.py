"""Local infrastructure for regflow: the stack (broker, Redis, registries) and images.

Used by the demo, the test fixtures and people (``make stack-up``). Nothing in
here is imported by the services; they only see the ``REGFLOW_*`` environment
the stack hands out.
"""
