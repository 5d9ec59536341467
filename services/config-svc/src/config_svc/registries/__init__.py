"""The registry-integration API: routes, schemas, errors and test-connection."""
